"""Where a generated tune's time goes: the fast decode loop against the transformers loop (``make bench``).

Both loops of :class:`~tunesmith.generator.model.TuneGenerator` (see :mod:`tunesmith.generator.model`)
generate the same seeded tunes in one process, one torch thread (as the runtime serves them), at
batch 1 and batch 16, and the table gives:

* seconds per tune (wall and CPU), and the fast loop's speed-up over the transformers loop in the
  same run (the loops take turns, so load from other programs falls on both);
* the share of decode time spent in the model's matrix products: the linear layers (projections,
  MLP, output layer) and, beside it, attention (``scaled_dot_product_attention``: the query-key
  and weight-value products with their softmax). They are timed by wrapping the two torch
  functions every layer calls, in a separate run, so the per-tune times carry no timing overhead;
* whether both loops wrote the same tunes (they should: the fast loop reproduces the reference
  bit for bit).

Goals on 2 cores: the fast loop at least 3x faster per tune at batch 1, and at least half of its
decode time in the linear layers' matrix products. The numbers are printed; nothing here asserts
on time.

    python -m tunesmith.workshop.bench_decode --tunes 8
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

from tunesmith import paths
from tunesmith.generator.model import LOOPS, TuneGenerator
from tunesmith.generator.prompt import parse_prompt

PROMPT = "a lively reel in D major"
BATCHES = (1, 16)


@contextmanager
def timed_products(seconds: dict[str, float]):
    """While active, time spent inside ``F.linear`` and ``F.scaled_dot_product_attention`` adds up in
    ``seconds["linear"]`` and ``seconds["attention"]`` (both loops, and ``torch.nn.Linear``, call them
    through ``torch.nn.functional`` at call time)."""
    originals = {"linear": F.linear, "attention": F.scaled_dot_product_attention}

    def wrap(name, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[name] += time.perf_counter() - start
        return timed

    seconds.setdefault("linear", 0.0)
    seconds.setdefault("attention", 0.0)
    F.linear = wrap("linear", originals["linear"])
    F.scaled_dot_product_attention = wrap("attention", originals["attention"])
    try:
        yield seconds
    finally:
        F.linear = originals["linear"]
        F.scaled_dot_product_attention = originals["attention"]


def _run(generator: TuneGenerator, batch: int, seeds: range, bars: int) -> tuple[list[str], float, float]:
    """The tunes of ``seeds`` in batches of ``batch``; the tunes, wall seconds and CPU seconds taken."""
    header = parse_prompt(PROMPT)
    seeds = list(seeds)
    out: list[str] = []
    wall, cpu = time.perf_counter(), time.thread_time()
    for first in range(0, len(seeds), batch):
        chunk = seeds[first:first + batch]
        out += generator.generate([header] * len(chunk), chunk, bars=bars)
    return out, time.perf_counter() - wall, time.thread_time() - cpu


def measure(checkpoint: Path, tunes: dict[int, int], bars: int = 16, threads: int = 1, rounds: int = 2) -> list[dict]:
    """Per tune time and matrix-product shares of each loop at each batch size.

    The loops take turns (``rounds`` times each, a share of the tunes per turn), so a burst of load
    from another program falls on both. CPU time (this thread's) is given beside wall time: it moves
    less when other programs share the cores.

    Args:
        checkpoint: the generator checkpoint.
        tunes: batch size -> how many tunes to time at that batch size (a multiple of it).
        bars: bars per tune.
        threads: torch threads, as the runtime sets them.
        rounds: turns per loop.

    Returns:
        One dict per (batch, loop): ``batch``, ``loop``, ``tunes``, ``seconds_per_tune``,
        ``cpu_seconds_per_tune``, ``linear_share``, ``attention_share``, ``same_as_reference`` (the
        loop's tunes equal the transformers loop's).
    """
    torch.set_num_threads(threads)
    generator = TuneGenerator.from_pretrained(checkpoint)
    header = parse_prompt(PROMPT)
    rows = []
    for batch, count in tunes.items():
        per_turn = max(batch, count // rounds // batch * batch)
        turns = [range(first, min(first + per_turn, count)) for first in range(0, count, per_turn)]
        written = {loop: [] for loop in LOOPS}
        wall = dict.fromkeys(LOOPS, 0.0)
        cpu = dict.fromkeys(LOOPS, 0.0)
        for loop in LOOPS:
            generator.loop = loop
            generator.generate([header] * batch, list(range(10_000, 10_000 + batch)), bars=bars)  # warm-up
        for seeds in turns:
            for loop in reversed(LOOPS):  # the reference first
                generator.loop = loop
                tunes_, w, c = _run(generator, batch, seeds, bars)
                written[loop] += tunes_
                wall[loop] += w
                cpu[loop] += c
        for loop in reversed(LOOPS):
            generator.loop = loop
            seconds: dict[str, float] = {}
            with timed_products(seconds):
                _, profiled, _ = _run(generator, batch, range(count), bars)
            rows.append({
                "batch": batch, "loop": loop, "tunes": count, "seconds_per_tune": wall[loop] / count,
                "cpu_seconds_per_tune": cpu[loop] / count,
                "linear_share": seconds["linear"] / profiled, "attention_share": seconds["attention"] / profiled,
                "same_as_reference": written[loop] == written[LOOPS[-1]],
            })
    generator.loop = LOOPS[0]
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown: one row per (batch, loop), with the speed-up over the transformers loop at that batch."""
    reference = {r["batch"]: r for r in rows if r["loop"] == "transformers"}
    lines = ["| batch | loop | tunes | s/tune | speed-up | CPU s/tune | CPU speed-up | linear layers | attention | same tunes |",
             "|------:|------|------:|-------:|---------:|-----------:|-------------:|--------------:|----------:|:----------:|"]
    for r in rows:
        base = reference[r["batch"]]
        lines.append(
            f"| {r['batch']:>5} | {r['loop']:<12} | {r['tunes']:>5} | {r['seconds_per_tune']:6.3f} | "
            f"{base['seconds_per_tune'] / r['seconds_per_tune']:7.2f}x | {r['cpu_seconds_per_tune']:10.3f} | "
            f"{base['cpu_seconds_per_tune'] / r['cpu_seconds_per_tune']:11.2f}x | "
            f"{100 * r['linear_share']:12.0f}% | {100 * r['attention_share']:8.0f}% | "
            f"{'yes' if r['same_as_reference'] else 'NO':^10} |"
        )
    return "\n".join(lines)


def decode_table(model_dir: Path | None = None, bars: int = 16, tunes_at_1: int = 8, tunes_at_16: int = 32) -> list[dict]:
    """Measure and print the decode-efficiency table and its goals (what ``make bench`` shows).

    Args:
        model_dir: a tune-generator model folder (its ``weights`` are the checkpoint); default the
            shipped checkpoint.
        bars: bars per tune.
        tunes_at_1: tunes timed one at a time.
        tunes_at_16: tunes timed in batches of 16.

    Returns:
        The rows of :func:`measure`.
    """
    checkpoint = paths.CHECKPOINTS / "tune-generator"
    if model_dir is not None and (Path(model_dir) / "weights" / "config.json").exists():
        checkpoint = Path(model_dir) / "weights"
    rows = measure(checkpoint, {1: tunes_at_1, 16: max(16, tunes_at_16 // 16 * 16)}, bars=bars)
    print(f"\nDecoding, {bars}-bar tunes ({PROMPT!r}), one torch thread: the fast loop against the transformers "
          "loop, same seeds, taking turns; matrix-product shares from a second, timed run\n")
    print(format_table(rows))
    by = {(r["batch"], r["loop"]): r for r in rows}
    speedup = by[(1, "transformers")]["seconds_per_tune"] / by[(1, "fast")]["seconds_per_tune"]
    share = by[(1, "fast")]["linear_share"]
    print(f"\nGoal: fast loop >= 3x faster per tune at batch 1 -> {speedup:.2f}x: {'met' if speedup >= 3 else 'NOT met'}")
    print(f"Goal: >= 50% of the fast loop's decode time in the linear layers at batch 1 -> {100 * share:.0f}%: "
          f"{'met' if share >= 0.5 else 'NOT met'} (batch 16: {100 * by[(16, 'fast')]['linear_share']:.0f}%)")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=16, help="tune length in bars")
    parser.add_argument("--tunes", type=int, default=8, help="tunes timed at batch 1 (batch 16 times 4x as many)")
    parser.add_argument("--model-dir", type=Path, help="a tune-generator model folder (default: the shipped checkpoint)")
    args = parser.parse_args(argv)
    decode_table(args.model_dir, bars=args.bars, tunes_at_1=args.tunes, tunes_at_16=4 * args.tunes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
