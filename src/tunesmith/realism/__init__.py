"""How close generated tunes come to real ones: stage 3's judge of experiment arms.

* :mod:`~tunesmith.realism.samples` - the sets judged: the held-out real tunes, a seeded sample per
  generator, or what the gateway's request log recorded for each arm of an experiment;
* :mod:`~tunesmith.realism.musical` - Yang & Lerch's musical statistics and their comparison;
* :mod:`~tunesmith.realism.listening` - what the style classifier hears: rhythm and embedding;
* :mod:`~tunesmith.realism.judge` - every measure with a bootstrap interval, and the A/B decision;
* :mod:`~tunesmith.realism.report` - ``tunesmith eval realism`` (``make eval``): the table and the
  verdict; :mod:`~tunesmith.realism.plots` draws them.
"""
