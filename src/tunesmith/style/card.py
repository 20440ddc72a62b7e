"""The style classifier's report: its model card (``README.md``) and confusion-matrix picture.

The card's prose lives in ``model_card.md`` beside this module, a :class:`string.Template` whose
``${...}`` fields :func:`model_card` fills from a training run's evaluation record (``eval.json``),
so the text can be read and edited as Markdown and every figure in it comes from the record.
"""

from __future__ import annotations

from pathlib import Path
from string import Template

import numpy as np

from tunesmith.style import model as style
from tunesmith.style.data import CLASSES, OPENING_BARS, tempo_range
from tunesmith.style.evaluate import format_confusion

TEMPLATE_FILE = Path(__file__).with_name("model_card.md")
"""The model card's text, with ``${...}`` fields for the figures."""


def _tempo_check(results: dict, low: float, high: float) -> str:
    """The card's paragraph on the test tunes played in the shared tempo range ('' when not measured)."""
    if "test_shared_tempo" not in results:
        return ""
    s, sw = results["test_shared_tempo"], results["test_performances_shared_tempo"]
    return (
        f"\n**Tempo check.** The same test tunes played again with tempos from *one* range for every "
        f"class ({low:.0f}-{high:.0f} bars per minute, so speed says nothing about the class, and many "
        f"are far slower or faster than the rhythm is ever danced): balanced accuracy "
        f"**{sw['performance_balanced_accuracy']:.1%}** per performance, "
        f"**{s['balanced_accuracy']:.1%}** per 10 s clip. Per performance:\n\n"
        f"```\n{format_confusion(sw['performance_confusion_matrix'])}\n```\n"
    )


def model_card(results: dict) -> str:
    """The checkpoint's README.md, filled in from the evaluation record."""
    test, whole = results["test"], results["test_performances"]
    val, val_whole = results["validation"], results["validation_performances"]
    counts = results["labelled_tunes"]
    settings = results["settings"]
    rows = "\n".join(
        f"| {c} | {counts['train'][c]} | {counts['validation'][c]} | {counts['test'][c]} | "
        f"{results['train']['counts'][c]['clips']} | {whole['counts'][c]['performances']} | "
        f"{(whole['performance_recall'][c] or 0):.0%} | {(test['recall'][c] or 0):.0%} |"
        for c in CLASSES
    )
    low, high = tempo_range(CLASSES[0], "shared")
    train_tempo = {
        "mixed": (
            f"every other training clip from its rhythm's range, the others from the shared range "
            f"{low:.0f}-{high:.0f}"
        ),
        "per-class": "every training clip from its rhythm's range",
        "shared": f"every training clip from the shared range {low:.0f}-{high:.0f}",
    }[settings["train_tempo"]]
    averaged = results["training"].get("averaged_epochs")
    if averaged:
        kept = (
            f"the weights are the average of those at the end of epochs {averaged[0]} to {averaged[1]} "
            f"(stochastic weight averaging; batch-norm statistics recomputed on the training clips), so "
            f"validation only measures and picks nothing"
        )
    else:
        kept = (
            f"the weights of the epoch with the best balanced accuracy on the validation clips (epoch "
            f"{results['training']['best_epoch']} of {results['training']['epochs_run']} run) are kept"
        )
    rendering = (
        f"Rendering and feature extraction took {results['render_seconds']:.0f} s in {settings['workers']} "
        f"processes ({results['rendered_clips']} clips rendered, the rest cached)"
        if results["rendered_clips"] else "All clip features came from the cache"
    )
    absolute = results.get("absolute", 0)
    fields = {
        "classes": ", ".join(CLASSES),
        "min_seconds": f"{style.MIN_SECONDS:g}",
        "feature_sample_rate": style.FEATURE_SAMPLE_RATE,
        "embed_dim": style.EMBED_DIM,
        "crop_seconds": f"{style.CROP_SECONDS:g}",
        "crop_hop_seconds": f"{style.CROP_HOP_SECONDS:g}",
        "max_crops": style.MAX_CROPS,
        "lag_min": f"{style.LAG_MIN:g}",
        "lag_max": f"{style.LAG_MAX:g}",
        "bins_per_octave": style.BINS_PER_OCTAVE,
        "absolute_layer": (
            f" A {absolute}-unit dense layer also reads the un-pooled features, where the absolute tempo shows."
            if absolute else ""
        ),
        "parameters": f"{results['parameters']:,}",
        "weights_kib": f"{results['weights_bytes'] / 1024:.0f}",
        "class_rows": rows,
        "opening_bars": OPENING_BARS,
        "val_variants": settings["val_variants"],
        "test_variants": settings["test_variants"],
        "performances": settings["performances"],
        "tempo_ranges": ", ".join(f"{c} {tempo_range(c)[0]:.0f}-{tempo_range(c)[1]:.0f}" for c in CLASSES),
        "train_tempo": train_tempo,
        "n_performances": sum(v["performances"] for v in whole["counts"].values()),
        "n_performance_crops": sum(v["clips"] for v in whole["counts"].values()),
        "n_clips": sum(v["clips"] for v in test["counts"].values()),
        "n_tunes": sum(v["tunes"] for v in test["counts"].values()),
        "performance_balanced_accuracy": f"{whole['performance_balanced_accuracy']:.1%}",
        "performance_accuracy": f"{whole['performance_accuracy']:.1%}",
        "validation_performance_balanced_accuracy": f"{val_whole['performance_balanced_accuracy']:.1%}",
        "clip_balanced_accuracy": f"{test['balanced_accuracy']:.1%}",
        "clip_accuracy": f"{test['accuracy']:.1%}",
        "validation_clip_balanced_accuracy": f"{val['balanced_accuracy']:.1%}",
        "tune_balanced_accuracy": f"{test['tune_balanced_accuracy']:.1%}",
        "validation_tune_balanced_accuracy": f"{val['tune_balanced_accuracy']:.1%}",
        "performance_confusion": format_confusion(whole["performance_confusion_matrix"]),
        "clip_confusion": format_confusion(test["confusion_matrix"]),
        "tempo_check": _tempo_check(results, low, high),
        "test_slip_jigs": counts["test"]["slip jig"],
        "slip_jig_points": f"{25 / counts['test']['slip jig']:.0f}",
        "validation_tunes": sum(counts["validation"].values()),
        "validation_slip_jigs": counts["validation"]["slip jig"],
        "seed": settings["seed"],
        "clips_per_class": results["train"]["counts"]["reel"]["clips"],
        "epochs": settings["epochs"],
        "weights_kept": kept,
        "rendering": rendering,
        "train_seconds": f"{results['train_seconds']:.0f}",
        "predict_ms": f"{results['predict_seconds_10s_audio'] * 1000:.0f}",
    }
    return Template(TEMPLATE_FILE.read_text(encoding="utf-8")).substitute(fields)


def plot_confusion(matrix: list[list[int]], path: Path, title: str) -> None:
    """Save the confusion matrix (row-normalised colours, counts written in the cells) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(matrix, dtype=float)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.2, 4.4), dpi=110)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(CLASSES)), CLASSES)
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    for i in range(len(CLASSES)):
        for j in range(len(CLASSES)):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
