"""tunesmith: the library behind the music-microservices workshop.

Everything that more than one place needs lives here, grouped by concern, so the notebooks, the
MLServer runtimes in ``models/``, the Gradio app and the tests import one code base:

- ``music``: ABC notation, keys, engraving, the tune corpus
- ``audio``: audio files, the synthesizer, effects, pitch tracking, plots
- ``generator``: the folk-tune generator (tokenizer, model and decoder, prompts, training, evaluation)
- ``transcriber``: hum to tune, and its evaluation
- ``style``: the dance-rhythm classifier, its data, training and evaluation
- ``serving``: what sits between a model and its callers (input checks, batching, launcher, clients)
- ``workshop``: the notebooks' helper, stage snapshots, the benchmark
- ``cli``: the ``tunesmith`` command

Importing the package makes the process offline (see :mod:`tunesmith.offline`).
"""

from tunesmith import offline

offline.enforce()

__version__ = "0.1.0"
