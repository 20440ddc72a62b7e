"""Musical statistics of a set of tunes, compared with a set of real ones (Yang & Lerch, 2020).

Li-Chia Yang and Alexander Lerch, "On the evaluation of generative models in music" (Neural
Computing and Applications, 2020), judge a generator by *distributions*, not by single tunes:

1. every tune is reduced to a few musical features (:data:`FEATURES`): the pitch-class
   histogram, the pitch range, the interval histogram, the note-length histogram and, per bar,
   where in the bar notes start;
2. for each feature, the distances between the tunes of the real set (*intra-set*) show how much
   real tunes differ from each other; the distances from each candidate tune to each real tune
   (*inter-set*) show how far the candidates lie from the real ones;
3. a smooth density of each set of distances (a Gaussian kernel density estimate) is compared:
   their **overlapping area** (1 = the same distribution, 0 = nothing in common) and their
   **KL divergence** (Kullback-Leibler: how many extra nats it costs to describe the real
   distances with the candidates' density; 0 = the same, larger = further apart).

A candidate that writes like the real tunes lies as far from them as they lie from each other.
The real set split in halves, one half taken as the candidates, gives the best a candidate can
score with these sample sizes (the *ceiling*); :mod:`tunesmith.realism.report` does that.

Tunes are read with the project's own ABC lexer (:mod:`tunesmith.music.abc`), a hundred times
quicker than a music21 parse, so a bootstrap can recompute the figures hundreds of times.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import ndimage, special
from scipy.spatial.distance import cdist, pdist

from tunesmith.music.abc import UNIT, meter_length, read_tune, timed
from tunesmith.music.pitch import pitches

INTERVAL_LIMIT = 12
"""Intervals are counted from -12 to +12 semitones; a wider leap counts as an octave."""
NOTE_LENGTHS = (Fraction(1, 3), Fraction(1, 2), Fraction(2, 3), Fraction(1), Fraction(3, 2), Fraction(2),
                Fraction(3), Fraction(4), Fraction(6))
"""Note-length classes in eighths (the canonical L:1/8): triplet sixteenth, sixteenth, triplet
eighth, eighth, dotted eighth, quarter, dotted quarter, half, dotted half; any other length
counts in the nearest class. Yang & Lerch use twelve classes for classical MIDI; folk dance tunes
use these."""
ONSET_GRID = 144
"""Positions per bar for the onset pattern: 144 is a multiple of every bar's count of sixteenths and
triplet eighths in these tunes (2/4: 8, 4/4: 16, 6/8: 12, 9/8: 18, triplets in 4/4: 24), so a note
starts exactly on a grid position whatever the meter."""
GRID_POINTS = 256
"""Points at which the two distance densities are evaluated and compared."""


@dataclass(frozen=True)
class Note:
    """A note or rest as the statistics see it."""

    pitch: int | None  # semitones, middle C = 60; None for a rest
    length: Fraction  # sounding length in eighths (a triplet's notes count two thirds)
    position: Fraction  # where it starts, as a fraction of its bar
    bar: int  # which bar, from 0


def notes_of(abc: str) -> list[Note]:
    """The notes and rests of a canonical tune with their sounding lengths and places in the bar.

    A short first bar is a pickup: its notes are placed at the end of the bar.

    Args:
        abc: a canonical tune (``X:``, ``M:``, ``L:1/8``, ``K:``, body).

    Returns:
        The tune's notes in order.
    """
    header, symbols = read_tune(abc)
    try:
        bar = meter_length(header.meter) / UNIT
    except ValueError:
        bar = Fraction(8)
    sounding = iter(pitches(header, symbols))
    bars: list[list[tuple[int | None, Fraction, Fraction]]] = [[]]
    fill = Fraction(0)
    for symbol, length in timed(symbols):
        if length is None:  # a bar line
            if symbol not in ("[1", "[2") and bars[-1]:
                bars.append([])
                fill = Fraction(0)
            continue
        pitch, _ = next(sounding)
        bars[-1].append((pitch, length, fill))
        fill += length
    notes = []
    for number, content in enumerate(b for b in bars if b):
        filled = sum(length for _, length, _ in content)
        shift = bar - filled if number == 0 and filled < bar else Fraction(0)
        notes += [Note(p, length, ((start + shift) / bar) % 1, number) for p, length, start in content]
    return notes


def _normalised(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else counts


def pitch_class_histogram(notes: list[Note]) -> np.ndarray:
    """Share of notes (not durations, as Yang & Lerch count them) on each of the 12 pitch classes."""
    return _normalised(np.bincount([n.pitch % 12 for n in notes if n.pitch is not None], minlength=12).astype(float))


def pitch_range(notes: list[Note]) -> np.ndarray:
    """Highest minus lowest pitch in semitones, as a 1-vector."""
    sounding = [n.pitch for n in notes if n.pitch is not None]
    return np.array([max(sounding) - min(sounding) if sounding else 0.0], dtype=float)


def interval_histogram(notes: list[Note]) -> np.ndarray:
    """Share of each step between consecutive notes (rests skipped), -12 to +12 semitones."""
    sounding = np.array([n.pitch for n in notes if n.pitch is not None])
    steps = np.clip(np.diff(sounding), -INTERVAL_LIMIT, INTERVAL_LIMIT) + INTERVAL_LIMIT
    return _normalised(np.bincount(steps.astype(int), minlength=2 * INTERVAL_LIMIT + 1).astype(float))


def note_length_histogram(notes: list[Note]) -> np.ndarray:
    """Share of notes in each class of :data:`NOTE_LENGTHS` (rests left out)."""
    classes = np.array([float(c) for c in NOTE_LENGTHS])
    lengths = np.array([float(n.length) for n in notes if n.pitch is not None])
    nearest = np.abs(np.log(lengths[:, None]) - np.log(classes[None, :])).argmin(axis=1) if len(lengths) else []
    return _normalised(np.bincount(nearest, minlength=len(classes)).astype(float))


def onset_pattern(notes: list[Note]) -> np.ndarray:
    """Share of the tune's bars in which a note starts at each of :data:`ONSET_GRID` positions.

    A reel's eighths start at every 18th position, a jig's at every 24th: the pattern is the
    rhythm's fingerprint, as the style classifier hears it.
    """
    counts = np.zeros(ONSET_GRID)
    for note in notes:
        if note.pitch is not None:
            counts[int(round(float(note.position) * ONSET_GRID)) % ONSET_GRID] += 1
    return counts / max(len({note.bar for note in notes}), 1)


FEATURES = {
    "pitch classes": pitch_class_histogram,
    "pitch range": pitch_range,
    "intervals": interval_histogram,
    "note lengths": note_length_histogram,
    "onsets in the bar": onset_pattern,
}
"""Yang & Lerch's features as this project computes them, by name: each maps a tune's notes to a vector."""


def feature_vectors(tunes: list[str]) -> dict[str, np.ndarray]:
    """Every feature of :data:`FEATURES` for every tune.

    Returns:
        ``{feature: (tunes, dims) array}``.
    """
    notes = [notes_of(abc) for abc in tunes]
    return {name: np.array([feature(n) for n in notes], dtype=float).reshape(len(tunes), -1)
            for name, feature in FEATURES.items()}


def intra_distances(x: np.ndarray) -> np.ndarray:
    """Euclidean distances between every pair of rows of ``x`` (each pair once)."""
    return pdist(x)


def inter_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distances from every row of ``x`` to every row of ``y``."""
    return cdist(x, y).ravel()


