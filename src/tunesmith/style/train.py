"""Train and evaluate the rhythm classifier of :mod:`tunesmith.style.model` on synthesized audio.

``python -m tunesmith.style.train`` renders labelled tunes of the corpus splits with
:mod:`tunesmith.audio.synth`, varies how they are played, trains the model on the **train** split, watches
the **validation** split and reports on the **test** split (balanced accuracy, confusion
matrix). It writes the checkpoint folder: weights, config, ``eval.json``, ``confusion_matrix.png``
and the model card ``README.md``.

**Labels.** A tune's class is its ``R:`` field, checked against its meter: a jig is in 6/8, a slip
jig in 9/8, reels and hornpipes in 2/2, 2/4 or 4/4. Ryan's Mammoth Collection files its slip jigs
(*Rocky Road to Dublin*, *Hey Ca' Thro'*) as "jig" in 9/8; they count as slip jigs. Its "jigs" in
2/4 and 2/2 are American clog-dance tunes, not the Irish 6/8 type, and are left out, as are the
rhythms with too few tunes to learn or test (strathspey: 57 train, 1 validation, 4 test tunes; air,
waltz, slide, march: fewer). See :func:`tune_class`.

**Augmentation.** Every clip is a different performance: a random :data:`~tunesmith.style.model.CROP_SECONDS`
stretch of the tune (repeats played out), a random instrument of :data:`tunesmith.audio.synth.INSTRUMENTS`,
a random tempo, and random mild effects from :func:`tunesmith.audio.effects.apply_chain` (reverb, delay,
pitch shift, gain) plus background noise. Tempos are in bars per minute
(:data:`tunesmith.music.abc.DANCE_BARS_PER_MINUTE`): each rhythm's usual range widened by 20 % either
way, so the ranges overlap (a fast hornpipe is quicker than a slow reel). Overlap alone does not
keep speed out of the model, though: trained on such tempos only, it called most slow reels and
jigs hornpipes (test balanced accuracy fell from about 84 % to 67 % when every class was played
in one shared range). So by default
(``--train-tempo mixed``) every other training clip takes its tempo from the *shared* range, the
union of all the classes' ranges, where speed says nothing about the class; this costs little at
the usual tempos and makes the model hold up at unusual ones. The test split is evaluated both at
the usual tempos and in the shared range, to show how much the classifier leans on speed.

**Balance.** Each class gets the same number of training clips (``--per-class``); a class with
fewer tunes is rendered several times per tune, each time differently.

**Evaluation units.** Training and epoch selection use random 10 s clips. Validation and test
tunes are also played as *whole performances* (the first :data:`EXCERPT_BARS` written bars with
repeats played out, one tempo, instrument and effect setting each) and judged as the classifier
judges any longer audio, by averaging the probabilities of its crops. That is the unit the
classifier meets in use (whole tunes sent to the server, generated tunes played by
:mod:`tunesmith.audio.synth`), so the model card leads with it and gives the single-clip figure beside it.

Rendered features are cached per clip under ``data/cache/style-classifier/`` (one ``.npz`` per
setting of the renderer), so a re-run only renders what is new. All randomness is seeded.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import hashlib
import json
import math
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tunesmith import paths
from tunesmith.style import model as style
from tunesmith.music.abc import BAR_TOKENS, DANCE_BARS_PER_MINUTE, meter_length, read_tune, render_tune
from tunesmith.music.corpus import ABC_DIR, ensure_splits, read_split

CLASSES = ("reel", "jig", "hornpipe", "slip jig")
"""The rhythms the classifier tells apart, in output order."""
METERS = {
    "reel": ("2/2", "2/4", "4/4"),
    "hornpipe": ("2/2", "2/4", "4/4"),
    "jig": ("6/8",),
    "slip jig": ("9/8",),
}
"""The meters a tune of each class may be written in; other combinations are mislabelled or
another tradition's use of the word."""
TEMPO_SPREAD = 0.2
"""Each range is widened by this fraction either way."""
CHECKPOINT = paths.CHECKPOINTS / "style-classifier"
CACHE_DIR = paths.DATA / "cache" / "style-classifier"
EXCERPT_BARS = 12
"""Written bars of each tune that are rendered: with repeats played out, enough for a
:data:`~tunesmith.style.model.CROP_SECONDS` crop at the fastest tempo, and parsing a few bars is
several times quicker than parsing the whole tune (music21 copies the score to expand repeats)."""
RENDER_VERSION = 2
"""Bump when the rendering or augmentation changes, so cached features are not reused."""


