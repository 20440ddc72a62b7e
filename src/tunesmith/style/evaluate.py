"""Measure the rhythm classifier on the test split: ``python -m tunesmith.style.evaluate`` (``make eval``).

The classifier is judged per whole performance (a tune's opening played once, its crops'
probabilities averaged, as the classifier judges longer audio) and per single 10 s clip, with
balanced accuracy (each class counts the same, whatever its number of test tunes) and a confusion
matrix. The test performances are drawn with the training run's seed and counts
(:class:`tunesmith.style.data.RenderPlan`), so a shipped checkpoint meets the performances its
model card reports; their features come from the cache when present. Training
(:mod:`tunesmith.style.train`) uses the same measures to choose and report its model.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from tunesmith import paths
from tunesmith.style import model as style
from tunesmith.style.data import (
    CACHE_DIR,
    CLASSES,
    Dataset,
    FeatureCache,
    RenderPlan,
    labelled_tunes,
    split_dataset,
)
from tunesmith.music.corpus import ABC_DIR

CHECKPOINT = paths.CHECKPOINTS / "style-classifier"
"""The shipped classifier: measured unless ``--checkpoint`` says otherwise, and where training writes."""


def confusion(labels: np.ndarray, predicted: np.ndarray, n: int = len(CLASSES)) -> np.ndarray:
    """Confusion matrix: row = true class, column = predicted class."""
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def balanced_accuracy(matrix: np.ndarray) -> float:
    """Mean recall over the classes that occur (each class counts the same, whatever its size)."""
    totals = matrix.sum(axis=1)
    present = totals > 0
    return float(np.mean(np.diag(matrix)[present] / totals[present])) if present.any() else 0.0


def _grouped(probs: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Confusion matrix judging each group of rows by the average of its probabilities."""
    ids = np.unique(groups)
    group_probs = np.stack([probs[groups == g].mean(axis=0) for g in ids])
    group_labels = np.array([labels[groups == g][0] for g in ids])
    return confusion(group_labels, group_probs.argmax(axis=1))


def evaluate(model: "style.StyleClassifier", data: Dataset) -> dict:
    """Balanced accuracy, per-class recall and the confusion matrix of ``model`` on ``data``.

    Crops are judged one by one (``balanced_accuracy``, ``confusion_matrix``, ``recall``); the
    ``performance_`` figures judge each performance by the average of its crops' probabilities, as
    the classifier judges longer audio (the same as the crop figures when every performance is one
    crop); the ``tune_`` figures average all performances of a tune.
    """
    probs = model.predict_features(data.lags, data.stats)
    matrix = confusion(data.labels, probs.argmax(axis=1))
    totals = matrix.sum(axis=1)
    performance_matrix = _grouped(probs, data.labels, data.performances)
    performance_totals = performance_matrix.sum(axis=1)
    tune_matrix = _grouped(probs, data.labels, data.tunes)
    return {
        "balanced_accuracy": balanced_accuracy(matrix),
        "performance_balanced_accuracy": balanced_accuracy(performance_matrix),
        "tune_balanced_accuracy": balanced_accuracy(tune_matrix),
        "accuracy": float(np.trace(matrix) / max(1, matrix.sum())),
        "performance_accuracy": float(np.trace(performance_matrix) / max(1, performance_matrix.sum())),
        "recall": {c: (float(matrix[i, i] / totals[i]) if totals[i] else None) for i, c in enumerate(CLASSES)},
        "performance_recall": {
            c: (float(performance_matrix[i, i] / performance_totals[i]) if performance_totals[i] else None)
            for i, c in enumerate(CLASSES)
        },
        "confusion_matrix": matrix.tolist(),
        "performance_confusion_matrix": performance_matrix.tolist(),
        "tune_confusion_matrix": tune_matrix.tolist(),
        "counts": data.counts(),
    }


def format_confusion(matrix: list[list[int]]) -> str:
    """The confusion matrix as a small text table (rows true, columns predicted)."""
    width = max(len(c) for c in CLASSES) + 2
    lines = ["true \\ predicted".ljust(width + 6) + "".join(c.rjust(width) for c in CLASSES)]
    for c, row in zip(CLASSES, matrix):
        lines.append(c.ljust(width + 6) + "".join(str(v).rjust(width) for v in row))
    return "\n".join(lines)


