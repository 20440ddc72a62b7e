"""What the rhythm classifier of :mod:`tunesmith.style.model` is trained and evaluated on.

Labelled tunes of the corpus splits, rendered by :mod:`tunesmith.audio.synth` as varied
performances and reduced to the model's features. Training (:mod:`tunesmith.style.train`),
evaluation (:mod:`tunesmith.style.evaluate`) and notebook 2.6 draw on the same definitions here, so
the test performances ``make eval`` measures are the ones the model card reports.

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
way, so the ranges overlap (a fast hornpipe is quicker than a slow reel), or one *shared* range for
every class, the union of them all, where speed says nothing about the class (see
:func:`tempo_range`; :mod:`tunesmith.style.train` says why training mixes the two).

**Balance.** Each class gets the same number of training clips (:attr:`RenderPlan.per_class`); a
class with fewer tunes is rendered several times per tune, each time differently.

**Evaluation units.** Training and epoch selection use random 10 s clips. Validation and test
tunes are also played as *whole performances* (the first :data:`OPENING_BARS` written bars with
repeats played out, one tempo, instrument and effect setting each) and judged as the classifier
judges any longer audio, by averaging the probabilities of its crops. That is the unit the
classifier meets in use (whole tunes sent to the server, generated tunes played by
:mod:`tunesmith.audio.synth`), so the model card leads with it and gives the single-clip figure beside it.

Rendered features are cached per clip under ``data/cache/style-classifier/`` (one ``.npz`` per
setting of the renderer), so a re-run only renders what is new. All randomness is seeded.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import json
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
CACHE_DIR = paths.DATA / "cache" / "style-classifier"
"""Default folder of the :class:`FeatureCache` (``--cache`` of training and evaluation)."""
OPENING_BARS = 12
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


def opening_bars(abc: str, bars: int = OPENING_BARS) -> str:
    """The opening of a canonical tune, its first ``bars`` written bars, as a playable tune.

    Clips and whole performances play the opening (see :data:`OPENING_BARS`). A cut inside a
    repeated section ends with ``:|`` so the section still repeats (and a first ending still leads
    back); elsewhere the cut ends with ``|]``.

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
    cropped = replace(tune, events=events)
    audio = render(
        cropped, tempo=performance.tempo, instrument=performance.instrument, sample_rate=sr, max_seconds=600.0
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
    """Play the whole opening once per clip (a performance, cut into crops as the classifier cuts
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
        tune = parse_tune(opening_bars(job.abc))
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
        whole: each clip is a whole performance of the opening (see :attr:`Job.whole`).

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
# The clips of a run
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderPlan:
    """How many clips and performances of each split a run renders, and from which seed.

    Evaluating a checkpoint with the plan it was trained with meets the very performances its
    model card reports (clip seeds derive from the plan's seed), and their features come from the
    cache. The defaults are those of the shipped checkpoint.
    """

    seed: int = 7
    per_class: int = 900
    """Training clips per class."""
    val_variants: int = 6
    """Random 10 s clips per validation tune."""
    test_variants: int = 3
    """Random 10 s clips per test tune."""
    performances: int = 3
    """Whole performances per validation and test tune."""
    max_tunes: int | None = None
    """Use at most this many tunes per class (for quick runs)."""


def split_dataset(
    tunes: dict[str, list[str]],
    split: str,
    plan: RenderPlan,
    cache: FeatureCache,
    *,
    tempo_mode: str = "per-class",
    whole: bool = False,
    workers: int = 2,
    log=print,
) -> Dataset:
    """Plan the clips of one split as ``plan`` says, then render what the cache lacks.

    Args:
        tunes: the split's tunes per class, from :func:`labelled_tunes`.
        split: ``train``, ``validation`` or ``test``; the training split is rendered as
            :attr:`RenderPlan.per_class` clips per class, the others as a number of clips (or
            whole performances) per tune.
        plan: clip counts and seed.
        cache: the feature cache.
        tempo_mode: see :func:`plan_split`.
        whole: whole performances instead of single clips (validation and test).
        workers: processes for rendering.
        log: progress printer.

    Returns:
        The :class:`Dataset`.
    """
    if split == "train":
        jobs = plan_split(
            tunes, per_class=plan.per_class, variants=1, seed=plan.seed, split=split,
            tempo_mode=tempo_mode, max_tunes=plan.max_tunes,
        )
    else:
        variants = plan.val_variants if split == "validation" else plan.test_variants
        if whole:
            variants = plan.performances
        jobs = plan_split(
            tunes, per_class=None, variants=variants, seed=plan.seed, split=split,
            tempo_mode=tempo_mode, max_tunes=plan.max_tunes, whole=whole,
        )
    clips = sum(len(j.keys) for j, _ in jobs)
    unit = "whole performances" if whole else "clips"
    log(f"{split} ({tempo_mode} tempo): {clips} {unit} of {len(jobs)} tunes")
    return build_dataset(jobs, cache, workers=workers, log=log)
