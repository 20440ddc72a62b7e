"""Quality measures for generated (and real) tunes.

* :func:`parses` - music21 reads the ABC (the judge is independent of our own lexer);
* :func:`bar_checks_of` - each bar fills the meter, short bars only as pickup / at a section end;
* :func:`key_correlation` - Pearson correlation of the tune's duration-weighted pitch-class
  histogram with the Krumhansl-Kessler profile of the *requested* key; :func:`estimated_key`
  is the best of the 24 major/minor profiles. The profiles and the reading of key names come
  from :mod:`tunesmith.music.keys`, as the decoder's key prior does, so a tune is scored against
  the very profile it was steered by;
* :class:`RunIndex` - does a tune share a run of 48 symbols with any training tune
  (memorisation check); :func:`run_steps` is how both it and the critic's novelty index
  (:mod:`tunesmith.generator.critic`) read a tune, so the two agree on what a shared run is.
"""

from __future__ import annotations

import warnings

import numpy as np

from tunesmith.music.abc import bar_checks, parse_length, read_tune
from tunesmith.music.pitch import pitches
from tunesmith.music.keys import key_profile, tonic_and_mode

RUN_LENGTH = 48


def parse_score(abc: str):
    """Parse with music21, or ``None`` when it fails or holds no notes."""
    import music21

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = music21.converter.parse(abc, format="abc")
    except Exception:  # music21 raises many unrelated types on bad input
        return None
    if not score.flatten().notes:
        return None
    return score


def parses(abc: str) -> bool:
    """True when music21 reads the tune and finds notes in it."""
    return parse_score(abc) is not None


def bar_checks_of(abc: str, meter: str | None = None) -> list[bool]:
    """One boolean per bar of a canonical tune: does it fill ``meter`` (default: its own M:)?"""
    header, symbols = read_tune(abc)
    return bar_checks(symbols, meter or header.meter)


def pitch_histogram(score) -> np.ndarray:
    """Duration-weighted pitch-class histogram of a music21 score."""
    hist = np.zeros(12)
    for element in score.flatten().notes:
        for pitch in element.pitches:
            hist[pitch.pitchClass] += float(element.quarterLength) or 0.25
    return hist


def histogram_of(abc: str) -> np.ndarray:
    """Duration-weighted pitch-class histogram of a canonical tune, read by our own lexer.

    :func:`pitch_histogram` needs a music21 parse (about 20 ms a tune, a hundred times this, plus
    importing music21); a served critic scores several candidates per request, so it reads the
    notes itself. The two agree except that a triplet's notes count here at their written length.
    """
    header, symbols = read_tune(abc)
    hist = np.zeros(12)
    for pitch, length in pitches(header, symbols):
        if pitch is not None:
            hist[pitch % 12] += float(parse_length(length))
    return hist


def key_correlation(hist: np.ndarray, key: str) -> float:
    """Pearson correlation between a pitch histogram and the profile of ``key``."""
    if hist.sum() == 0 or np.allclose(hist, hist[0]):
        return 0.0
    tonic, minor = tonic_and_mode(key)
    return float(np.corrcoef(hist, key_profile(tonic, minor))[0, 1])


def estimated_key(hist: np.ndarray) -> tuple[int, bool]:
    """The best-correlating of the 24 major/minor keys, as ``(tonic pitch class, minor)``."""
    best = max(
        ((t, m) for t in range(12) for m in (False, True)),
        key=lambda tm: np.corrcoef(hist, key_profile(*tm))[0, 1] if hist.std() > 0 else 0,
    )
    return best


def run_steps(abc: str) -> list[tuple[int | str, str]]:
    """A tune as the steps runs are compared by: ``(interval from the previous note, length)``.

    Intervals rather than pitches make a transposed copy look the same as the original; a rest
    is ``("z", length)`` and the interval after it is from the last note before it. The first
    note's interval is 0. A run of these steps ignores the interval into its first step (see
    :class:`RunIndex`).
    """
    header, symbols = read_tune(abc)
    steps: list[tuple[int | str, str]] = []
    previous = None
    for pitch, length in pitches(header, symbols):
        if pitch is None:
            steps.append(("z", length))
            continue
        steps.append((0 if previous is None else pitch - previous, length))
        previous = pitch
    return steps


class RunIndex:
    """Hashes of every run of ``n`` consecutive notes in a set of tunes, in any key.

    A run is compared as (interval from the previous note, written length) pairs, rests as
    rests, so a copy is found even when it was transposed (training sees transposed copies) or
    barred differently.

    Args:
        tunes: canonical ABC tunes (the training split, or the whole corpus).
        n: run length in notes and rests.
    """

    def __init__(self, tunes: list[str], n: int = RUN_LENGTH):
        self.n = n
        self.hashes: set[int] = set()
        for abc in tunes:
            for run in self._runs(abc):
                self.hashes.add(run)

    def _runs(self, abc: str):
        steps = run_steps(abc)
        for i in range(len(steps) - self.n + 1):
            window = list(steps[i:i + self.n])
            window[0] = ("start", window[0][1])  # the interval into the run is not part of it
            yield hash(tuple(window))

    def shares_run(self, abc: str) -> bool:
        """True when ``abc`` shares at least one run of ``n`` notes with the indexed tunes."""
        return any(run in self.hashes for run in self._runs(abc))

    __contains__ = shares_run