def tune_class(abc: str) -> str | None:
    """The class of a canonical tune from its ``R:`` and ``M:`` fields, or ``None`` to leave it out.

    Args:
        abc: a canonical tune (see :mod:`tunesmith.music.abc`).

    Returns:
        One of :data:`CLASSES`, or ``None``.
    """
    header, _ = read_tune(abc)
    rhythm = header.rhythm
    if rhythm == "jig" and header.meter == "9/8":
        rhythm = "slip jig"
    if rhythm in METERS and header.meter in METERS[rhythm]:
        return rhythm
    return None


def labelled_tunes(split: str, data_dir: Path = ABC_DIR) -> dict[str, list[str]]:
    """The tunes of a split grouped by class (see :func:`tune_class`).

    Args:
        split: ``train``, ``validation`` or ``test``.
        data_dir: folder of the split files (built if missing).

    Returns:
        ``{class: [abc, ...]}`` for every class in :data:`CLASSES`, in file order.
    """
    ensure_splits(data_dir)
    grouped: dict[str, list[str]] = {c: [] for c in CLASSES}
    for abc in read_split(split, data_dir):
        label = tune_class(abc)
        if label is not None:
            grouped[label].append(abc)
    return grouped


# --------------------------------------------------------------------------------------------
# Rendering one clip
# --------------------------------------------------------------------------------------------


def excerpt(abc: str, bars: int = EXCERPT_BARS) -> str:
    """The first ``bars`` written bars of a canonical tune, its repeat marks kept playable.

    A cut inside a repeated section ends with ``:|`` so the section still repeats (and a first
    ending still leads back); elsewhere the cut ends with ``|]``.

    Args:
        abc: a canonical tune.
        bars: bar lines to keep (a pickup counts as a bar).

    Returns:
        A canonical tune; the whole tune when it is no longer than ``bars``.
    """
    header, symbols = read_tune(abc)
    out: list[str] = []
    count = 0
    open_repeat = False
    for symbol in symbols:
        if symbol in BAR_TOKENS and symbol not in ("[1", "[2"):
            if out:
                count += 1
                if count == bars:
                    closes = open_repeat or symbol in (":|", "::")
                    out.append(":|" if closes else "|]")
                    return render_tune(header, out)
            if symbol in ("|:", "::"):
                open_repeat = True
            elif symbol == ":|":
                open_repeat = False
        out.append(symbol)
    return abc


@dataclass(frozen=True)
class Performance:
    """How one clip is played; drawn by :func:`draw_performance` and kept for the record."""

    bars_per_minute: float
    tempo: float  # quarter notes per minute, as tunesmith.audio.synth.render takes it
    instrument: str
    start_fraction: float  # where the crop starts, as a fraction of the room left in the tune
    reverb_room: float
    reverb_mix: float
    delay_time: float
    delay_feedback: float
    delay_mix: float
    pitch_semitones: float
    gain_db: float
    snr_db: float | None  # background noise level, None for none


def tempo_range(label: str, tempo_mode: str = "per-class") -> tuple[float, float]:
    """Bars per minute a clip of ``label`` is drawn from.

    Args:
        label: a class.
        tempo_mode: ``per-class`` (each rhythm's widened usual range) or ``shared`` (one range,
            the union of all of them, for every class).

    Returns:
        ``(low, high)`` bars per minute.
    """
    ranges = DANCE_BARS_PER_MINUTE.values() if tempo_mode == "shared" else [DANCE_BARS_PER_MINUTE[label]]
    low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
    return low * (1 - TEMPO_SPREAD), high * (1 + TEMPO_SPREAD)


