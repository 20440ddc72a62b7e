"""Evaluate tune checkpoints: ``python -m tunesmith.generator.evaluate`` (``make eval``).

Without ``--checkpoint`` every shipped generator is evaluated (``tune-generator`` v1 and, when
present, ``tune-generator-v2``) and a side-by-side table follows; ``--checkpoint PATH`` (repeatable)
chooses others.

Generates seeded tunes over a grid of tune types and keys with bar-aware decoding (with and
without the key prior) and with plain sampling, scores them with :mod:`tunesmith.generator.quality`, scores a sample of real tunes from
the held-out test split as a reference row, prints a table and writes ``eval.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from tunesmith.music.abc import Header
from tunesmith.music.corpus import ensure_splits, read_split
from tunesmith.generator.model import TuneGenerator
from tunesmith.generator.quality import (
    RunIndex,
    bar_checks_of,
    estimated_key,
    key_correlation,
    parse_score,
    pitch_histogram,
)
from tunesmith.music.abc import read_tune
from tunesmith.music.keys import tonic_and_mode
from tunesmith import paths
from tunesmith.generator.train import DEFAULT_OUT

VERSIONS = {"v1": DEFAULT_OUT, "v2": paths.CHECKPOINTS / "tune-generator-v2"}

RHYTHMS = [
    ("reel", "4/4"), ("jig", "6/8"), ("slip jig", "9/8"), ("hornpipe", "4/4"),
    ("waltz", "3/4"), ("polka", "2/4"), ("march", "2/4"), ("strathspey", "4/4"),
]
KEYS = ["D", "G", "A", "Em", "Am", "Bm"]
TARGETS = {"parse": 0.99, "bars_ok": 0.97, "tunes_all_bars_ok": 0.75, "key_corr": 0.80, "memorised": 0.10}


def eval_headers(n: int = 48) -> list[Header]:
    """``n`` headers cycling through every tune type in every key (48 = 8 types x 6 keys)."""
    grid = [Header(meter=m, key=k, rhythm=r) for k in KEYS for r, m in RHYTHMS]
    return [grid[i % len(grid)] for i in range(n)]


def score(tunes: list[str], headers: list[Header], index: RunIndex | None) -> dict:
    """Aggregate metrics over tunes; ``headers`` are what was requested."""
    parsed = bars = bars_ok = all_ok = meter_ok = key_hit = memorised = 0
    correlations = []
    for abc, header in zip(tunes, headers):
        score_ = parse_score(abc)
        checks = bar_checks_of(abc, header.meter)
        bars += len(checks)
        bars_ok += sum(checks)
        all_ok += bool(checks) and all(checks)
        meter_ok += bool(checks) and sum(checks) >= 0.9 * len(checks)
        if score_ is not None:
            parsed += 1
            hist = pitch_histogram(score_)
            correlations.append(key_correlation(hist, header.key))
            key_hit += estimated_key(hist) == tonic_and_mode(header.key)
        else:
            correlations.append(0.0)
        if index is not None:
            memorised += abc in index
    n = max(len(tunes), 1)
    return {
        "tunes": len(tunes),
        "parse": parsed / n,
        "bars_ok": bars_ok / max(bars, 1),
        "tunes_all_bars_ok": all_ok / n,
        "key_corr": statistics.fmean(correlations) if correlations else 0.0,
        "key_followed": key_hit / n,
        "meter_followed": meter_ok / n,
        "memorised": memorised / n if index is not None else None,
    }


def timed_generate(gen: TuneGenerator, headers, seeds, **kwargs) -> tuple[list[str], float]:
    """Generate in batches of 16; returns tunes and seconds per tune."""
    tunes: list[str] = []
    start = time.perf_counter()
    for i in range(0, len(headers), 16):
        tunes += gen.generate(headers[i:i + 16], seeds[i:i + 16], **kwargs)
    return tunes, (time.perf_counter() - start) / max(len(headers), 1)


def run(checkpoint: Path = DEFAULT_OUT, n: int = 48, bars: int = 16, temperature: float = 1.0,
        real: int = 100, threads: int = 1, memorisation: bool = True) -> dict:
    """Generate and score; see the module docstring.

    Args:
        checkpoint: the checkpoint folder.
        n: generated tunes per decoding mode.
        bars: bars per generated tune.
        temperature: sampling temperature.
        real: real test-split tunes for the reference row.
        threads: torch threads.
        memorisation: build the training-run index (a few seconds) and check for copies.

    Returns:
        ``{"rows": {name: metrics}, "timing": {...}, "settings": {...}}``.
    """
    torch.set_num_threads(threads)
    ensure_splits()
    gen = TuneGenerator.from_pretrained(checkpoint)
    headers = [h for h in eval_headers(n)]
    headers = [Header(meter=h.meter if h.meter in gen.meters else "4/4", key=h.key if h.key in gen.keys else "D",
                      rhythm=h.rhythm) for h in headers]
    seeds = list(range(n))
    train_index = RunIndex(read_split("train")) if memorisation else None
    # generated tunes are checked against the whole corpus, real test tunes against training
    index = RunIndex(read_split("train") + read_split("validation") + read_split("test")) if memorisation else None

    rows = {}
    samples = {}
    constrained, per_tune = timed_generate(gen, headers, seeds, temperature=temperature, bars=bars)
    rows["generated (bar-aware)"] = score(constrained, headers, index)
    by_request = {}
    for label, pick in [("key " + k, lambda h, k=k: h.key == k) for k in KEYS] + [
            ("rhythm " + r, lambda h, r=r: h.rhythm == r) for r, _ in RHYTHMS]:
        chosen = [(t, h) for t, h in zip(constrained, headers) if pick(h)]
        if chosen:
            by_request[label] = score([t for t, _ in chosen], [h for _, h in chosen], None)
    samples["generated (bar-aware)"] = constrained[:3]
    weight, gen.key_weight = gen.key_weight, 0.0
    no_prior, _ = timed_generate(gen, headers, seeds, temperature=temperature, bars=bars)
    gen.key_weight = weight
    rows["generated (bar-aware, no key prior)"] = score(no_prior, headers, index)
    plain, _ = timed_generate(gen, headers, seeds, temperature=temperature, bars=bars, constrained=False)
    rows["generated (plain sampling)"] = score(plain, headers, index)
    samples["generated (plain sampling)"] = plain[:3]

    test = read_split("test")
    step = max(1, len(test) // max(real, 1))
    reference = test[::step][:real]
    ref_headers = [read_tune(t)[0] for t in reference]
    rows["real tunes (test split)"] = score(reference, ref_headers, train_index)

    start = time.perf_counter()
    gen.generate(headers[:1], [0], temperature=temperature, bars=bars)
    single = time.perf_counter() - start
    timing = {"seconds_per_tune_batch_16": round(per_tune, 4), "seconds_single_tune": round(single, 4)}
    settings = {"checkpoint": _repository_path(checkpoint), "tunes": n, "bars": bars, "temperature": temperature,
                "threads": threads, "rhythms": RHYTHMS, "keys": KEYS}
    return {"rows": rows, "by_request": by_request, "timing": timing, "settings": settings, "targets": TARGETS,
            "samples": samples}


def format_table(result: dict) -> str:
    """The results as a Markdown table (the model card includes it verbatim)."""
    cols = [("parse", "parse"), ("bars_ok", "bars ok"), ("tunes_all_bars_ok", "tunes all bars ok"),
            ("key_corr", "key corr"), ("key_followed", "key followed"), ("meter_followed", "meter followed"),
            ("memorised", "shares 48-run")]
    lines = ["| | n | " + " | ".join(c[1] for c in cols) + " |", "|---|---:|" + "---:|" * len(cols)]
    for name, row in result["rows"].items():
        cells = []
        for key, _ in cols:
            value = row[key]
            cells.append("-" if value is None else f"{value:.2f}" if key == "key_corr" else f"{100 * value:.0f}%")
        lines.append(f"| {name} | {row['tunes']} | " + " | ".join(cells) + " |")
    lines.append(
        "| target (bar-aware) | 48 | ≥99% | ≥97% | ≥75% | ≥0.80 | (reported) | (reported) | ≤10% |"
    )
    t = result["timing"]
    lines.append("")
    lines.append(f"Generation: {t['seconds_single_tune']:.2f} s for one tune, "
                 f"{t['seconds_per_tune_batch_16']:.2f} s per tune in batches of 16 "
                 f"({result['settings']['bars']} bars, {result['settings']['threads']} threads).")
    return "\n".join(lines)


def _repository_path(path: Path) -> str:
    """``path`` relative to the repository when it is inside it, so that a committed eval.json names no machine."""
    try:
        return str(Path(path).resolve().relative_to(paths.REPO))
    except ValueError:
        return str(path)


def shipped_checkpoints() -> list[Path]:
    """The generator versions that exist in ``checkpoints/``, v1 first."""
    return [path for path in VERSIONS.values() if (path / "config.json").exists()]


def format_comparison(results: dict[str, dict]) -> str:
    """One row per checkpoint: its bar-aware scores and its real-tune reference, side by side."""
    lines = ["| checkpoint | parse | bars ok | tunes all bars ok | key corr | key followed | shares 48-run | s/tune (batch 16) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, result in results.items():
        row = result["rows"]["generated (bar-aware)"]
        memorised = "-" if row["memorised"] is None else f"{100 * row['memorised']:.0f}%"
        lines.append(
            f"| {name} | {100 * row['parse']:.0f}% | {100 * row['bars_ok']:.0f}% | {100 * row['tunes_all_bars_ok']:.0f}% | "
            f"{row['key_corr']:.2f} | {100 * row['key_followed']:.0f}% | {memorised} | "
            f"{result['timing']['seconds_per_tune_batch_16']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line; ``--quick`` scores 4 short tunes without the memorisation index."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, action="append", default=None,
                        help="checkpoint folder; repeat to compare several (default: every shipped version)")
    parser.add_argument("--tunes", type=int, default=48)
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; one-token decoding steps are fastest on one thread")
    parser.add_argument("--out", type=Path, default=None,
                        help="eval JSON for a single checkpoint (default: <checkpoint>/eval.json)")
    parser.add_argument("--quick", action="store_true", help="4 tunes of 8 bars, 4 real tunes, no copy check")
    args = parser.parse_args(argv)
    checkpoints = args.checkpoint or shipped_checkpoints()
    if args.out is not None and len(checkpoints) != 1:
        parser.error("--out needs exactly one --checkpoint")
    results = {}
    for checkpoint in checkpoints:
        if args.quick:
            result = run(checkpoint, n=4, bars=8, temperature=args.temperature, real=4, threads=args.threads,
                         memorisation=False)
        else:
            result = run(checkpoint, n=args.tunes, bars=args.bars, temperature=args.temperature,
                         threads=args.threads)
        table = format_table(result)
        print(f"\n## {checkpoint.name}\n")
        print(table)
        out = args.out or (None if args.quick else checkpoint / "eval.json")
        if out is not None:
            result["table"] = table
            Path(out).write_text(json.dumps(result, indent=1) + "\n")
        results[checkpoint.name] = result
    if len(results) > 1:
        print("\n## side by side (bar-aware decoding)\n")
        print(format_comparison(results))

if __name__ == "__main__":
    main()
