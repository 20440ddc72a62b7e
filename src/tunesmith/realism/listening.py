"""What the style classifier hears in a set of tunes: the rhythm, and an embedding to compare sets.

Every tune is *performed* the same way whether it is real or generated: its first
:data:`PLAY_BARS` bars (repeats played out) by :mod:`tunesmith.audio.synth`, at the middle of its
rhythm's dance tempo (:data:`tunesmith.music.abc.DANCE_BARS_PER_MINUTE`), on the instrument that
its position in the sample picks from :data:`tunesmith.audio.synth.INSTRUMENTS`. Generated tune
``i`` was asked with real tune ``i``'s header, so the two are played at the same tempo on the same
instrument: what differs is only the music. No effects or noise are added (the classifier was
trained with them, but they would add chance differences between the sets).

The classifier (:mod:`tunesmith.style.model`) gives each performance the probability of each
rhythm and a 48-number embedding of how it is organised in time; the Fréchet distance between
the embeddings of two sets (:func:`tunesmith.style.model.frechet_distance`) is the "FID" of this
project.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunesmith import paths
from tunesmith.music.abc import DANCE_BARS_PER_MINUTE, meter_length, read_tune
from tunesmith.realism.samples import Sample
from tunesmith.style import model as style
from tunesmith.style.data import opening_bars

PLAY_BARS = 8
"""Written bars played: 9 to 18 s of a dance tune with its repeats, one or two of the classifier's
10 s crops (notebook 2.6 plays the same)."""
CLASSIFIER = paths.CHECKPOINTS / "style-classifier"
"""The shipped style classifier."""


@dataclass
class Heard:
    """The classifier's answers for one sample, row ``i`` for tune ``i``.

    Attributes:
        probabilities: ``(tunes, rhythms)``, columns in :attr:`labels` order; NaN rows for tunes
            that could not be played (too short, unreadable).
        embeddings: ``(tunes, 48)``, NaN rows likewise.
        labels: the classifier's rhythms.
    """

    probabilities: np.ndarray
    embeddings: np.ndarray
    labels: list[str]

    @property
    def heard(self) -> list[str | None]:
        """The most likely rhythm of each tune (``None`` where it could not be played)."""
        return [None if np.isnan(p).any() else self.labels[int(np.argmax(p))] for p in self.probabilities]

    def agreement(self, rhythms: list[str | None]) -> np.ndarray:
        """Per tune: 1.0 when the classifier hears the rhythm asked for, 0.0 when not, NaN when unknown."""
        return np.array([np.nan if want is None or got is None else float(want == got)
                         for want, got in zip(rhythms, self.heard)])


def tempo_of(rhythm: str | None, meter: str) -> float:
    """Quarter notes per minute for a tune of ``rhythm`` in ``meter``: the middle of the dance's range."""
    low, high = DANCE_BARS_PER_MINUTE.get(rhythm or "", (50.0, 60.0))
    return (low + high) / 2 * 4 * float(meter_length(meter))


def performances(sample: Sample, bars: int = PLAY_BARS) -> list[tuple[np.ndarray | None, int]]:
    """Play every tune of a sample as the module docstring says.

    Returns:
        ``(samples, rate)`` per tune; ``samples`` is ``None`` when the tune cannot be played.
    """
    from tunesmith.audio.synth import INSTRUMENTS, SynthError, render

    rate = style.FEATURE_SAMPLE_RATE
    out = []
    for i, (abc, rhythm) in enumerate(zip(sample.tunes, sample.rhythms)):
        try:
            meter = read_tune(abc)[0].meter
            audio = render(opening_bars(abc, bars), tempo=tempo_of(rhythm, meter),
                           instrument=INSTRUMENTS[i % len(INSTRUMENTS)], sample_rate=rate)
        except (SynthError, ValueError):
            audio = None
        out.append((audio, rate))
    return out


def listen(sample: Sample, classifier: style.StyleClassifier, bars: int = PLAY_BARS, batch: int = 16) -> Heard:
    """Play a sample and ask the classifier about every performance.

    Args:
        sample: the tunes.
        classifier: a loaded style classifier.
        bars: written bars played of each tune.
        batch: performances per classifier batch.

    Returns:
        The :class:`Heard` answers.
    """
    labels = list(classifier.labels)
    probabilities = np.full((len(sample), len(labels)), np.nan)
    embeddings = np.full((len(sample), classifier.config.embed_dim), np.nan)
    played = performances(sample, bars)
    usable = []
    for i, (audio, rate) in enumerate(played):
        if audio is None:
            continue
        try:
            style.check_audio(audio, rate)
        except style.StyleInputError:
            continue
        usable.append(i)
    for start in range(0, len(usable), batch):
        rows = usable[start:start + batch]
        probs, emb = classifier.classify_batch([played[i] for i in rows])
        probabilities[rows], embeddings[rows] = probs, emb
    return Heard(probabilities, embeddings, labels)


def load_classifier(path: str | Path = CLASSIFIER) -> style.StyleClassifier:
    """The style classifier from a checkpoint folder (default: the shipped one)."""
    return style.StyleClassifier.from_pretrained(path)