def draw_performance(rng: np.random.Generator, label: str, meter: str, tempo_mode: str = "per-class") -> Performance:
    """Draw a random performance of a tune: tempo, instrument, crop and effects.

    Args:
        rng: the clip's random generator.
        label: the tune's class (sets the tempo range).
        meter: the tune's meter (converts bars to quarter notes).
        tempo_mode: see :func:`tempo_range`.

    Returns:
        The :class:`Performance`.
    """
    from tunesmith.audio.synth import INSTRUMENTS, TEMPO_RANGE

    low, high = tempo_range(label, tempo_mode)
    bars = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    quarters_per_bar = float(meter_length(meter)) * 4.0
    tempo = float(np.clip(bars * quarters_per_bar, *TEMPO_RANGE))
    reverb = rng.random() < 0.5
    delay = rng.random() < 0.25
    shift = rng.random() < 0.3
    noise = rng.random() < 0.4
    return Performance(
        bars_per_minute=bars,
        tempo=tempo,
        instrument=str(rng.choice(INSTRUMENTS)),
        start_fraction=float(rng.random()),
        reverb_room=float(rng.uniform(0.0, 0.8)),
        reverb_mix=float(rng.uniform(0.1, 0.5)) if reverb else 0.0,
        delay_time=float(rng.uniform(0.1, 0.6)),
        delay_feedback=float(rng.uniform(0.0, 0.5)),
        delay_mix=float(rng.uniform(0.1, 0.35)) if delay else 0.0,
        pitch_semitones=float(rng.uniform(-4.0, 4.0)) if shift else 0.0,
        gain_db=float(rng.uniform(-6.0, 6.0)),
        snr_db=float(rng.uniform(10.0, 40.0)) if noise else None,
    )


def play(
    tune, performance: Performance, rng: np.random.Generator, seconds: float | None = style.CROP_SECONDS
) -> np.ndarray:
    """Render a crop of a parsed tune as ``performance`` says, at the feature sample rate.

    Only the notes that fall into the crop are synthesized, so a long tune costs no more than a
    short one.

    Args:
        tune: a :class:`tunesmith.audio.synth.Tune`.
        performance: tempo, instrument, crop and effects.
        rng: for the background noise.
        seconds: length of the crop; ``None`` plays the whole tune (a whole performance).

    Returns:
        Mono float32 audio, at most ``seconds`` long.
    """
    from dataclasses import replace

    from tunesmith.audio.effects import EffectParams, apply_chain
    from tunesmith.audio.synth import render

    sr = style.FEATURE_SAMPLE_RATE
    if seconds is None:
        seconds = tune.quarter_length * 60.0 / performance.tempo + 1.0
    crop_quarters = seconds * performance.tempo / 60.0
    start = performance.start_fraction * max(0.0, tune.quarter_length - crop_quarters)
    end = start + crop_quarters
    events = tuple(
        replace(e, onset=e.onset - start) for e in tune.events if start - 1e-6 <= e.onset < end
    )
    excerpt = replace(tune, events=events)
    audio = render(
        excerpt, tempo=performance.tempo, instrument=performance.instrument, sample_rate=sr, max_seconds=600.0
    )
    params = EffectParams(
        pitch_semitones=performance.pitch_semitones,
        delay_time=performance.delay_time,
        delay_feedback=performance.delay_feedback,
        delay_mix=performance.delay_mix,
        reverb_room=performance.reverb_room,
        reverb_mix=performance.reverb_mix,
        gain_db=performance.gain_db,
    )
    audio = apply_chain(audio, sr, params, max_seconds=600.0)[: int(seconds * sr)]
    if performance.snr_db is not None:
        # white noise at a given signal-to-noise ratio: one line, no library needed
        level = np.sqrt(np.mean(audio.astype(np.float64) ** 2) / 10.0 ** (performance.snr_db / 10.0))
        audio = audio + rng.normal(0.0, level, len(audio)).astype(np.float32)
    return audio.astype(np.float32)


@dataclass(frozen=True)
class Job:
    """The clips of one tune to render (the tune is parsed once for all of them)."""

    abc: str
    label: str
    keys: tuple[str, ...]
    seeds: tuple[int, ...]
    tempo_modes: tuple[str, ...]
    whole: bool = False
    """Play the whole excerpt once per clip (a performance, cut into crops as the classifier cuts
    longer audio) instead of one random crop of it."""

    def crop_keys(self, key: str, crops: int) -> list[str]:
        """Cache keys of a clip's crops (a single crop keeps the clip's key)."""
        return [f"{key}.{i}" for i in range(crops)] if self.whole else [key]