def predict_latency(model: "style.StyleClassifier", repeats: int = 5) -> float:
    """Median seconds for :meth:`~tunesmith.style.model.StyleClassifier.predict` on 10 s of rendered audio."""
    from tunesmith.audio.synth import render

    tune = "X:1\nM:6/8\nL:1/8\nK:D\n|:d2A AFA|dfe dBA|d2A AFA|Bee e2f:|\n"
    audio = render(tune, tempo=180, sample_rate=22050)[: 22050 * 10]
    audio = np.resize(audio, 22050 * 10)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict(audio, 22050)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def evaluate_checkpoint(path: Path, clips: Dataset, performances: Dataset) -> dict:
    """Measure a trained checkpoint on the test split and print the tables (``make eval``).

    Args:
        path: the checkpoint folder.
        clips: single 10 s test clips.
        performances: whole test performances (the tune's opening played once).

    Returns:
        ``{"test": ..., "test_performances": ...}`` as in ``eval.json``.
    """
    model = style.StyleClassifier.from_pretrained(path)
    results = {"test": evaluate(model, clips), "test_performances": evaluate(model, performances)}
    test, whole = results["test"], results["test_performances"]
    n_whole = sum(c["performances"] for c in performances.counts().values())
    print(f"\nStyle classifier ({path}), test split: {n_whole} whole performances, "
          f"{len(clips.labels)} single 10 s clips\n")
    print("| class | recall, per performance | recall, per 10 s clip |")
    print("|---|---:|---:|")
    for c in CLASSES:
        print(f"| {c} | {(whole['performance_recall'][c] or 0):.0%} | {(test['recall'][c] or 0):.0%} |")
    print(f"| **balanced accuracy** | **{whole['performance_balanced_accuracy']:.1%}** | "
          f"**{test['balanced_accuracy']:.1%}** |")
    goal = whole["performance_balanced_accuracy"] >= 0.85
    print(f"\nGoal: balanced accuracy >= 85% per performance -> {'met' if goal else 'NOT met'}")
    print("\nConfusion, one whole performance each (rows true, columns predicted):\n")
    print(format_confusion(whole["performance_confusion_matrix"]))
    return results


def main(argv: list[str] | None = None) -> dict:
    """Command line: ``python -m tunesmith.style.evaluate [--checkpoint DIR] [--quick] ...``.

    The clip counts and seed must be those the checkpoint was trained with for the figures to be
    its model card's; the defaults are the shipped checkpoint's.

    Returns:
        ``{"test": ..., "test_performances": ...}`` as in ``eval.json``.
    """
    defaults = RenderPlan()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT, help="checkpoint folder to measure")
    parser.add_argument("--cache", type=Path, default=CACHE_DIR, help="folder of cached clip features")
    parser.add_argument("--data", type=Path, default=ABC_DIR, help="folder of the corpus split files")
    parser.add_argument("--test-variants", type=int, default=defaults.test_variants, help="clips per test tune")
    parser.add_argument(
        "--performances", type=int, default=defaults.performances, help="whole performances per test tune"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="the training run's seed")
    parser.add_argument("--workers", type=int, default=2, help="rendering processes")
    parser.add_argument("--quick", action="store_true", help="a few clips: a smoke test of the pipeline")
    args = parser.parse_args(argv)
    max_tunes = None
    if args.quick:
        args.test_variants, args.performances, args.workers = 1, 1, 1
        max_tunes = 2
    plan = RenderPlan(
        seed=args.seed, test_variants=args.test_variants, performances=args.performances, max_tunes=max_tunes
    )

    import torch

    # One thread: steps of a network this small are dominated by thread synchronisation, which on
    # a shared machine makes two threads several times slower than one.
    torch.set_num_threads(1)
    cache = FeatureCache(args.cache)
    splits = {s: labelled_tunes(s, args.data) for s in ("train", "validation", "test")}
    tune_counts = {s: {c: len(v) for c, v in g.items()} for s, g in splits.items()}
    print("labelled tunes per split:", json.dumps(tune_counts))
    clips = split_dataset(splits["test"], "test", plan, cache, workers=args.workers)
    performances = split_dataset(splits["test"], "test", plan, cache, whole=True, workers=args.workers)
    return evaluate_checkpoint(args.checkpoint, clips, performances)


if __name__ == "__main__":
    main()
