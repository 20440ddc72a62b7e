"""Judge arms against real tunes: every measure with a bootstrap interval, and a verdict for an A/B.

The measures (:data:`MEASURES`), each for the real tunes' halves (the *ceiling*: what a set that
truly comes from the real distribution scores at this sample size) and for every arm:

* **overlap / KL: <feature>** - Yang & Lerch's comparison of musical statistics
  (:mod:`tunesmith.realism.musical`): how the distances from candidate tunes to real tunes are
  distributed compared with the distances among the real tunes;
* **Fréchet distance** - between the style classifier's embeddings of the candidates'
  performances and of the real tunes' (:mod:`tunesmith.realism.listening`);
* **rhythm heard as asked** - the share of performances the classifier hears as the rhythm asked for;
* **copies the corpus** - the share of tunes that share a run of 48 notes with a corpus tune
  outside the test split (:class:`tunesmith.generator.critic.NoveltyIndex`, as the critic judges).
  Real test tunes score above zero here: the collections hold other settings of the same tunes,
  which the corpus split (by each tune's exact notes) may put in the training split;
* **copies its own set** - the share that share such a run with another tune of the same set:
  a generator that keeps writing the same tune (*mode collapse*) scores high.

**Halves.** Candidates of one half are compared with the real tunes of the *other* half (and the
other way round, the two averaged), so the real half itself can stand as a candidate: the same
comparison, the same sizes, and the gap between an arm and that ceiling is the arm's distance from
real music. Set sizes matter to these figures (a Fréchet distance from 45 tunes is larger than
from 450), so only figures from one run, with the same sizes, should be compared.

**Intervals.** A *bootstrap* resamples the tunes (with replacement, within each half) a few
hundred times and recomputes every figure: the spread of the results (their standard deviation,
the *standard error*) says how much a figure would move with another sample of the same size, and
the figure plus or minus 1.96 standard errors is its 95 % interval (``scipy.stats.bootstrap``).

**The A/B decision.** For the first two arms, each measure's difference is tested with a
*permutation test* (``scipy.stats.permutation_test``): if the arms did not differ, shuffling
tunes between them would change nothing, so the observed difference is compared with the
differences of random shuffles. The p-values are adjusted for testing many measures at once
(Benjamini-Hochberg, ``scipy.stats.false_discovery_control``). The tunes needed per arm for the
observed difference to be found 80 % of the time at the 5 % level follows from the bootstrap
standard error of the difference, which shrinks as one over the square root of the sample size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.spatial.distance import cdist

from tunesmith.realism import musical
from tunesmith.realism.listening import Heard
from tunesmith.realism.samples import Sample

ALPHA = 0.05
"""Significance level of the A/B decision."""
POWER = 0.8
"""Chance of detecting the observed difference that the sample-size estimate aims for."""
RESAMPLES = 300
"""Bootstrap resamples and permutations: a standard error from 300 resamples is within about 4 %
(one over the square root of 600) of the one an endless bootstrap would give, the smallest
p-value a permutation test can give is 1/301, and two arms of 91 tunes take about a minute."""


@dataclass(frozen=True)
class Measure:
    """One figure of the report."""

    name: str
    better: str  # "higher" or "lower"
    group: str  # "overlap", "kl", "frechet", "rhythm", "novelty": plots draw a group together
    fmt: str = ".2f"
    bounds: tuple[float, float] = (0.0, 1.0)  # the values it can take


MEASURES: tuple[Measure, ...] = (
    *(Measure(f"overlap: {f}", "higher", "overlap") for f in musical.FEATURES),
    *(Measure(f"KL: {f}", "lower", "kl", ".3f", (0.0, np.inf)) for f in musical.FEATURES),
    Measure("Fréchet distance (classifier embedding)", "lower", "frechet", ".2f", (0.0, np.inf)),
    Measure("rhythm heard as asked", "higher", "rhythm", ".0%"),
    Measure("copies the corpus (48-note run)", "lower", "novelty", ".0%"),
    Measure("copies its own set (48-note run)", "lower", "novelty", ".0%"),
)
NAMES = [m.name for m in MEASURES]
BOUNDS = [m.bounds for m in MEASURES]


def copies_corpus(tunes: list[str], index) -> np.ndarray:
    """1.0 for each tune that shares a run of 48 notes with a tune of ``index``, else 0.0."""
    from tunesmith.generator.quality import RUN_LENGTH

    return np.array([float(index.shared_run(abc).length >= RUN_LENGTH) for abc in tunes])


def copies_each_other(tunes: list[str]) -> np.ndarray:
    """1.0 for each tune that shares a run of 48 notes with another tune of the same list.

    Runs are compared as :class:`tunesmith.generator.quality.RunIndex` compares them (intervals
    and lengths, so a transposed repeat counts), one index per tune.
    """
    from collections import Counter

    from tunesmith.generator.quality import RunIndex

    runs = [RunIndex([abc]).hashes for abc in tunes]
    seen = Counter(h for own in runs for h in own)
    return np.array([float(any(seen[h] > 1 for h in own)) for own in runs])


def corpus_index():
    """The novelty index of the corpus outside the test split: what the generators learnt from."""
    from tunesmith.generator.critic import NoveltyIndex
    from tunesmith.music.corpus import ensure_splits, read_split

    ensure_splits()
    return NoveltyIndex.build(read_split("train") + read_split("validation"))


class Pool:
    """The reference and every arm, each tune reduced once to what the measures need.

    Rows ``0 .. len(real) - 1`` are the real tunes; each arm's rows follow (:attr:`rows`).
    :meth:`measures` computes every figure of :data:`MEASURES` for any candidate rows against any
    reference rows, which is what the bootstrap and the permutation test call hundreds of times.

    Args:
        real: the reference sample.
        arms: the arms' samples.
        heard: the classifier's answers per sample name (``None``: no listening measures).
        copies: per sample name, :func:`copies_corpus` flags (``None``: not measured).
    """

    def __init__(self, real: Sample, arms: list[Sample], heard: dict[str, Heard] | None = None,
                 copies: dict[str, np.ndarray] | None = None):
        self.samples = [real, *arms]
        names = [s.name for s in self.samples]
        if len(set(names)) != len(names):
            raise ValueError(f"sample names must differ, got {names}")
        sizes = np.cumsum([0] + [len(s) for s in self.samples])
        self.rows = {s.name: np.arange(sizes[i], sizes[i + 1]) for i, s in enumerate(self.samples)}
        self.n_real = len(real)
        self.features = {name: musical.feature_vectors(s.tunes) for name, s in zip(names, self.samples)}
        stacked = {f: np.vstack([self.features[n][f] for n in names]) for f in musical.FEATURES}
        self.to_real = {f: cdist(x, x[:self.n_real]) for f, x in stacked.items()}
        self.half = np.concatenate([s.halves for s in self.samples])
        nan = np.full(sum(len(s) for s in self.samples), np.nan)
        self.embeddings = (np.vstack([heard[n].embeddings for n in names]) if heard else None)
        self.agrees = (np.concatenate([heard[n].agreement(s.rhythms) for n, s in zip(names, self.samples)])
                       if heard else nan)
        self.copies = np.concatenate([copies[n] for n in names]) if copies else nan
        self.collapse = np.concatenate([copies_each_other(s.tunes) for s in self.samples])
        # one grid per feature for every comparison, so a reference's density can be reused
        self.grids = {f: musical.grid_for(d) for f, d in self.to_real.items()}
        self._reference_densities: dict = {}

    def _intra_distances(self, feature: str, ref: np.ndarray) -> np.ndarray:
        """Distances between the reference rows, each pair once, never a tune with its own copy."""
        d = self.to_real[feature][np.ix_(ref, ref)]
        upper = np.triu(np.ones(d.shape, dtype=bool), 1) & (ref[:, None] != ref[None, :])
        return d[upper]

    def _reference_density(self, feature: str, ref: np.ndarray) -> np.ndarray:
        """The density of the reference rows' distances; kept, since a permutation test reuses it."""
        key = (feature, ref.tobytes())
        if key not in self._reference_densities:
            if len(self._reference_densities) > 4096:
                self._reference_densities.clear()
            self._reference_densities[key] = musical.density(self._intra_distances(feature, ref), self.grids[feature])
        return self._reference_densities[key]

    def _compare(self, feature: str, cand: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
        grid = self.grids[feature]
        inter = musical.density(self.to_real[feature][np.ix_(cand, ref)].ravel(), grid)
        return musical.compare_densities(self._reference_density(feature, ref), inter, grid)

    def _folds(self, cand: np.ndarray, ref: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(candidates of one half, real tunes of the other half), for both halves that have tunes."""
        folds = []
        for half in (0, 1):
            c, r = cand[self.half[cand] == half], ref[self.half[ref] == 1 - half]
            if len(c) and len(np.unique(r)) >= 2:
                folds.append((c, r))
        return folds

    def measures(self, cand: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """Every figure of :data:`MEASURES`, in order, for candidate rows against reference rows."""
        cand, ref = np.asarray(cand, dtype=int), np.asarray(ref, dtype=int)
        folds = self._folds(cand, ref)
        overlap, kl = [], []
        for feature in musical.FEATURES:
            pairs = [self._compare(feature, c, r) for c, r in folds]
            overlap.append(np.mean([p[0] for p in pairs]) if pairs else np.nan)
            kl.append(np.mean([p[1] for p in pairs]) if pairs else np.nan)
        return np.array([*overlap, *kl, self._frechet(folds), _mean(self.agrees[cand]),
                         _mean(self.copies[cand]), _mean(self.collapse[cand])])

    def _frechet(self, folds) -> float:
        if self.embeddings is None:
            return np.nan
        distances = []
        for c, r in folds:
            a, b = self.embeddings[c], self.embeddings[r]
            a, b = a[~np.isnan(a).any(axis=1)], b[~np.isnan(b).any(axis=1)]
            if len(a) >= 2 and len(b) >= 2:
                distances.append(frechet(a, b))
        return float(np.mean(distances)) if distances else np.nan


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`tunesmith.style.model.frechet_distance` by the eigenvalue route, for resampling.

    ``tr((C_a C_b)^(1/2))`` is the sum of the square roots of the eigenvalues of ``C_a C_b``
    (real and non-negative: the product is similar to a positive semi-definite matrix), which
    numpy finds about twenty times quicker than scipy's matrix square root; a bootstrap computes
    this thousands of times. The two agree to rounding (tested).
    """
    mu = a.mean(axis=0) - b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    roots = np.sqrt(np.clip(np.linalg.eigvals(cov_a @ cov_b).real, 0.0, None))
    return max(float(mu @ mu + np.trace(cov_a) + np.trace(cov_b) - 2.0 * roots.sum()), 0.0)


def _mean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else np.nan


def _halves(pool: Pool, name: str) -> tuple[np.ndarray, np.ndarray]:
    rows = pool.rows[name]
    return rows[pool.half[rows] == 0], rows[pool.half[rows] == 1]


def bootstrap(statistic, groups: tuple[np.ndarray, ...], resamples: int, seed: int,
              bounds: list[tuple[float, float]] | None = None) -> list[dict]:
    """Every measure's value with its bootstrap standard error and 95 % interval.

    The interval is the figure plus or minus 1.96 bootstrap standard errors, kept within the
    measure's ``bounds``: centred on the figure, because a resample repeats some tunes, which makes
    a set look less varied than it is and pushes set-distance figures (overlap, KL, Fréchet) one
    way, so the resamples' own percentiles would sit beside the figure rather than around it.

    Args:
        statistic: maps the (resampled) row groups to the vector of measures.
        groups: row groups resampled independently (with replacement, each within itself).
        resamples: bootstrap resamples.
        seed: random seed.
        bounds: per measure, the lowest and highest value it can take (default: unbounded).

    Returns:
        One ``{"value", "low", "high", "se"}`` per measure; NaN where a measure has no data.
    """
    values = statistic(*groups)
    if not np.isfinite(values).any() or any(len(g) < 2 for g in groups):
        return [{"value": float(v), "low": np.nan, "high": np.nan, "se": np.nan} for v in values]
    result = stats.bootstrap(groups, lambda *g: np.nan_to_num(statistic(*g)), vectorized=False, paired=False,
                             n_resamples=resamples, method="percentile", rng=seed)
    z = stats.norm.ppf(0.975)
    out = []
    for k, (value, se) in enumerate(zip(values, np.atleast_1d(result.standard_error))):
        if not np.isfinite(value):
            out.append({"value": float(value), "low": np.nan, "high": np.nan, "se": np.nan})
            continue
        low, high = bounds[k] if bounds else (-np.inf, np.inf)
        out.append({"value": float(value), "low": float(max(value - z * se, low)),
                    "high": float(min(value + z * se, high)), "se": float(se)})
    return out


def permutation_pvalues(statistic, first: np.ndarray, second: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Two-sided permutation p-value of every measure's difference between two sets of rows.

    ``scipy.stats.permutation_test`` takes one number per statistic, so it runs once per measure;
    with the same seed every run draws the same shuffles, and the vector of all measures is
    computed once per shuffle and kept, so the cost is that of one run.
    """
    cache: dict = {}

    def vector(x, y):
        key = (np.asarray(x).tobytes(), np.asarray(y).tobytes())
        if key not in cache:
            cache[key] = statistic(np.asarray(x), np.asarray(y))
        return cache[key]

    observed = vector(first, second)
    pvalues = []
    for k, value in enumerate(observed):
        if not np.isfinite(value):
            pvalues.append(np.nan)
            continue
        result = stats.permutation_test((first, second), lambda x, y, k=k: vector(x, y)[k], vectorized=False,
                                        permutation_type="independent", n_resamples=resamples, rng=seed)
        pvalues.append(result.pvalue)
    return np.array(pvalues)


def tunes_needed(n: int, difference: float, se: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Tunes per arm to detect ``difference`` with probability ``power`` at level ``alpha`` (two-sided).

    The difference's standard error at ``n`` tunes per arm is ``se``; it scales as ``1/sqrt(n)``,
    so ``n * ((z_(1-alpha/2) + z_power) * se / difference)^2`` tunes give the wanted power.
    """
    if not (np.isfinite(difference) and np.isfinite(se)) or difference == 0:
        return math.inf
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(math.ceil(n * (z * se / abs(difference)) ** 2))


def judge(real: Sample, arms: list[Sample], heard: dict[str, Heard] | None = None,
          copies: dict[str, np.ndarray] | None = None, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Every measure for the real halves and each arm, with intervals, and the A/B decision.

    Args:
        real: the reference (:func:`tunesmith.realism.samples.reference`).
        arms: the arms' samples; the first two are A/B tested.
        heard: the classifier's answers per sample name (:func:`tunesmith.realism.listening.listen`).
        copies: :func:`copies_corpus` flags per sample name.
        resamples: bootstrap resamples and permutations.
        seed: random seed of the resampling.

    Returns:
        A JSON-ready dict: ``measures`` (name, better), ``sets`` (per sample: size and one
        ``{"value", "low", "high", "se"}`` per measure), ``ab`` (the decision, when there are two
        arms or more) and ``profiles`` (mean features and heard rhythms, for the plots).
    """
    pool = Pool(real, arms, heard, copies)
    ra, rb = _halves(pool, real.name)
    reference = np.concatenate([ra, rb])
    sets = {real.name: {"n": len(real), "values": bootstrap(
        lambda a, b: pool.measures(np.concatenate([a, b]), np.concatenate([a, b])), (ra, rb), resamples, seed, BOUNDS)}}
    for arm in arms:
        ca, cb = _halves(pool, arm.name)
        sets[arm.name] = {"n": len(arm), "values": bootstrap(
            lambda a, b, x, y: pool.measures(np.concatenate([a, b]), np.concatenate([x, y])),
            (ca, cb, ra, rb), resamples, seed, BOUNDS)}
    report = {"measures": [{"name": m.name, "better": m.better, "group": m.group, "fmt": m.fmt} for m in MEASURES],
              "sets": sets, "reference": real.name, "resamples": resamples,
              "rhythms": {r: real.rhythms.count(r) for r in dict.fromkeys(real.rhythms)},
              "profiles": profiles(pool, heard)}
    if len(arms) >= 2:
        report["ab"] = ab_test(pool, arms[0].name, arms[1].name, reference, resamples, seed)
    return report


def ab_test(pool: Pool, a: str, b: str, reference: np.ndarray, resamples: int, seed: int) -> dict:
    """Which of two arms is closer to the real tunes on each measure, and how sure that is."""
    a0, a1 = _halves(pool, a)
    b0, b1 = _halves(pool, b)
    ra = reference[pool.half[reference] == 0]
    rb = reference[pool.half[reference] == 1]

    def difference(x0, x1, y0, y1, r0, r1):
        ref = np.concatenate([r0, r1])
        return pool.measures(np.concatenate([y0, y1]), ref) - pool.measures(np.concatenate([x0, x1]), ref)

    diffs = bootstrap(difference, (a0, a1, b0, b1, ra, rb), resamples, seed)
    raw = permutation_pvalues(lambda x, y: pool.measures(y, reference) - pool.measures(x, reference),
                              pool.rows[a], pool.rows[b], resamples, seed)
    adjusted = np.full(len(raw), np.nan)
    tested = np.isfinite(raw)
    if tested.any():
        adjusted[tested] = stats.false_discovery_control(raw[tested])
    n = min(len(pool.rows[a]), len(pool.rows[b]))
    rows = []
    for measure, diff, p, q in zip(MEASURES, diffs, raw, adjusted):
        towards_b = diff["value"] > 0 if measure.better == "higher" else diff["value"] < 0
        closer = None if not q <= ALPHA else (b if towards_b else a)
        rows.append({"measure": measure.name, "difference": diff, "p": float(p), "p_adjusted": float(q),
                     "closer": closer, "needed_per_arm": tunes_needed(n, diff["value"], diff["se"])})
    wins = {name: sum(r["closer"] == name for r in rows) for name in (a, b)}
    undecided = sum(r["closer"] is None for r in rows)
    return {"a": a, "b": b, "rows": rows, "wins": wins, "undecided": undecided, "verdict": verdict(a, b, wins, undecided)}


def verdict(a: str, b: str, wins: dict[str, int], undecided: int) -> str:
    """One sentence for the A/B from the per-measure decisions."""
    total = wins[a] + wins[b] + undecided
    if wins[a] == wins[b]:
        lead = f"neither {a} nor {b} is closer to the real tunes overall"
    else:
        winner, loser = (a, b) if wins[a] > wins[b] else (b, a)
        lead = f"{winner} is closer to the real tunes"
    return (f"{lead}: {b} is significantly closer on {wins[b]} of {total} measures, {a} on {wins[a]}, "
            f"and {undecided} show no clear difference at this sample size "
            f"(permutation tests, Benjamini-Hochberg adjusted, {ALPHA:.0%} level).")


def profiles(pool: Pool, heard: dict[str, Heard] | None) -> dict:
    """Per sample: the mean of each feature vector, every pitch range, and how often each rhythm was heard."""
    out = {}
    for sample in pool.samples:
        features = pool.features[sample.name]
        entry = {f: features[f].mean(axis=0).tolist() for f in musical.FEATURES}
        entry["pitch range values"] = features["pitch range"][:, 0].tolist()
        if heard:
            h = heard[sample.name]
            entry["heard"] = {label: sum(x == label for x in h.heard) for label in h.labels}
            entry["asked"] = {label: sum(x == label for x in sample.rhythms) for label in h.labels}
        out[sample.name] = entry
    return out