def render_job(job: Job) -> list[tuple[str, np.ndarray | None, np.ndarray | None, dict]]:
    """Render and analyse the clips of one tune (runs in a worker process).

    Args:
        job: the tune and one key and seed per clip.

    Returns:
        ``(key, lags, stats, record)`` per clip; ``lags`` is ``None`` when the tune cannot be
        rendered (the record says why).
    """
    from tunesmith.audio.synth import SynthError, parse_tune

    try:
        tune = parse_tune(excerpt(job.abc))
    except SynthError as exc:
        return [(k, None, None, {"error": str(exc)}) for k in job.keys]
    meter = tune.meter or read_tune(job.abc)[0].meter
    out = []
    for key, seed, tempo_mode in zip(job.keys, job.seeds, job.tempo_modes):
        rng = np.random.default_rng(seed)
        performance = draw_performance(rng, job.label, meter, tempo_mode)
        try:
            audio = play(tune, performance, rng, seconds=None if job.whole else style.CROP_SECONDS)
            x, _ = style.check_audio(audio, style.FEATURE_SAMPLE_RATE)
        except ValueError as exc:
            out.append((key, None, None, {"error": str(exc)}))
            continue
        pieces = style.crops(x) if job.whole else [x]
        for crop_key, piece in zip(job.crop_keys(key, len(pieces)), pieces):
            lags, stats = style.crop_features(piece)
            out.append((crop_key, lags, stats, asdict(performance)))
    return out


# --------------------------------------------------------------------------------------------
# Datasets with a per-clip cache
# --------------------------------------------------------------------------------------------


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def settings_key() -> str:
    """Hash of everything that makes a cached clip stale: render version, ranges, features."""
    return _digest(RENDER_VERSION, DANCE_BARS_PER_MINUTE, TEMPO_SPREAD, style.feature_settings())[:16]


@dataclass
class Dataset:
    """Features of rendered clips with their labels (indices into :data:`CLASSES`)."""

    lags: np.ndarray
    stats: np.ndarray
    labels: np.ndarray
    tunes: np.ndarray  # index of the source tune, to count tunes per class
    performances: np.ndarray  # index of the performance a crop belongs to (one crop each, or several)
    failed: int = 0
    rendered: int = 0  # clips rendered by this run (the rest came from the cache)

    def counts(self) -> dict[str, dict[str, int]]:
        """Clips and distinct tunes per class."""
        out = {}
        for i, c in enumerate(CLASSES):
            mask = self.labels == i
            out[c] = {
                "clips": int(mask.sum()),
                "performances": int(len(set(self.performances[mask].tolist()))),
                "tunes": int(len(set(self.tunes[mask].tolist()))),
            }
        return out


