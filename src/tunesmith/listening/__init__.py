"""A blind listening test: people judge which clip sounds most like a real folk tune.

- :mod:`tunesmith.listening.rounds` makes a *clip set*: a real tune of the held-out test split and
  tunes written by each experiment arm under the same header, played with the same instrument and
  tempo and cut to the same length;
- :mod:`tunesmith.listening.votes` keeps the clip sets, the rounds served from them and the votes in
  SQLite, so that no vote is lost to concurrent voters or to a killed process;
- :mod:`tunesmith.listening.stats` turns the votes into numbers: pick rates and head-to-head win
  rates with Wilson intervals and binomial tests, Bradley-Terry strengths with bootstrap intervals,
  and the "Turing test" rate (how often the real tune was picked).

The UI's *Listen* section (``app/sections/listen.py``) and notebook 3.6 use them.
"""
