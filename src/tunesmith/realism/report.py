"""Judge generator arms against real tunes: ``tunesmith eval realism`` (part of ``make eval``).

By default the two shipped generator versions (v1, v2) are the arms: each writes one tune for every
real tune of the test split in the style classifier's rhythms (91 tunes: 48 reels, 23 hornpipes,
16 jigs, 4 slip jigs), with that tune's meter, key and rhythm, 16 bars, seeded. ``--arm NAME=PATH``
names other checkpoints; ``--log FILE`` judges what the gateway's request log recorded for each
arm of an experiment instead.

Why these sizes: the whole test split is the largest fair reference there is (the generators
trained on the rest of the corpus), and one tune per real tune keeps rhythms and keys matched.
Two arms take a couple of minutes on two cores: about 20 s to generate, 45 s to play and classify
273 performances, and a minute of resampling (:data:`tunesmith.realism.judge.RESAMPLES`).

Prints the table (every measure for the real halves, each arm and the A/B difference, with 95 %
intervals, p-values and the tunes per arm a clear answer would need) and a verdict; writes
``report.json`` and the plots into ``build/realism/`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from tunesmith import paths
from tunesmith.realism import judge, listening, samples
from tunesmith.realism.samples import BARS, Sample

OUT = paths.BUILD / "realism"
"""Where ``make eval`` writes the report and the plots (``build/`` is not in git)."""


def default_arms() -> dict[str, Path]:
    """The shipped generator versions, v1 first."""
    from tunesmith.generator.evaluate import VERSIONS

    return {name: path for name, path in VERSIONS.items() if (path / "config.json").exists()}


def evaluate(real: Sample, arms: list[Sample], *, classifier=None, resamples: int = judge.RESAMPLES,
             seed: int = 0, listen: bool = True, novelty: bool = True) -> dict:
    """Listen to every sample, check it for copies, and judge the arms against the real tunes.

    Args:
        real: the reference (:func:`tunesmith.realism.samples.reference`).
        arms: the arms' samples; the first two are A/B tested.
        classifier: a loaded style classifier (default: the shipped one, when ``listen``).
        resamples: bootstrap resamples and permutations.
        seed: random seed of the resampling.
        listen: measure rhythm agreement and the Fréchet distance (plays every tune).
        novelty: check every tune for runs copied from the corpus (builds the corpus index).

    Returns:
        :func:`tunesmith.realism.judge.judge`'s report plus ``seconds`` spent per step.
    """
    seconds = {}
    started = time.perf_counter()
    heard = None
    if listen:
        classifier = classifier or listening.load_classifier()
        heard = {s.name: listening.listen(s, classifier) for s in (real, *arms)}
        seconds["listen"] = time.perf_counter() - started
    copies = None
    if novelty:
        started = time.perf_counter()
        index = judge.corpus_index()
        copies = {s.name: judge.copies_corpus(s.tunes, index) for s in (real, *arms)}
        seconds["novelty"] = time.perf_counter() - started
    started = time.perf_counter()
    report = judge.judge(real, arms, heard, copies, resamples=resamples, seed=seed)
    seconds["statistics"] = time.perf_counter() - started
    report["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    return report


def _cell(estimate: dict, fmt: str) -> str:
    value, low, high = estimate["value"], estimate["low"], estimate["high"]
    if not np.isfinite(value):
        return "-"
    text = format(value, fmt)
    return text if not np.isfinite(low) else f"{text} [{format(low, fmt)}, {format(high, fmt)}]"


def _signed(estimate: dict, fmt: str) -> str:
    value, low, high = estimate["value"], estimate["low"], estimate["high"]
    if not np.isfinite(value):
        return "-"
    text = format(value, "+" + fmt)
    return text if not np.isfinite(low) else f"{text} [{format(low, '+' + fmt)}, {format(high, '+' + fmt)}]"


def format_table(report: dict) -> str:
    """The report as a Markdown table, the verdict and how far each arm is from real tunes."""
    names = list(report["sets"])
    real = report["reference"]
    ab = report.get("ab")
    head = ["measure", "better", f"{real} halves (ceiling)", *names[1:]]
    if ab:
        head += [f"{ab['b']} − {ab['a']}", "p (adjusted)", "closer", "tunes per arm for 80% power"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for k, measure in enumerate(report["measures"]):
        fmt = measure["fmt"]
        cells = [measure["name"], measure["better"]]
        cells += [_cell(report["sets"][n]["values"][k], fmt) for n in names]
        if ab:
            row = ab["rows"][k]
            needed = row["needed_per_arm"]
            cells += [_signed(row["difference"], fmt),
                      "-" if not np.isfinite(row["p_adjusted"]) else f"{row['p_adjusted']:.3f}",
                      row["closer"] or "no clear difference",
                      "-" if not math.isfinite(needed) else f"{needed:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    sizes = ", ".join(f"{n}: {report['sets'][n]['n']} tunes" for n in names)
    rhythms = ", ".join(f"{count} {rhythm}s" for rhythm, count in report.get("rhythms", {}).items())
    lines += ["", f"Sizes: {sizes} ({rhythms}). Intervals: 95%, the figure ± 1.96 bootstrap standard errors "
              f"({report['resamples']} resamples)."]
    lines += ["", distance_from_real(report)]
    if ab:
        lines += ["", "Verdict: " + ab["verdict"]]
    return "\n".join(lines)


def distance_from_real(report: dict) -> str:
    """How far each arm is from the real tunes, in three figures beside the real halves' own."""
    index = {m["name"]: k for k, m in enumerate(report["measures"])}
    overlaps = [k for m, k in index.items() if m.startswith("overlap")]

    def figures(name):
        values = report["sets"][name]["values"]
        parts = [f"mean overlap {np.nanmean([values[k]['value'] for k in overlaps]):.2f}"]
        frechet = values[index["Fréchet distance (classifier embedding)"]]["value"]
        heard = values[index["rhythm heard as asked"]]["value"]
        if np.isfinite(frechet):
            parts.append(f"Fréchet {frechet:.1f}")
        if np.isfinite(heard):
            parts.append(f"rhythm heard as asked {heard:.0%}")
        return ", ".join(parts)

    return "How far from real tunes - " + "; ".join(f"{name}: {figures(name)}" for name in report["sets"]) + "."