class FeatureCache:
    """Per-clip features in one ``.npz`` file, keyed by a hash of the clip's tune, seed and settings."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / f"clips-{settings_key()}.npz"
        self.items: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if self.path.exists():
            with np.load(self.path) as data:
                for key, lags, stats in zip(data["keys"], data["lags"], data["stats"]):
                    self.items[str(key)] = (lags, stats)

    def save(self) -> None:
        """Write all cached clips (atomically, through a temporary file)."""
        if not self.items:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self.items)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp,
            keys=np.array(keys),
            lags=np.stack([self.items[k][0] for k in keys]),
            stats=np.stack([self.items[k][1] for k in keys]),
        )
        os.replace(tmp, self.path)


def plan_split(
    grouped: dict[str, list[str]],
    *,
    per_class: int | None,
    variants: int,
    seed: int,
    split: str,
    tempo_mode: str = "per-class",
    max_tunes: int | None = None,
    whole: bool = False,
) -> list[tuple[Job, list[int]]]:
    """Decide which clips of which tunes to render.

    Args:
        grouped: tunes per class, from :func:`labelled_tunes`.
        per_class: clips per class (tunes are cycled, each pass with new random performances);
            ``None`` renders every tune ``variants`` times.
        variants: clips per tune when ``per_class`` is ``None``.
        seed: the run's seed.
        split: the split's name (part of each clip's seed).
        tempo_mode: see :func:`tempo_range`; ``mixed`` alternates ``per-class`` and ``shared``
            from clip to clip.
        max_tunes: use at most this many tunes per class (for quick runs).
        whole: each clip is a whole performance of the excerpt (see :attr:`Job.whole`).

    Returns:
        ``(job, tune ids)`` pairs, one per tune, where each clip's tune id is an index of the tune.
    """
    jobs = []
    tune_id = 0
    for label in CLASSES:
        tunes = list(grouped[label])
        rng = np.random.default_rng([seed, CLASSES.index(label), len(split)])
        rng.shuffle(tunes)
        if max_tunes is not None:
            tunes = tunes[:max_tunes]
        if not tunes:
            continue
        total = per_class if per_class is not None else variants * len(tunes)
        passes = collections.defaultdict(list)
        for k in range(total):
            passes[k % len(tunes)].append(k // len(tunes))
        for index, variant_list in sorted(passes.items()):
            abc = tunes[index]
            keys, seeds, modes = [], [], []
            for variant in variant_list:
                mode = tempo_mode
                if tempo_mode == "mixed":
                    mode = ("per-class", "shared")[(index + variant * len(tunes)) % 2]
                digest = _digest(settings_key(), abc, split, mode, seed, variant, *(["whole"] if whole else []))
                keys.append(digest[:24])
                seeds.append(int(digest[24:40], 16))
                modes.append(mode)
            jobs.append((Job(abc, label, tuple(keys), tuple(seeds), tuple(modes), whole), [tune_id] * len(keys)))
            tune_id += 1
    return jobs


def build_dataset(
    jobs: list[tuple[Job, list[int]]], cache: FeatureCache, workers: int = 2, log=print
) -> Dataset:
    """Render whatever the cache lacks (in ``workers`` processes) and assemble the dataset.

    Args:
        jobs: from :func:`plan_split`.
        cache: the feature cache; new clips are added to it and saved.
        workers: processes for rendering; 1 renders in this process.
        log: progress printer.

    Returns:
        The :class:`Dataset` (clips that could not be rendered are counted in ``failed``).
    """
    missing = [job for job, _ in jobs if any(job.crop_keys(k, 1)[0] not in cache.items for k in job.keys)]
    failed: set[str] = set()
    if missing:
        started = time.time()
        done = 0
        if workers > 1:
            context = multiprocessing.get_context("spawn")
            pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context)
            results = pool.map(render_job, missing, chunksize=4)
        else:
            pool = None
            results = map(render_job, missing)
        try:
            for result in results:
                for key, lags, stats, record in result:
                    if lags is None:
                        failed.add(key)
                    else:
                        cache.items[key] = (lags, stats)
                done += 1
                if done % 100 == 0:
                    log(f"  rendered {done}/{len(missing)} tunes, {time.time() - started:.0f} s")
        finally:
            if pool is not None:
                pool.shutdown()
        cache.save()
    lags, stats, labels, tunes, performances = [], [], [], [], []
    performance = 0
    for job, tune_ids in jobs:
        for key, tune_id in zip(job.keys, tune_ids):
            crop_keys = job.crop_keys(key, style.MAX_CROPS)
            present = [k for k in crop_keys if k in cache.items]
            for crop_key in present:
                lags.append(cache.items[crop_key][0])
                stats.append(cache.items[crop_key][1])
                labels.append(CLASSES.index(job.label))
                tunes.append(tune_id)
                performances.append(performance)
            performance += 1 if present else 0
    return Dataset(
        lags=np.stack(lags).astype(np.float32),
        stats=np.stack(stats).astype(np.float32),
        labels=np.asarray(labels, dtype=np.int64),
        tunes=np.asarray(tunes, dtype=np.int64),
        performances=np.asarray(performances, dtype=np.int64),
        failed=len(failed),
        rendered=sum(len(job.keys) for job in missing),
    )


# --------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    """Command line: ``python -m tunesmith.style.train [--quick] [--out DIR] ...``.

    Returns:
        The evaluation record written to ``eval.json``.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CHECKPOINT, help="checkpoint folder to write")
    parser.add_argument("--cache", type=Path, default=CACHE_DIR, help="folder of cached clip features")
    parser.add_argument("--data", type=Path, default=ABC_DIR, help="folder of the corpus split files")
    parser.add_argument("--per-class", type=int, default=900, help="training clips per class")
    parser.add_argument("--val-variants", type=int, default=6, help="clips per validation tune")
    parser.add_argument("--test-variants", type=int, default=3, help="clips per test tune")
    parser.add_argument(
        "--performances", type=int, default=3, help="whole performances per validation and test tune"
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
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2, help="rendering processes")
    parser.add_argument("--no-shared-tempo-check", action="store_true", help="skip the shared-tempo test run")
    parser.add_argument("--quick", action="store_true", help="a few clips and epochs: a smoke test of the pipeline")
    parser.add_argument(
        "--evaluate", type=Path, nargs="?", const=CHECKPOINT, default=None, metavar="CHECKPOINT",
        help="only measure a trained checkpoint (default: the shipped one) on the test split and print the tables",
    )
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

    def dataset(split: str, tempo_mode: str = "per-class", whole: bool = False) -> Dataset:
        if split == "train":
            jobs = plan_split(
                splits[split], per_class=args.per_class, variants=1, seed=args.seed, split=split,
                tempo_mode=args.train_tempo, max_tunes=max_tunes,
            )
        else:
            variants = args.val_variants if split == "validation" else args.test_variants
            if whole:
                variants = args.performances
            jobs = plan_split(
                splits[split], per_class=None, variants=variants, seed=args.seed, split=split,
                tempo_mode=tempo_mode, max_tunes=max_tunes, whole=whole,
            )
        clips = sum(len(j.keys) for j, _ in jobs)
        unit = "whole performances" if whole else "clips"
        print(f"{split} ({tempo_mode} tempo): {clips} {unit} of {len(jobs)} tunes")
        return build_dataset(jobs, cache, workers=args.workers)

    if args.evaluate is not None:
        return evaluate_checkpoint(args.evaluate, dataset("test"), dataset("test", whole=True))

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


