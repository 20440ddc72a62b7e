"""Train the rhythm classifier of :mod:`tunesmith.style.model` on synthesized audio.

``python -m tunesmith.style.train`` renders labelled tunes of the corpus splits as varied
performances (:mod:`tunesmith.style.data`), trains the model on the **train** split, watches the
**validation** split and reports on the **test** split with :mod:`tunesmith.style.evaluate`. It
writes the checkpoint folder: weights, config, ``eval.json``, ``confusion_matrix.png`` and the
model card ``README.md`` (the last two from :mod:`tunesmith.style.card`).

**Training tempos.** Each rhythm's usual tempo range overlaps the others (a fast hornpipe is
quicker than a slow reel), but overlap alone does not keep speed out of the model: trained on such
tempos only, it called most slow reels and jigs hornpipes (test balanced accuracy fell from about
84 % to 67 % when every class was played in one shared range). So by default
(``--train-tempo mixed``) every other training clip takes its tempo from the *shared* range, the
union of all the classes' ranges, where speed says nothing about the class; this costs little at
the usual tempos and makes the model hold up at unusual ones. The test split is evaluated both at
the usual tempos and in the shared range, to show how much the classifier leans on speed.

**Weights kept.** By default the model is the average of the weights of the later epochs
(``--average-from``) rather than the epoch best on validation; see :func:`train`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from tunesmith.style import model as style
from tunesmith.style.card import model_card, plot_confusion
from tunesmith.style.data import (
    CACHE_DIR,
    CLASSES,
    TEMPO_SPREAD,
    Dataset,
    FeatureCache,
    RenderPlan,
    labelled_tunes,
    split_dataset,
)
from tunesmith.style.evaluate import (
    CHECKPOINT,
    balanced_accuracy,
    confusion,
    evaluate,
    format_confusion,
    predict_latency,
)
from tunesmith.music.abc import DANCE_BARS_PER_MINUTE
from tunesmith.music.corpus import ABC_DIR


def train(
    train_set: Dataset,
    val_set: Dataset,
    *,
    seed: int,
    epochs: int,
    patience: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    absolute: int = 0,
    average_from: int = 0,
    log=print,
) -> tuple["style.StyleClassifier", dict]:
    """Train a :class:`tunesmith.style.model.StyleNet`, keeping the weights best on validation.

    Args:
        train_set: training clips.
        val_set: validation clips (balanced accuracy picks the epoch; loss breaks ties).
        seed: torch seed.
        epochs: at most this many passes.
        patience: stop after this many epochs without a better validation score.
        batch_size: clips per step.
        lr: AdamW learning rate (cosine-decayed to zero over ``epochs``).
        absolute: see :attr:`tunesmith.style.model.StyleConfig.absolute`.
        average_from: if positive, the model is the average of the weights at the end of every
            epoch from this one on (stochastic weight averaging, with batch-norm statistics
            recomputed on the training clips) instead of the single epoch best on validation.
            The best epoch on a few hundred validation clips is a noisy pick, and models picked
            that way differed from seed to seed on plain tunes; the average is steadier and leaves
            validation a measurement rather than a selection.
        log: progress printer.

    Returns:
        The classifier and the training history.
    """
    import torch

    torch.manual_seed(seed)
    stats_mean = train_set.stats.mean(axis=0)
    stats_std = train_set.stats.std(axis=0) + 1e-6
    config = style.StyleConfig(
        labels=list(CLASSES), absolute=absolute, stats_mean=stats_mean.tolist(), stats_std=stats_std.tolist()
    )
    net = style.StyleNet(config)
    optimiser = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-3)
    steps_per_epoch = math.ceil(len(train_set.labels) / batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, epochs * steps_per_epoch))
    x, s, y = (torch.from_numpy(a) for a in (train_set.lags, train_set.stats, train_set.labels))
    vx, vs, vy = (torch.from_numpy(a) for a in (val_set.lags, val_set.stats, val_set.labels))
    generator = torch.Generator().manual_seed(seed)
    averaged = torch.optim.swa_utils.AveragedModel(net) if average_from > 0 else None
    best = (-1.0, float("inf"))
    best_state, best_epoch, history = None, 0, []
    for epoch in range(1, epochs + 1):
        net.train()
        order = torch.randperm(len(y), generator=generator)
        total = 0.0
        for i in range(0, len(y), batch_size):
            idx = order[i : i + batch_size]
            if len(idx) < 2:  # batch norm needs two clips
                continue
            loss = torch.nn.functional.cross_entropy(net(x[idx], s[idx]), y[idx], label_smoothing=0.05)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            scheduler.step()
            total += loss.item() * len(idx)
        if averaged is not None and epoch >= average_from:
            averaged.update_parameters(net)
        net.eval()
        with torch.no_grad():
            logits = net(vx, vs)
            val_loss = float(torch.nn.functional.cross_entropy(logits, vy))
            val_bacc = balanced_accuracy(confusion(val_set.labels, logits.argmax(-1).numpy()))
        history.append(
            {"epoch": epoch, "train_loss": total / len(y), "val_loss": val_loss, "val_balanced_accuracy": val_bacc}
        )
        if (val_bacc, -val_loss) > (best[0], -best[1]):
            best, best_epoch = (val_bacc, val_loss), epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if epoch % 10 == 0 or epoch == 1:
            log(
                f"  epoch {epoch:3d}  train loss {total / len(y):.3f}  val loss {val_loss:.3f}  "
                f"val bal. acc {val_bacc:.3f}"
            )
        if averaged is None and epoch - best_epoch >= patience:
            break
    if averaged is not None and averaged.n_averaged.item() > 0:
        net.load_state_dict(averaged.module.state_dict())
        _recompute_batch_norm(net, x, s)
    elif best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    record = {
        "best_epoch": best_epoch,
        "averaged_epochs": [average_from, len(history)] if averaged is not None else None,
        "epochs_run": len(history),
        "best_val_balanced_accuracy": best[0],
        "best_val_loss": best[1],
        "history": history,
    }
    return style.StyleClassifier(config, net), record


def _recompute_batch_norm(net, lags, stats, batch_size: int = 256) -> None:
    """Set the batch-norm statistics of averaged weights from the training clips.

    ``torch.optim.swa_utils.update_bn`` does this for models of one input; this network takes two
    (lags and statistics), hence the loop written out.
    """
    import torch

    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over all batches
    net.train()
    with torch.no_grad():
        for i in range(0, len(lags), batch_size):
            net(lags[i : i + batch_size], stats[i : i + batch_size])
    for norm in norms:
        norm.momentum = 0.1
    net.eval()



def main(argv: list[str] | None = None) -> dict:
    """Command line: ``python -m tunesmith.style.train [--quick] [--out DIR] ...``.

    Returns:
        The evaluation record written to ``eval.json``.
    """
    defaults = RenderPlan()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CHECKPOINT, help="checkpoint folder to write")
    parser.add_argument("--cache", type=Path, default=CACHE_DIR, help="folder of cached clip features")
    parser.add_argument("--data", type=Path, default=ABC_DIR, help="folder of the corpus split files")
    parser.add_argument("--per-class", type=int, default=defaults.per_class, help="training clips per class")
    parser.add_argument("--val-variants", type=int, default=defaults.val_variants, help="clips per validation tune")
    parser.add_argument("--test-variants", type=int, default=defaults.test_variants, help="clips per test tune")
    parser.add_argument(
        "--performances", type=int, default=defaults.performances,
        help="whole performances per validation and test tune",
    )
    parser.add_argument(
        "--train-tempo", choices=("mixed", "per-class", "shared"), default="mixed",
        help="training tempos: each rhythm's usual range, one shared range, or every other clip from each",
    )
    parser.add_argument(
        "--absolute", type=int, default=0,
        help="units of a dense layer reading the un-pooled log-lag features (an absolute-tempo cue); 0 for none",
    )
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument(
        "--average-from", type=int, default=10,
        help="average the weights of every epoch from this one on; 0 keeps the epoch best on validation",
    )
    parser.add_argument("--patience", type=int, default=30)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--workers", type=int, default=2, help="rendering processes")
    parser.add_argument("--no-shared-tempo-check", action="store_true", help="skip the shared-tempo test run")
    parser.add_argument("--quick", action="store_true", help="a few clips and epochs: a smoke test of the pipeline")
    args = parser.parse_args(argv)
    max_tunes = None
    if args.quick:
        args.per_class, args.val_variants, args.test_variants, args.performances = 6, 1, 1, 1
        args.epochs, args.patience, args.workers, args.average_from = 3, 3, 1, 2
        max_tunes = 2

    import torch

    # One thread: steps of a network this small are dominated by thread synchronisation, which on
    # a shared machine makes two threads several times slower than one.
    torch.set_num_threads(1)
    started = time.time()
    cache = FeatureCache(args.cache)
    splits = {s: labelled_tunes(s, args.data) for s in ("train", "validation", "test")}
    tune_counts = {s: {c: len(v) for c, v in g.items()} for s, g in splits.items()}
    print("labelled tunes per split:", json.dumps(tune_counts))

    plan = RenderPlan(
        seed=args.seed, per_class=args.per_class, val_variants=args.val_variants,
        test_variants=args.test_variants, performances=args.performances, max_tunes=max_tunes,
    )

    def dataset(split: str, tempo_mode: str = "per-class", whole: bool = False) -> Dataset:
        return split_dataset(
            splits[split], split, plan, cache, tempo_mode=tempo_mode, whole=whole, workers=args.workers
        )

    train_set = dataset("train", args.train_tempo)
    val_set = dataset("validation")
    test_set = dataset("test")
    val_whole = dataset("validation", whole=True)
    test_whole = dataset("test", whole=True)
    shared_sets = (
        (None, None) if (args.no_shared_tempo_check or args.quick)
        else (dataset("test", "shared"), dataset("test", "shared", whole=True))
    )
    render_seconds = time.time() - started
    every = (train_set, val_set, test_set, val_whole, test_whole, *shared_sets)
    rendered = sum(d.rendered for d in every if d is not None)

    print("training")
    train_started = time.time()
    model, record = train(
        train_set, val_set, seed=args.seed, epochs=args.epochs, patience=args.patience, absolute=args.absolute,
        average_from=args.average_from,
    )
    train_seconds = time.time() - train_started

    results = {
        "labels": list(CLASSES),
        "labelled_tunes": tune_counts,
        "train": {"counts": train_set.counts(), "failed_clips": train_set.failed},
        "validation": evaluate(model, val_set),
        "validation_performances": evaluate(model, val_whole),
        "test": evaluate(model, test_set),
        "test_performances": evaluate(model, test_whole),
    }
    if shared_sets[0] is not None:
        results["test_shared_tempo"] = evaluate(model, shared_sets[0])
        results["test_performances_shared_tempo"] = evaluate(model, shared_sets[1])
    n_params = sum(p.numel() for p in model.net.parameters())
    model.config.training = {
        "seed": args.seed,
        "per_class": args.per_class,
        "train_tempo": args.train_tempo,
        "best_epoch": record["best_epoch"],
        "epochs_run": record["epochs_run"],
        "bars_per_minute": DANCE_BARS_PER_MINUTE,
        "tempo_spread": TEMPO_SPREAD,
        "test_balanced_accuracy": results["test"]["balanced_accuracy"],
        "test_performance_balanced_accuracy": results["test_performances"]["performance_balanced_accuracy"],
    }
    out = model.save_pretrained(args.out)
    results.update(
        {
            "absolute": args.absolute,
            "parameters": int(n_params),
            "weights_bytes": (out / style.WEIGHTS_FILE).stat().st_size,
            "render_seconds": round(render_seconds, 1),
            "rendered_clips": rendered,
            "train_seconds": round(train_seconds, 1),
            "predict_seconds_10s_audio": round(predict_latency(model), 4),
            "training": {k: v for k, v in record.items() if k != "history"},
            "history": record["history"],
            "settings": vars(args) | {"out": str(args.out), "cache": str(args.cache), "data": str(args.data)},
            "cache_file": str(cache.path),
        }
    )
    (out / "eval.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    test, whole = results["test"], results["test_performances"]
    title = f"test split, one whole performance each: balanced accuracy {whole['performance_balanced_accuracy']:.1%}"
    plot_confusion(whole["performance_confusion_matrix"], out / "confusion_matrix.png", title)
    (out / "README.md").write_text(model_card(results), encoding="utf-8")

    print(f"\ntest balanced accuracy per whole performance {whole['performance_balanced_accuracy']:.3f}")
    print(format_confusion(whole["performance_confusion_matrix"]))
    print(f"per 10 s clip {test['balanced_accuracy']:.3f} (accuracy {test['accuracy']:.3f})")
    if "test_shared_tempo" in results:
        shared_accuracy = results["test_shared_tempo"]["balanced_accuracy"]
        print(f"test, one tempo range for all classes: balanced accuracy {shared_accuracy:.3f}")
    print(f"rendering {render_seconds:.0f} s, training {train_seconds:.0f} s, {n_params} parameters, wrote {out}")
    return results



if __name__ == "__main__":
    main()
