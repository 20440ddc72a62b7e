"""How well the transcriber does: a note accuracy, and a round trip on the test split.

:func:`note_accuracy` scores a transcription against the tune's notes. :func:`evaluate` renders
tunes of the held-out test split (cleanly with instruments and with
:func:`tunesmith.transcriber.voice.voice_like`), transcribes each rendering without hints and
prints a table; ``python -m tunesmith.transcriber.evaluate [--n 40]`` runs it (``make eval``).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Iterable, Sequence

import numpy as np

from tunesmith.audio import synth
from tunesmith.music.corpus import ensure_splits, read_split
from tunesmith.music.keys import KeyNameError, parse_key
from tunesmith.transcriber.model import TranscriptionError, transcribe
from tunesmith.transcriber.voice import excerpt_tune, voice_like

# --------------------------------------------------------------------------------------------
# Note accuracy
# --------------------------------------------------------------------------------------------


def _aligned_matches(ref: list[tuple[float, int]], est: list[tuple[float, int]], tolerance: float) -> int:
    """Maximum number of (reference, estimate) pairs with equal pitch and onsets within tolerance.

    Per pitch, both onset lists are sorted; on a line, matching points within a tolerance is
    solved exactly by one greedy two-pointer pass (match the earliest compatible pair).
    """
    count = 0
    for p in {q for _, q in ref} & {q for _, q in est}:
        a = sorted(o for o, q in ref if q == p)
        b = sorted(o for o, q in est if q == p)
        i = j = 0
        while i < len(a) and j < len(b):
            if abs(a[i] - b[j]) <= tolerance:
                count += 1
                i += 1
                j += 1
            elif a[i] < b[j]:
                i += 1
            else:
                j += 1
    return count


_SCALES = (1.0, 2.0, 0.5, 4.0, 0.25, 1.5, 2.0 / 3.0, 3.0, 1.0 / 3.0, 0.75, 4.0 / 3.0)


def note_accuracy(
    reference_events: Iterable,
    transcribed_notes: Iterable,
    *,
    onset_tolerance: float = 0.125,
    align_first: int = 4,
) -> float:
    """Share of notes transcribed right: matched notes over ``max(len(reference), len(transcribed))``.

    A reference note and a transcribed note match when their MIDI pitches are equal and their
    onsets, in quarter notes, are within ``onset_tolerance`` after aligning the two: the
    transcription's onsets are scaled by a simple ratio (it may have chosen half or double the
    tempo, or a 3:2 relation) and shifted so that one of the first ``align_first`` notes of each
    lines up; the alignment with the most matches counts. Dividing by the longer list penalises
    missed and extra notes alike.

    Written here rather than with ``mir_eval.transcription`` (which is not a dependency of the
    workshop): mir_eval compares onsets in seconds with a fixed 50 ms window and does no tempo
    alignment, while a transcription's rhythm is only defined up to its tempo and starting point.
    The matching itself is the same idea (a maximum matching of same-pitch notes within the
    tolerance), computed exactly by a greedy pass per pitch.

    Args:
        reference_events: the tune's notes, e.g. :func:`tunesmith.audio.synth.note_events`; objects with
            ``pitch`` (``None`` for rests, which are ignored) and ``onset`` in quarter notes.
        transcribed_notes: e.g. :attr:`tunesmith.transcriber.model.Transcription.notes`; same attributes.
        onset_tolerance: in quarter notes; the default, a 32nd note, asks for the exact sixteenth.
        align_first: how many leading notes of each side are tried as the alignment anchor.

    Returns:
        Accuracy in [0, 1]; 1.0 when both are empty.
    """
    ref = [(float(e.onset), int(e.pitch)) for e in reference_events if e.pitch is not None]
    est = [(float(e.onset), int(e.pitch)) for e in transcribed_notes if e.pitch is not None]
    if not ref and not est:
        return 1.0
    if not ref or not est:
        return 0.0
    best = 0
    for scale in _SCALES:
        offsets = {
            round(ref[i][0] - scale * est[j][0], 9)
            for i in range(min(align_first, len(ref)))
            for j in range(min(align_first, len(est)))
            if ref[i][1] == est[j][1]
        }
        for offset in offsets:
            moved = [(scale * o + offset, p) for o, p in est]
            best = max(best, _aligned_matches(ref, moved, onset_tolerance))
    return best / max(len(ref), len(est))


# --------------------------------------------------------------------------------------------
# Round trip on the test split
# --------------------------------------------------------------------------------------------


def _meter_class(meter: str | None) -> str:
    beats, unit = (int(v) for v in (meter or "4/4").split("/"))
    if unit == 8 and beats % 3 == 0 or (unit == 4 and beats == 6):
        return "6/8"
    return "3/4" if beats % 3 == 0 else "4/4"


def _fifths(key: str) -> int | None:
    try:
        return parse_key(key).fifths
    except KeyNameError:
        return None


def evaluate(
    n: int = 40,
    *,
    bars: int = 8,
    instruments: Sequence[str] = ("fiddle", "flute"),
    seed: int = 0,
    out=sys.stdout,
) -> dict[str, dict[str, float]]:
    """Round trip on the test split: render, transcribe, compare; prints a table.

    Each of ``n`` test tunes (spread evenly over the split) is cut to its first ``bars`` bars (to keep the run short)
    and rendered at a random tempo between 90 and 140 quarter notes per minute, cleanly with each
    instrument and once with :func:`tunesmith.transcriber.voice.voice_like`; each rendering is
    transcribed without hints.

    Returns:
        Per condition: mean and median note accuracy, the share of tunes at 90% or better, key
        signature and meter agreement (meters grouped as duple, simple triple and compound),
        tempo agreement (within 4%, allowing half or double), and wall-clock and CPU seconds per
        transcription.
    """
    ensure_splits()
    every = read_split("test")
    # Spread over the whole split: it is ordered by collection, and the collections differ (long
    # Essen songs in 3/2 and 4/2, O'Neill's jigs and reels, Nottingham dance tunes).
    tunes = [every[int(i)] for i in np.linspace(0, len(every) - 1, min(n, len(every)))]
    rng = np.random.default_rng(seed)
    conditions = [f"clean {name}" for name in instruments] + ["voice-like"]
    rows: dict[str, dict[str, list]] = {c: {"acc": [], "key": [], "meter": [], "tempo": [], "time": [], "cpu": [], "audio": []} for c in conditions}
    rate = 22050
    for index, abc in enumerate(tunes):
        tune = excerpt_tune(abc, bars)
        bpm = float(rng.uniform(90, 140))
        ref_key = re.search(r"(?m)^K:\s*(\S+)", abc)
        ref_fifths = _fifths(ref_key.group(1)) if ref_key else None
        for condition in conditions:
            if condition == "voice-like":
                audio = voice_like(tune, seed=seed * 1000 + index, tempo=bpm, sample_rate=rate)
            else:
                audio = synth.render(tune, tempo=bpm, instrument=condition.split()[1], sample_rate=rate)
            started, cpu = time.perf_counter(), time.process_time()
            try:
                result = transcribe(audio, rate)
            except TranscriptionError:
                result = None
            row = rows[condition]
            row["time"].append(time.perf_counter() - started)
            row["cpu"].append(time.process_time() - cpu)
            row["audio"].append(len(audio) / rate)
            if result is None:
                row["acc"].append(0.0)
                continue
            row["acc"].append(note_accuracy(tune.events, result.notes))
            if ref_fifths is not None:
                row["key"].append(_fifths(result.key) == ref_fifths)
            row["meter"].append(_meter_class(result.meter) == _meter_class(tune.meter))
            ratio = result.tempo / bpm
            row["tempo"].append(any(abs(ratio / f - 1.0) < 0.04 for f in (0.5, 1.0, 2.0)))

    summary = {}
    header = f"{'condition':<16}{'tunes':>6}{'accuracy':>10}{'median':>8}{'>=90%':>7}{'key sig':>9}{'meter':>7}{'tempo':>7}{'s/tune':>8}{'cpu s':>7}{'audio s':>9}"
    print(f"Round trip on {len(tunes)} test tunes (spread over the split), first {bars} bars each", file=out)
    print(header, file=out)
    print("-" * len(header), file=out)
    for condition, row in rows.items():
        acc = np.array(row["acc"])
        summary[condition] = {
            "accuracy": float(acc.mean()),
            "median": float(np.median(acc)),
            "at_least_90": float(np.mean(acc >= 0.9)),
            "key_signature": float(np.mean(row["key"])) if row["key"] else float("nan"),
            "meter": float(np.mean(row["meter"])) if row["meter"] else float("nan"),
            "tempo": float(np.mean(row["tempo"])) if row["tempo"] else float("nan"),
            "seconds_per_tune": float(np.mean(row["time"])),
            "cpu_seconds_per_tune": float(np.mean(row["cpu"])),
            "audio_seconds": float(np.mean(row["audio"])),
        }
        s = summary[condition]
        print(
            f"{condition:<16}{len(acc):>6}{s['accuracy']:>10.1%}{s['median']:>8.1%}{s['at_least_90']:>7.0%}"
            f"{s['key_signature']:>9.0%}{s['meter']:>7.0%}{s['tempo']:>7.0%}{s['seconds_per_tune']:>8.2f}{s['cpu_seconds_per_tune']:>7.2f}{s['audio_seconds']:>9.1f}",
            file=out,
        )
    return summary


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """``python -m tunesmith.transcriber.evaluate [--n 40] [--bars 8] [--instruments fiddle,flute] [--seed 0]``."""
    parser = argparse.ArgumentParser(description="Round trip on the test split: render, transcribe, compare; print a table.")
    parser.add_argument("--n", type=int, default=40, help="test tunes to use (default 40)")
    parser.add_argument("--bars", type=int, default=8, help="bars of each tune to use (default 8)")
    parser.add_argument("--instruments", default="fiddle,flute", help="instruments of the clean renderings")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return evaluate(args.n, bars=args.bars, instruments=[s for s in args.instruments.split(",") if s], seed=args.seed)


if __name__ == "__main__":
    main()