def evaluate_checkpoint(path: Path, clips: Dataset, performances: Dataset) -> dict:
    """Measure a trained checkpoint on the test split and print the tables (``make eval``).

    The test clips and performances are drawn with the training run's seed, so a checkpoint
    trained here meets the same performances its model card reports; features come from the
    cache when present.

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
    shared = ""
    if "test_shared_tempo" in results:
        s, sw = results["test_shared_tempo"], results["test_performances_shared_tempo"]
        shared = (
            f"\n**Tempo check.** The same test tunes played again with tempos from *one* range for every "
            f"class ({low:.0f}-{high:.0f} bars per minute, so speed says nothing about the class, and many "
            f"are far slower or faster than the rhythm is ever danced): balanced accuracy "
            f"**{sw['performance_balanced_accuracy']:.1%}** per performance, "
            f"**{s['balanced_accuracy']:.1%}** per 10 s clip. Per performance:\n\n"
            f"```\n{format_confusion(sw['performance_confusion_matrix'])}\n```\n"
        )
    ranges = ", ".join(f"{c} {tempo_range(c)[0]:.0f}-{tempo_range(c)[1]:.0f}" for c in CLASSES)
    train_tempo = {
        "mixed": (
            f"every other training clip from its rhythm's range, the others from the shared range "
            f"{low:.0f}-{high:.0f}"
        ),
        "per-class": "every training clip from its rhythm's range",
        "shared": f"every training clip from the shared range {low:.0f}-{high:.0f}",
    }[settings["train_tempo"]]
    n_test_clips = sum(v["clips"] for v in test["counts"].values())
    n_test_tunes = sum(v["tunes"] for v in test["counts"].values())
    n_whole = sum(v["performances"] for v in whole["counts"].values())
    n_whole_crops = sum(v["clips"] for v in whole["counts"].values())
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
    absolute_text = (
        f" A {absolute}-unit dense layer also reads the un-pooled features, where the absolute tempo shows."
        if absolute else ""
    )
    return f"""# style-classifier

