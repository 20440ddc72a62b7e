"""Where a generated tune's time goes: the fast decode loop against the transformers loop (``make bench``).

Both loops of :class:`~tunesmith.generator.model.TuneGenerator` (see :mod:`tunesmith.generator.model`)
generate the same seeded tunes in one process, one torch thread (as the runtime serves them), at
batch 1 and batch 16, and the table gives:

* seconds per tune (wall and CPU), and the fast loop's speed-up over the transformers loop in the
  same run (the loops take turns, so load from other programs falls on both);
* the share of decode time spent in the model's matrix products: the linear layers (projections,
  MLP, output layer; ``aten::mm`` / ``aten::addmm``) and, beside it, attention
  (``scaled_dot_product_attention``: the query-key and weight-value products with their
  softmax). The fast loop runs them inside a TorchScript function, where no Python wrapper can
  time them, so both loops are measured alike: a second run of the first tunes (8 at batch 1, one
  batch at 16) under ``torch.profiler`` gives the time spent inside those ops, which is divided by
  the loop's decode time in the timed (unprofiled) turns of the same tunes. The profiler's own cost for each recorded product (about
  a microsecond, against 10-40 per product at batch 1) counts in the numerator, so the shares
  read a few points high; the profiler's cost for every other op falls outside them;
* whether both loops wrote the same tunes (they should: the fast loop reproduces the reference
  bit for bit).

Goals on 2 cores: the fast loop at least 3x faster per tune at batch 1, and at least half of its
decode time in the linear layers' matrix products. The numbers are printed; nothing here asserts
on time.

    python -m tunesmith.workshop.bench_decode --tunes 16
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from tunesmith import paths
from tunesmith.generator.model import LOOPS, TuneGenerator
from tunesmith.generator.prompt import parse_prompt

PROMPT = "a lively reel in D major"
BATCHES = (1, 16)


PRODUCTS = {"linear": ("aten::mm", "aten::addmm"), "attention": ("aten::scaled_dot_product_attention",)}


def product_seconds(generator: TuneGenerator, batch: int, seeds: range, bars: int) -> dict[str, float]:
    """Seconds spent inside the linear layers' products and inside attention, in a profiled run of ``seeds``.

    Linear products are counted by their own (self) time, attention by its whole call (its
    products and softmax); ``calls`` is the number of linear products.
    """
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        _run(generator, batch, seeds, bars)
    events = {event.key: event for event in profile.key_averages()}
    found = {"calls": sum(events[name].count for name in PRODUCTS["linear"] if name in events)}
    found["linear"] = sum(events[name].self_cpu_time_total for name in PRODUCTS["linear"] if name in events) / 1e6
    found["attention"] = sum(events[name].cpu_time_total for name in PRODUCTS["attention"] if name in events) / 1e6
    return found


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


def measure(checkpoint: Path, tunes: dict[int, int], bars: int = 16, threads: int = 1, profiled: int = 8) -> list[dict]:
    """Per tune time and matrix-product shares of each loop at each batch size.

    The loops take turns, one batch each, so a burst of load from another program falls on both.
    Every timed run comes first; the profiled runs of the first tunes follow, once nothing is left
    to time, because a profiler session slows the transformers loop's later runs by about a tenth
    (more Python objects to collect), which would flatter the speed-up. A share divides a profiled
    run's time in the products by the timed run of the same tunes. CPU time (this thread's) is
    given beside wall time: it moves less when other programs share the cores.

    Args:
        checkpoint: the generator checkpoint.
        tunes: batch size -> how many tunes to time at that batch size (a multiple of it).
        bars: bars per tune.
        threads: torch threads, as the runtime sets them.
        profiled: how many tunes per batch size are also run under the profiler, for the shares
            (a profiled run of the transformers loop takes seconds to tally).

    Returns:
        One dict per (batch, loop): ``batch``, ``loop``, ``tunes``, ``seconds_per_tune``,
        ``cpu_seconds_per_tune``, ``products`` (linear-layer products per tune), ``linear_share``
        and ``attention_share`` (of the decode time), ``same_as_reference`` (the loop's tunes equal the
        transformers loop's).
    """
    torch.set_num_threads(threads)
    generator = TuneGenerator.from_pretrained(checkpoint)
    header = parse_prompt(PROMPT)
    totals = {(batch, loop): dict.fromkeys(("wall", "cpu", "calls", "linear", "attention", "profiled_wall",
                                            "profiled_tunes"), 0.0)
              for batch in tunes for loop in LOOPS}
    written: dict[tuple[int, str], list[str]] = {key: [] for key in totals}
    walls: dict[tuple[int, str, int], float] = {}  # (batch, loop, first seed) -> the timed run's seconds
    for batch, count in tunes.items():
        for loop in LOOPS:
            generator.loop = loop
            generator.generate([header] * batch, list(range(10_000, 10_000 + batch)), bars=bars)  # warm-up
        for first in range(0, count, batch):
            for loop in reversed(LOOPS):  # the reference first
                generator.loop = loop
                tunes_, wall, cpu = _run(generator, batch, range(first, first + batch), bars)
                written[batch, loop] += tunes_
                totals[batch, loop]["wall"] += wall
                totals[batch, loop]["cpu"] += cpu
                walls[batch, loop, first] = wall
    for batch, count in tunes.items():  # the profiled runs, after every timed one
        for first in range(0, min(count, max(profiled, batch)), batch):
            for loop in reversed(LOOPS):
                generator.loop = loop
                total = totals[batch, loop]
                total["profiled_wall"] += walls[batch, loop, first]
                total["profiled_tunes"] += batch
                for name, seconds in product_seconds(generator, batch, range(first, first + batch), bars).items():
                    total[name] += seconds
    rows = []
    for batch, count in tunes.items():
        for loop in reversed(LOOPS):
            total = totals[batch, loop]
            rows.append({
                "batch": batch, "loop": loop, "tunes": count, "seconds_per_tune": total["wall"] / count,
                "cpu_seconds_per_tune": total["cpu"] / count,
                "products": total["calls"] / total["profiled_tunes"],
                "linear_share": total["linear"] / total["profiled_wall"],
                "attention_share": total["attention"] / total["profiled_wall"],
                "same_as_reference": written[batch, loop] == written[batch, LOOPS[-1]],
            })
    generator.loop = LOOPS[0]
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown: one row per (batch, loop), with the speed-up over the transformers loop at that batch."""
    reference = {r["batch"]: r for r in rows if r["loop"] == "transformers"}
    lines = ["| batch | loop | tunes | s/tune | speed-up | CPU s/tune | CPU speed-up | products/tune | linear layers | attention | same tunes |",
             "|------:|------|------:|-------:|---------:|-----------:|-------------:|--------------:|--------------:|----------:|:----------:|"]
    for r in rows:
        base = reference[r["batch"]]
        lines.append(
            f"| {r['batch']:>5} | {r['loop']:<12} | {r['tunes']:>5} | {r['seconds_per_tune']:6.3f} | "
            f"{base['seconds_per_tune'] / r['seconds_per_tune']:7.2f}x | {r['cpu_seconds_per_tune']:10.3f} | "
            f"{base['cpu_seconds_per_tune'] / r['cpu_seconds_per_tune']:11.2f}x | "
            f"{r['products']:13.0f} | {100 * r['linear_share']:12.0f}% | {100 * r['attention_share']:8.0f}% | "
            f"{'yes' if r['same_as_reference'] else 'NO':^10} |"
        )
    return "\n".join(lines)


def decode_table(model_dir: Path | None = None, bars: int = 16, tunes_at_1: int = 16, tunes_at_16: int = 32) -> list[dict]:
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
          "loop, same seeds, taking turns; shares of decode time inside the linear layers' products and attention, "
          "from profiled runs of the first 8 tunes (the first batch of 16), made after every timed run\n")
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
    parser.add_argument("--tunes", type=int, default=16, help="tunes timed at batch 1 (batch 16 times twice as many)")
    parser.add_argument("--model-dir", type=Path, help="a tune-generator model folder (default: the shipped checkpoint)")
    args = parser.parse_args(argv)
    decode_table(args.model_dir, bars=args.bars, tunes_at_1=args.tunes, tunes_at_16=2 * args.tunes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