def generate_arms(specs: dict[str, Path], real: Sample, seed: int = 0, bars: int = BARS) -> list[Sample]:
    """One seeded sample per checkpoint, asked with the real tunes' headers."""
    return [samples.generated(name, path, real, seed=seed, bars=bars) for name, path in specs.items()]


def jsonable(value):
    """The report with numpy numbers as Python ones and NaN / infinity as ``null`` (strict JSON)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _arm_spec(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--arm takes NAME=CHECKPOINT_FOLDER, got {text!r}")
    return name, Path(path)


def main(argv: list[str] | None = None) -> dict:
    """Command line; ``--quick`` judges 3 tunes of each rhythm with 50 resamples (a smoke test)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", type=_arm_spec, action="append", default=None,
                        help="NAME=CHECKPOINT; repeat for several (default: the shipped v1 and v2)")
    parser.add_argument("--log", type=Path, default=None, help="judge the arms in this request log instead")
    parser.add_argument("--experiment", default=None, help="with --log: only this experiment's requests")
    parser.add_argument("--target", default=None, help="with --log: only requests to this model or pipeline")
    parser.add_argument("--per-rhythm", type=int, default=None, help="at most this many real tunes per rhythm")
    parser.add_argument("--bars", type=int, default=BARS, help="bars per tune")
    parser.add_argument("--resamples", type=int, default=judge.RESAMPLES)
    parser.add_argument("--seed", type=int, default=0, help="first generation seed and the resampling seed")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for report.json and the plots")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--no-listen", action="store_true",
                        help="skip the classifier's measures (Fréchet distance, rhythm heard): no audio is rendered")
    parser.add_argument("--quick", action="store_true", help="3 real tunes per rhythm, 50 resamples")
    args = parser.parse_args(argv)
    if args.quick:
        args.per_rhythm, args.resamples = 3, 50

    import torch

    torch.set_num_threads(1)  # one-token decoding and the classifier's small network are quickest on one thread
    started = time.perf_counter()
    real = samples.reference(args.per_rhythm, args.bars)
    if args.log is not None:
        from tunesmith.gateway.requestlog import RequestLog

        arms = list(samples.arms_in_log(RequestLog(args.log), args.experiment, args.target).values())
        if not arms:
            parser.error(f"{args.log} holds no requests with an arm (experiment {args.experiment!r})")
    else:
        arms = generate_arms(dict(args.arm) if args.arm else default_arms(), real, args.seed, args.bars)
    generated = time.perf_counter() - started
    report = evaluate(real, arms, resamples=args.resamples, seed=args.seed, listen=not args.no_listen)
    report["seconds"] = {"generate": round(generated, 1), **report["seconds"]}
    report["settings"] = {"bars": args.bars, "per_rhythm": args.per_rhythm, "seed": args.seed,
                          "log": str(args.log) if args.log else None, "experiment": args.experiment}
    print("\n## Generated tunes against real tunes (test split)\n")
    print(format_table(report))
    print("\nSeconds: " + ", ".join(f"{k} {v}" for k, v in report["seconds"].items()))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(jsonable(report), indent=1) + "\n")
    written = [args.out / "report.json"]
    if not args.no_plots:
        import matplotlib

        matplotlib.use("Agg")
        from tunesmith.realism import plots

        written += plots.save(report, args.out)
    print("Written: " + ", ".join(str(p) for p in written))
    return report


if __name__ == "__main__":
    main()