def grid_for(*distances: np.ndarray) -> np.ndarray:
    """The points at which densities of these distances are compared: 0 to 1.2 times the largest."""
    top = max((float(np.max(d, initial=0.0)) for d in distances), default=0.0)
    return np.linspace(0.0, 1.2 * top if top > 0 else 1.0, GRID_POINTS)


def density(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian kernel density of ``values`` on an evenly spaced ``grid``, Scott's bandwidth.

    The bandwidth is Scott's rule, as scipy's ``gaussian_kde`` (Yang & Lerch's choice) sets it for
    one dimension: the values' standard deviation times ``n ** (-1/5)``. The sum of kernels is
    taken over the values binned on the grid and smoothed with a Gaussian filter (a "binned"
    KDE, as statsmodels' FFT estimator does): within a grid step of scipy's own evaluation and a
    hundred times quicker, which a bootstrap of hundreds of resamples needs.
    """
    step = grid[1] - grid[0]
    if len(values) > 1 and np.ptp(values) > 0:
        bandwidth = float(np.std(values, ddof=1)) * len(values) ** -0.2
    else:  # every distance equal: a bump one grid step wide at that value
        bandwidth = step
    bins = np.clip(np.rint((np.asarray(values) - grid[0]) / step).astype(int), 0, len(grid) - 1)
    counts = np.bincount(bins, minlength=len(grid)).astype(float)
    smooth = ndimage.gaussian_filter1d(counts, bandwidth / step, mode="constant", truncate=6.0)
    return smooth / (smooth.sum() * step)


def compare_densities(p: np.ndarray, q: np.ndarray, grid: np.ndarray) -> tuple[float, float]:
    """Overlapping area and KL(p || q) of two densities on the same ``grid``."""
    overlap = float(np.minimum(p, q).sum() * (grid[1] - grid[0]))
    # a floor keeps the divergence finite where the candidate's density vanishes
    kl = float(special.rel_entr(p / p.sum(), q / q.sum() + 1e-12).sum())
    return min(overlap, 1.0), kl


def compare_distances(reference: np.ndarray, candidate: np.ndarray, grid: np.ndarray | None = None) -> tuple[float, float]:
    """Overlapping area and KL divergence of two sets of distances.

    Args:
        reference: the real tunes' intra-set distances.
        candidate: the inter-set distances from candidate tunes to the same real tunes.
        grid: where to compare the densities (default: :func:`grid_for` both sets).

    Returns:
        ``(overlap, kl)``: the area under both densities (0 to 1) and
        KL(reference || candidate) in nats.
    """
    grid = grid_for(reference, candidate) if grid is None else grid
    return compare_densities(density(reference, grid), density(candidate, grid), grid)