Tells the dance rhythm of a folk tune from audio: **{", ".join(CLASSES)}**. Input: mono audio of at
least {style.MIN_SECONDS:g} s at any rate from 8 to 96 kHz (it is resampled to
{style.FEATURE_SAMPLE_RATE} Hz); output: a probability per rhythm, and a {style.EMBED_DIM}-number
embedding for comparing sets of tunes with a Fréchet distance (as FID does for images).

```python
from tunesmith import paths
from tunesmith.style.model import StyleClassifier, frechet_distance

model = StyleClassifier.from_pretrained(paths.CHECKPOINTS / "style-classifier")
model.predict(samples, sample_rate)      # {{"reel": 0.91, "jig": 0.02, ...}}
model.predict_wav(wav_bytes)             # the same from an audio file's bytes
model.embed(samples, sample_rate)        # float32 vector of {style.EMBED_DIM}
frechet_distance(generated_embeddings, real_embeddings)
```

Files: `config.json` (labels, layer sizes, feature settings, training record),
`model.safetensors` ({results['parameters']:,} parameters, {results['weights_bytes'] / 1024:.0f} KiB),
`eval.json` (every number below, per-epoch history), `confusion_matrix.png`.
Retrain with `python -m tunesmith.style.train` (clip features are cached under
`data/cache/style-classifier/`; `--quick` is a smoke run of a few clips).

## Model

Features (`tunesmith/style/model.py`): the autocorrelation of the onset-strength envelope and of the
chroma sequence of a {style.CROP_SECONDS:g} s crop, on a logarithmic lag axis
({style.LAG_MIN:g}-{style.LAG_MAX:g} s, {style.BINS_PER_OCTAVE} bins per octave), plus four spectral
statistics. Rhythm is how notes group into beats and bars, which shows as autocorrelation peaks at
note, beat and bar lags; on a log-lag axis a tempo change is only a shift, and the 1-D CNN pools
over the whole axis, so the absolute tempo is not an input. Longer audio is cut into
{style.CROP_SECONDS:g} s crops {style.CROP_HOP_SECONDS:g} s apart (at most {style.MAX_CROPS}) whose
probabilities and embeddings are averaged. Network: four dilated convolutions (32 channels,
kernel 9, dilations 1/2/4/8, batch norm), mean and max pooling, a {style.EMBED_DIM}-unit ReLU
layer (the embedding) and a linear output layer.{absolute_text}

## Data

Tunes with an `R:` field from music21's corpus (O'Neill's *Music of Ireland*, Ryan's Mammoth
Collection, Aird's Airs), split by `tunesmith.music.corpus`. The class is the `R:` field checked against
the meter: jig in 6/8, slip jig in 9/8 (Ryan's 9/8 "jigs", such as *Rocky Road to Dublin*, are slip
jigs and count as such), reel and hornpipe in 2/2, 2/4 or 4/4. Ryan's 2/4 and 2/2 "jigs" (American
clog-dance tunes) are left out. Strathspeys (57 / 1 / 4 tunes in train / validation / test) are
left out: one validation and four test tunes can neither guide training nor measure it. Airs,
waltzes, slides and marches have fewer than 30 tunes each.

| class | train tunes | validation tunes | test tunes | training clips | test performances | test recall, per performance | test recall, per 10 s clip |
|---|---:|---:|---:|---:|---:|---:|---:|
{rows}

Every clip is a new synthesized performance (`tunesmith.audio.synth`): a random {style.CROP_SECONDS:g} s
stretch of the tune's first {EXCERPT_BARS} written bars with repeats played out, a random instrument
(fiddle, flute, whistle, harp, piano, sine), a random tempo, and random mild effects
(`tunesmith.audio.effects`: reverb half the time, delay a quarter of the time, pitch shift up to ±4
semitones 30 % of the time, gain ±6 dB) plus white noise at 10-40 dB SNR 40 % of the time.
Training clips are balanced by class (slip jigs, with fewer tunes, are played more times each).
Validation tunes are played as {settings['val_variants']} random 10 s clips and
{settings['performances']} whole performances, test tunes as {settings['test_variants']}
random 10 s clips and {settings['performances']} whole performances, each time differently. A *whole
performance* is the tune's first {EXCERPT_BARS} written bars with repeats played out (about
15-35 s), in one tempo, instrument and set of effects, classified as one piece of audio: cut into
{style.CROP_SECONDS:g} s crops {style.CROP_HOP_SECONDS:g} s apart whose probabilities are averaged,
exactly as `predict` treats longer audio.

