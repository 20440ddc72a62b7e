"""Pictures of a realism report (:func:`tunesmith.realism.judge.judge`): the notebook shows them,
``make eval`` saves them.

* :func:`feature_overlays` - each set's average musical statistics drawn over each other: where the
  generated tunes' lines leave the real tunes' line, they write differently;
* :func:`measure_bars` - every measure per set, with its 95 % interval as a whisker.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from tunesmith.realism.musical import INTERVAL_LIMIT, NOTE_LENGTHS, ONSET_GRID

PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def _styles(names: list[str]) -> dict[str, dict]:
    """The real set in black and thick, each arm in a colour of its own."""
    return {name: ({"color": "black", "linewidth": 2.5} if i == 0 else {"color": f"C{i - 1}", "linewidth": 1.5})
            for i, name in enumerate(names)}


def feature_overlays(report: dict) -> plt.Figure:
    """Average pitch classes, pitch ranges, intervals, note lengths, onsets in the bar and heard rhythms."""
    profiles = report["profiles"]
    names = list(profiles)
    style = _styles(names)
    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    ax = axes[0, 0]
    for name in names:
        ax.plot(range(12), profiles[name]["pitch classes"], marker="o", label=name, **style[name])
    ax.set(title="pitch classes (share of notes)", xticks=range(12))
    ax.set_xticklabels(PITCH_CLASSES)
    ax.legend()
    ax = axes[0, 1]
    values = [profiles[n]["pitch range values"] for n in names]
    bins = np.arange(0, max(max(v) for v in values) + 3, 2)
    for name, v in zip(names, values):
        ax.hist(v, bins=bins, histtype="step", density=True, label=name, **style[name])
    ax.set(title="pitch range per tune", xlabel="semitones")
    ax = axes[0, 2]
    steps = np.arange(-INTERVAL_LIMIT, INTERVAL_LIMIT + 1)
    for name in names:
        ax.plot(steps, profiles[name]["intervals"], marker=".", label=name, **style[name])
    ax.set(title="intervals between notes (share)", xlabel="semitones")
    ax = axes[1, 0]
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ax.bar(np.arange(len(NOTE_LENGTHS)) + i * width, profiles[name]["note lengths"], width, label=name,
               color=style[name]["color"], alpha=0.8)
    ax.set(title="note lengths (share), in eighths", xticks=np.arange(len(NOTE_LENGTHS)) + 0.4)
    ax.set_xticklabels([str(x) for x in NOTE_LENGTHS])
    ax = axes[1, 1]
    grid = np.arange(ONSET_GRID) / ONSET_GRID
    for name in names:
        pattern = np.asarray(profiles[name]["onsets in the bar"])
        used = pattern > 0.02
        ax.plot(grid[used], pattern[used], marker="o", linestyle="none", label=name, color=style[name]["color"],
                markersize=4 + 2 * (name == names[0]))
    ax.set(title="notes starting at each place in the bar", xlabel="fraction of the bar", ylabel="per bar")
    ax = axes[1, 2]
    if "heard" in profiles[names[0]]:
        labels = list(profiles[names[0]]["heard"])
        for i, name in enumerate(names):
            counts = np.array([profiles[name]["heard"][label] for label in labels], dtype=float)
            ax.bar(np.arange(len(labels)) + i * width, counts / max(counts.sum(), 1), width, label=name,
                   color=style[name]["color"], alpha=0.8)
        asked = np.array([profiles[names[0]]["asked"][label] for label in labels], dtype=float)
        ax.scatter(np.arange(len(labels)) + 0.4, asked / asked.sum(), marker="_", s=600, color="grey",
                   label="asked for", zorder=3)
        ax.set(title="what the classifier hears (share)", xticks=np.arange(len(labels)) + 0.4)
        ax.set_xticklabels(labels)
        ax.legend(fontsize=8)
    else:
        ax.axis("off")
    fig.suptitle("Real tunes (black) and generated tunes: average musical statistics")
    fig.tight_layout()
    return fig


def measure_bars(report: dict) -> plt.Figure:
    """Every measure per set with its interval; the real halves are the ceiling to reach."""
    names = list(report["sets"])
    style = _styles(names)
    groups = {}
    for k, measure in enumerate(report["measures"]):
        groups.setdefault(measure["group"], []).append((k, measure))
    titles = {"overlap": "overlapping area (higher is closer to real)", "kl": "KL divergence (lower is closer)",
              "frechet": "Fréchet distance, classifier embedding (lower)", "rhythm": "rhythm heard as asked (higher)",
              "novelty": "share copying a 48-note run (lower)"}
    layout = [["overlap", "overlap", "kl", "kl"], ["frechet", "rhythm", "novelty", "novelty"]]
    fig, axes = plt.subplot_mosaic(layout, figsize=(13, 7.5))
    for group, ax in axes.items():
        if group not in groups:
            ax.axis("off")
    for group, members in groups.items():
        ax = axes[group]
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            values = [report["sets"][name]["values"][k] for k, _ in members]
            centre = np.array([v["value"] for v in values])
            low = np.array([v["low"] if np.isfinite(v["low"]) else v["value"] for v in values])
            high = np.array([v["high"] if np.isfinite(v["high"]) else v["value"] for v in values])
            errors = np.vstack([np.clip(centre - low, 0, None), np.clip(high - centre, 0, None)])
            label = f"{name} halves (ceiling)" if i == 0 else name
            ax.bar(np.arange(len(members)) + i * width, centre, width, yerr=errors, capsize=3, label=label,
                   color=style[name]["color"], alpha=0.85 if i else 0.6)
        short = [m["name"].split(": ", 1)[-1].split(" (")[0] for _, m in members]
        ax.set_xticks(np.arange(len(members)) + 0.4 - width / 2)
        ax.set_xticklabels(short, rotation=30 if len(members) > 1 else 0, ha="right" if len(members) > 1 else "center",
                           fontsize=8)
        ax.set_title(titles.get(group, group), fontsize=9)
    axes["overlap"].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def save(report: dict, folder: Path) -> list[Path]:
    """Write both figures as PNG files into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in (("features.png", feature_overlays), ("measures.png", measure_bars)):
        fig = draw(report)
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        written.append(folder / name)
    return written
