"""The sets of tunes that are judged: real ones from the test split, and each arm's.

An *arm* is whatever produced a set of tunes: a generator version, a pipeline, one side of an A/B
experiment. Its tunes come from a fresh seeded sample (:func:`generated`, in this process from a
checkpoint; :func:`from_tunes` for tunes fetched from a server) or from what the gateway's request
log recorded (:func:`from_records`).

The reference is the corpus's **test** split, which no model was trained on, restricted to the
rhythms the style classifier knows (:data:`tunesmith.style.data.CLASSES`), since rhythm agreement
asks it. A generated sample asks for exactly the reference's headers (meter, key, rhythm), one
tune per real tune, so both sets have the same rhythms and keys. Each real tune is in one of two
halves (every other tune of each rhythm); a generated tune belongs to the half of the real tune
whose header it was asked with. :mod:`tunesmith.realism.report` compares each half's candidates
with the *other* half of the real tunes, so the real half beside it is a fair ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from tunesmith.music.abc import Header, read_tune
from tunesmith.style.data import labelled_tunes, opening_bars, tune_class

BARS = 16
"""Bars per tune: generated tunes are this long, real tunes are cut to their first this-many bars,
so statistics that grow with length (pitch range, shared runs) compare like with like."""


@dataclass
class Sample:
    """A set of tunes to judge.

    Attributes:
        name: the arm's name (``real``, ``v1``, ``v2``, a pipeline ...).
        tunes: canonical ABC tunes.
        rhythms: per tune, the rhythm asked for (a real tune's own), one of
            :data:`~tunesmith.style.data.CLASSES` or ``None`` when it is none of them.
        halves: per tune, 0 or 1: which half of the real tunes it is compared against the other of.
    """

    name: str
    tunes: list[str]
    rhythms: list[str | None]
    halves: np.ndarray

    def __post_init__(self) -> None:
        self.halves = np.asarray(self.halves, dtype=int)
        if not len(self.tunes) == len(self.rhythms) == len(self.halves):
            raise ValueError(f"{self.name}: {len(self.tunes)} tunes, {len(self.rhythms)} rhythms, {len(self.halves)} halves")

    def __len__(self) -> int:
        return len(self.tunes)

    def headers(self) -> list[Header]:
        """Each tune's meter, key and rhythm (``slip jig`` spelt as the generator takes it)."""
        return [read_tune(abc)[0] for abc in self.tunes]


def _alternating(labels: list) -> np.ndarray:
    """0, 1, 0, 1 ... within each label's tunes: halves balanced in every rhythm."""
    seen: dict = {}
    halves = []
    for label in labels:
        halves.append(seen.get(label, 0) % 2)
        seen[label] = seen.get(label, 0) + 1
    return np.array(halves, dtype=int)


def reference(per_rhythm: int | None = None, bars: int = BARS) -> Sample:
    """The real tunes of the test split in the classifier's rhythms, their first ``bars`` bars.

    Args:
        per_rhythm: at most this many tunes of each rhythm, in file order (``None``: all; the
            split holds 48 reels, 23 hornpipes, 16 jigs and 4 slip jigs).
        bars: written bars kept of each tune.

    Returns:
        The ``real`` sample.
    """
    tunes, rhythms = [], []
    for rhythm, group in labelled_tunes("test").items():
        for abc in group[:per_rhythm]:
            tunes.append(opening_bars(abc, bars))
            rhythms.append(rhythm)
    return Sample("real", tunes, rhythms, _alternating(rhythms))


def generated(name: str, checkpoint: str | Path, real: Sample, *, seed: int = 0, bars: int = BARS,
              temperature: float = 1.0, batch: int = 16) -> Sample:
    """A fresh seeded sample from a generator checkpoint: one tune per real tune's header.

    Args:
        name: the arm's name.
        checkpoint: a generator checkpoint folder.
        real: the reference whose headers are asked for (and whose halves the tunes join).
        seed: the first seed; tune ``i`` uses ``seed + i``.
        bars: bars per tune.
        temperature: sampling temperature.
        batch: tunes per generation batch.

    Returns:
        The sample, tune ``i`` asked with real tune ``i``'s header.
    """
    from tunesmith.generator.model import TuneGenerator

    generator = TuneGenerator.from_pretrained(checkpoint)
    headers = real.headers()
    seeds = [seed + i for i in range(len(headers))]
    tunes: list[str] = []
    for i in range(0, len(headers), batch):
        tunes += generator.generate(headers[i:i + batch], seeds[i:i + batch], temperature=temperature, bars=bars)
    return Sample(name, tunes, list(real.rhythms), real.halves.copy())


def from_tunes(name: str, tunes: list[str], halves: Iterable[int] | None = None) -> Sample:
    """A sample of tunes made elsewhere (a server, a pipeline); each tune's header says what was asked.

    The generator writes the requested meter, key and rhythm into the tune's header, so the
    header is the request. Without ``halves`` the tunes alternate between the halves by rhythm.
    """
    rhythms = [tune_class(abc) for abc in tunes]
    return Sample(name, list(tunes), rhythms, _alternating(rhythms) if halves is None else np.asarray(list(halves)))


def abc_texts(value: object) -> list[str]:
    """The ABC tunes in a logged output value: a tune, a list of tunes, or neither."""
    if isinstance(value, str):
        return [value] if "\nK:" in value or value.startswith("K:") else []
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in abc_texts(item)]
    return []


def _logged_tunes(outputs: dict) -> list[str]:
    """The tunes a request returned: its ``abc`` output (the generators' and the pipelines'), else
    any output holding ABC text."""
    if "abc" in outputs:
        return abc_texts(outputs["abc"])
    return [abc for value in outputs.values() for abc in abc_texts(value)]


def _succeeded(status: object) -> bool:
    try:
        return int(status) < 400
    except (TypeError, ValueError):
        return str(status).lower() in ("ok", "success", "succeeded")


def from_records(records: Iterable, name: str | None = None) -> Sample:
    """A sample from request-log records: every tune that a successful request returned.

    Args:
        records: :class:`tunesmith.gateway.requestlog.Record` objects (anything with ``status``,
            ``arm`` and an ``outputs`` mapping of tensor name to values); mirror calls count too,
            since a shadow arm's tunes are what it would have answered.
        name: the sample's name; default the records' arm.

    Returns:
        The sample, tunes in the records' order.
    """
    records = list(records)
    tunes = [abc for r in records if _succeeded(r.status) for abc in _logged_tunes(r.outputs)]
    if name is None:
        arms = sorted({str(r.arm) for r in records if r.arm})
        name = ", ".join(arms) or "logged"
    return from_tunes(name, tunes)


def arms_in_log(log, experiment: str | None = None, target: str | None = None) -> dict[str, Sample]:
    """One sample per arm of an experiment, from a :class:`~tunesmith.gateway.requestlog.RequestLog`.

    Args:
        log: the request log (its ``records(experiment=, arm=, target=)`` is read).
        experiment: only this experiment's requests.
        target: only requests to this model or pipeline.

    Returns:
        ``{arm: sample}``, arms in alphabetical order; requests without an arm are left out.
    """
    records = log.records(experiment=experiment, target=target)
    arms = sorted({r.arm for r in records if r.arm})
    return {arm: from_records([r for r in records if r.arm == arm], arm) for arm in arms}