**Tempo.** In bars per minute, each rhythm's usual dance tempo widened by ±20 %: {ranges}. These
ranges overlap, but overlap is not enough: a model trained on them alone learnt speed from details
at fixed time scales (attack, vibrato, reverb) and called most slow reels hornpipes. Training
tempos here: {train_tempo}. Validation and test clips and performances use the rhythms' own ranges.

## Evaluation (test split, never trained on)

**Unit.** The headline figure judges one whole performance per request (see *Data*), because
that is how the classifier is used: the server receives whole audio, and the tunes it compares
(generated tunes played by `tunesmith.audio.synth`, the real tunes they are compared with) are whole
performances, not arbitrary 10 s windows. The figure for a single 10 s clip, the least audio
the model is built for, is given beside it.

| unit | test balanced accuracy | test accuracy | validation balanced accuracy |
|---|---:|---:|---:|
| one whole performance ({n_whole} performances, {n_whole_crops} crops) | **{whole['performance_balanced_accuracy']:.1%}** | {whole['performance_accuracy']:.1%} | {val_whole['performance_balanced_accuracy']:.1%} |
| one 10 s clip ({n_test_clips} clips) | **{test['balanced_accuracy']:.1%}** | {test['accuracy']:.1%} | {val['balanced_accuracy']:.1%} |
| one tune, its {settings['test_variants']} clips averaged ({n_test_tunes} tunes) | {test['tune_balanced_accuracy']:.1%} | | {val['tune_balanced_accuracy']:.1%} |

Balanced accuracy is the mean recall over the four classes, so the 4 slip jigs weigh as much as
the 48 reels. Confusion matrix, one whole performance each:

```
{format_confusion(whole['performance_confusion_matrix'])}
```

![confusion matrix](confusion_matrix.png)

One 10 s clip each:

```
{format_confusion(test['confusion_matrix'])}
```
{shared}
## Limits

* Trained on synthesized audio only: clean, monophonic, in strict time, with accents on the beats.
  Real recordings (ornaments, swing, accompaniment, rubato) and hummed tunes are outside the
  training data; expect lower accuracy there.
* Hornpipes are played as written. Many hornpipes in these books are written in even eighths, and
  a hornpipe in even eighths is rhythmically a reel (a player would swing it and play it slower):
  most errors are between these two. Hornpipes written with dotted rhythms are rarely missed.
* Speed still counts for something, as it does for a listener: an even-eighth reel played far
  below dance tempo is heard as a hornpipe (at `tunesmith.audio.synth`'s default 120 quarter notes per
  minute a 2/2 reel runs at 30 bars per minute). Render tunes at their rhythm's tempo
  (`tunesmith.music.abc.dance_tempo(abc)`, quarter notes per minute) before classifying or comparing them.
* The test split is small ({n_test_tunes} tunes, only {counts['test']['slip jig']} slip jigs), so the
  figures above move by several points with the random performances drawn and the training seed:
  one slip jig tune judged wrong costs {25 / counts['test']['slip jig']:.0f} points of balanced accuracy. The
  validation tunes ({sum(counts['validation'].values())}, {counts['validation']['slip jig']} slip jigs) proved easier than the test tunes, so
  validation figures overstate what to expect.
* The embedding reflects rhythm (and a little timbre), not melody or key.

## Training

Seed {settings['seed']}, {results['train']['counts']['reel']['clips']} clips per class, AdamW (weight
decay 1e-3) with cosine decay from 3e-3 over {settings['epochs']} epochs, batch 64, label smoothing
0.05; {kept}. {rendering}, training
{results['train_seconds']:.0f} s on one CPU thread. Predicting 10 s of audio takes about
{results['predict_seconds_10s_audio'] * 1000:.0f} ms on the same shared 2-core CPU (median of 5; almost all of it is
feature extraction; the network itself takes about half a millisecond on one thread).

Data: music21's corpus; see `data/README.md` for its licence (teaching and research use).
"""


if __name__ == "__main__":
    main()
