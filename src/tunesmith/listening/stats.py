"""Statistics of a blind listening test: which clip sounds most like a real folk tune?

Each vote is a :class:`Judgement`: the arms whose clips were heard (``"real"`` for the real tune of
the test split, else the model that wrote the tune) and the one picked, or ``None`` for "can't
tell". From those:

- **pick rate**: how often an arm's clip was picked when it was heard, against chance (1 in 3 in a
  three-clip round). The real tune's pick rate is the **"Turing test" rate**: at chance level,
  listeners cannot tell the real tune from the generated ones.
- **win rate** (head to head): of the votes where two arms were both heard and one of them was
  picked, the share that went to the first. An arm's win rate against the real tune is 50 % when it
  sounds as real as a real tune. Each vote counts at most once per pair, so the votes are
  independent trials and a **binomial test** against 50 % applies (``scipy.stats.binomtest``).
- **Wilson interval**: the confidence interval of a proportion from ``binomtest(...).proportion_ci
  (method="wilson")``; unlike "rate ± 2 standard errors" it stays inside 0..1 and behaves with few
  votes or rates near 0 or 1.
- **Bradley-Terry strengths**: one number per arm such that the chance of picking arm *i* out of a
  set of clips *S* is ``s_i / sum(s_j for j in S)`` (Luce's choice model, which is Bradley-Terry for
  pairs). Every vote informs every arm at once, also pairs never heard together. Fitted by the MM
  algorithm (Hunter 2004, "MM algorithms for generalized Bradley-Terry models"), written out here
  because no Bradley-Terry library is installed (``choix`` would be the one to add), with a weak prior
  (half a win and half a loss against a reference of strength 1) so that an arm never picked gets a
  small strength instead of zero; intervals by bootstrap (``scipy.stats.bootstrap``) over clip
  sets when the votes name them, else over votes. Strengths are reported relative to the real tune
  (real = 1).

"Can't tell" votes count in the totals and in no rate: they favour no clip.

One caveat: the app lets up to ten listeners judge the same clip set, so votes on one set share its
tunes and are not fully independent. The Bradley-Terry bootstrap resamples whole clip sets for that
reason; the Wilson intervals and binomial tests treat votes as independent, which makes them too
narrow when a few sets hold most of the votes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

REAL = "real"
"""The arm name of the real tune of each round."""
CONFIDENCE = 0.95
PRIOR = 0.5
"""Pseudo-votes per arm against a reference of strength 1, each way (see the module's docstring)."""


@dataclass(frozen=True)
class Judgement:
    """One vote: the arms heard, the one picked (``None``: can't tell), who voted, and which clip set
    (the same tunes) was judged, when known."""

    heard: tuple[str, ...]
    chosen: str | None
    listener: str = ""
    clip_set: str = ""


# -- proportions ------------------------------------------------------------------------------------
def wilson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson interval of ``k`` successes in ``n`` trials; ``(0, 1)`` without trials."""
    if n == 0:
        return 0.0, 1.0
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def binomial_p(k: int, n: int, p: float = 0.5) -> float:
    """Two-sided p-value of ``k`` successes in ``n`` trials if the true rate were ``p``; 1 without trials."""
    return float(stats.binomtest(int(k), int(n), p).pvalue) if n else 1.0


def arms_of(judgements: Sequence[Judgement]) -> list[str]:
    """Every arm heard, the real tune first, then by name."""
    names = {arm for j in judgements for arm in j.heard}
    return sorted(names, key=lambda name: (name != REAL, name))


def pick_rate(judgements: Sequence[Judgement], arm: str) -> dict:
    """How often ``arm`` was picked when heard (decided votes only), against chance.

    Returns:
        ``{"heard", "picked", "rate", "ci", "chance", "p_value"}``; chance is the mean of
        ``1 / clips`` over those votes, and the binomial test uses it (exact when every round has
        the same number of clips, as the app's do).
    """
    decided = [j for j in judgements if arm in j.heard and j.chosen is not None]
    picked = sum(j.chosen == arm for j in decided)
    chance = float(np.mean([1 / len(j.heard) for j in decided])) if decided else 0.0
    return {"heard": len(decided), "picked": picked, "rate": picked / len(decided) if decided else None,
            "ci": wilson(picked, len(decided)), "chance": chance,
            "p_value": binomial_p(picked, len(decided), chance) if decided else 1.0}


def head_to_head(judgements: Sequence[Judgement], arm: str, other: str) -> dict:
    """``arm`` against ``other``: of the votes that heard both and picked one of them, the share ``arm`` won.

    Returns:
        ``{"wins", "decisions", "rate", "ci", "p_value"}``, the p-value against 50 %.
    """
    decisions = [j.chosen for j in judgements if arm in j.heard and other in j.heard and j.chosen in (arm, other)]
    wins = sum(chosen == arm for chosen in decisions)
    return {"wins": wins, "decisions": len(decisions), "rate": wins / len(decisions) if decisions else None,
            "ci": wilson(wins, len(decisions)), "p_value": binomial_p(wins, len(decisions))}


# -- Bradley-Terry (Luce) strengths ----------------------------------------------------------------
def _design(judgements: Sequence[Judgement], arms: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decided votes as a membership matrix (votes x arms, 1 where heard), the winner's column, and
    each vote's clip set as a number (every vote its own when the votes name no sets)."""
    index = {arm: i for i, arm in enumerate(arms)}
    decided = [j for j in judgements if j.chosen is not None and j.chosen in index]
    heard = np.zeros((len(decided), len(arms)))
    for row, j in enumerate(decided):
        heard[row, [index[a] for a in j.heard if a in index]] = 1.0
    sets: dict[str, int] = {}
    groups = [sets.setdefault(j.clip_set or f"vote {n}", len(sets)) for n, j in enumerate(decided)]
    return heard, np.array([index[j.chosen] for j in decided], dtype=int), np.array(groups, dtype=int)


def fit_strengths(heard: np.ndarray, winners: np.ndarray, prior: float = PRIOR,
                  iterations: int = 500, tolerance: float = 1e-9) -> np.ndarray:
    """Luce / Bradley-Terry strengths by the MM algorithm.

    Each step sets ``s_i = wins_i / sum over votes that heard i of 1 / (sum of the strengths heard)``,
    which raises the likelihood every time (Hunter 2004); the prior adds ``prior`` wins and losses
    against a fixed reference of strength 1 to every arm.

    Args:
        heard: votes x arms, 1 where the arm's clip was in the round.
        winners: the column of each vote's pick.

    Returns:
        One strength per arm (the reference, not an arm, has strength 1).
    """
    wins = np.bincount(winners, minlength=heard.shape[1]).astype(float) + prior
    strengths = np.ones(heard.shape[1])
    for _ in range(iterations):
        per_vote = 1.0 / (heard @ strengths) if len(heard) else np.zeros(0)
        updated = wins / (heard.T @ per_vote + 2 * prior / (strengths + 1.0))
        if np.max(np.abs(np.log(updated) - np.log(strengths))) < tolerance:
            return updated
        strengths = updated
    return strengths


def bradley_terry(judgements: Sequence[Judgement], arms: Sequence[str] | None = None, bootstrap: int = 200,
                  seed: int = 0, confidence: float = CONFIDENCE) -> dict[str, dict]:
    """Strengths of every arm relative to the real tune (real = 1; else to their geometric mean),
    with bootstrap intervals over clip sets (over votes when the votes name no sets).

    Args:
        judgements: the votes ("can't tell" ones are left out).
        arms: which arms, in which order; ``None``: :func:`arms_of`.
        bootstrap: resamples for the intervals; 0 for none.
        seed: seeds the resampling, so the same votes give the same intervals.

    Returns:
        ``{arm: {"strength", "ci"}}``; ``ci`` is ``None`` without resamples or with fewer than 2 votes.
    """
    arms = list(arms or arms_of(judgements))
    heard, winners, groups = _design(judgements, arms)
    members = [np.flatnonzero(groups == g) for g in range(groups.max() + 1)] if len(groups) else []
    reference = arms.index(REAL) if REAL in arms else None

    def relative(log_strengths: np.ndarray) -> np.ndarray:
        return log_strengths - (log_strengths[..., [reference]] if reference is not None
                                else log_strengths.mean(axis=-1, keepdims=True))

    def statistic(drawn: np.ndarray) -> np.ndarray:  # the votes of the clip sets drawn
        rows = np.concatenate([members[int(g)] for g in drawn])
        return relative(np.log(fit_strengths(heard[rows], winners[rows])))

    point = relative(np.log(fit_strengths(heard, winners)))
    intervals = [None] * len(arms)
    if bootstrap and len(members) >= 2:
        result = stats.bootstrap((np.arange(len(members)),), statistic, n_resamples=bootstrap, vectorized=False,
                                 method="percentile", confidence_level=confidence, rng=np.random.default_rng(seed))
        low, high = np.exp(result.confidence_interval.low), np.exp(result.confidence_interval.high)
        intervals = [(float(lo), float(hi)) for lo, hi in zip(low, high)]
    return {arm: {"strength": float(np.exp(point[i])), "ci": intervals[i]} for i, arm in enumerate(arms)}


# -- everything at once ------------------------------------------------------------------------------
def summary(judgements: Sequence[Judgement], bootstrap: int = 200, seed: int = 0) -> dict:
    """The listening test in numbers, as JSON-ready data (what ``/listen_results`` answers).

    Returns:
        ``{"total", "decided", "cant_tell", "listeners", "real": <pick rate of the real tune: the
        Turing test rate>, "arms": {arm: {"pick_rate": ..., "vs_real": <head to head>, "vs": {other:
        <head to head>}, "strength", "strength_ci"}}}`` for every arm but the real tune.
    """
    arms = arms_of(judgements)
    strengths = bradley_terry(judgements, arms, bootstrap=bootstrap, seed=seed) if arms else {}
    result = {
        "total": len(judgements),
        "decided": sum(j.chosen is not None for j in judgements),
        "cant_tell": sum(j.chosen is None for j in judgements),
        "listeners": len({j.listener for j in judgements}),
        "real": pick_rate(judgements, REAL),
        "arms": {},
    }
    for arm in arms:
        if arm == REAL:
            continue
        result["arms"][arm] = {
            "pick_rate": pick_rate(judgements, arm),
            "vs_real": head_to_head(judgements, arm, REAL),
            "vs": {other: head_to_head(judgements, arm, other) for other in arms if other not in (arm, REAL)},
            "strength": strengths[arm]["strength"],
            "strength_ci": strengths[arm]["ci"],
        }
    return result


def _percent(rate: float | None, ci: Sequence[float] | None = None) -> str:
    if rate is None:
        return "–"
    return f"{100 * rate:.0f} %" + (f" [{100 * ci[0]:.0f}–{100 * ci[1]:.0f}]" if ci else "")


def format_table(result: Mapping) -> str:
    """:func:`summary` as a Markdown table: one row per arm, then the real tune's row."""
    if not result.get("total"):
        return "No votes yet."
    real = result["real"]
    lines = [
        f"**{result['total']} votes** from {result['listeners']} listener(s), {result['cant_tell']} \"can't tell\". "
        f"The real tune was picked in **{_percent(real['rate'], real['ci'])}** of its rounds "
        f"(chance: {_percent(real['chance'])}, binomial p = {real['p_value']:.2g}).",
        "",
        "| arm | picked when heard | won against the real tune | p (vs 50 %) | strength (real = 1) |",
        "|---|---|---|---|---|",
    ]
    for arm, row in result["arms"].items():
        pick, vs = row["pick_rate"], row["vs_real"]
        ci = row["strength_ci"]
        strength = f"{row['strength']:.2f}" + (f" [{ci[0]:.2f}–{ci[1]:.2f}]" if ci else "")
        lines.append(f"| `{arm}` | {_percent(pick['rate'], pick['ci'])} of {pick['heard']} | "
                     f"{_percent(vs['rate'], vs['ci'])} of {vs['decisions']} | {vs['p_value']:.2g} | {strength} |")
    lines.append("")
    lines.append("95 % intervals in brackets: Wilson for rates, bootstrap for strengths.")
    return "\n".join(lines)


# -- a simulated panel, for the notebook and the tests ------------------------------------------------
def simulate(strengths: Mapping[str, float], votes: int, clips: int = 3, cant_tell: float = 0.1,
             listeners: int = 12, seed: int = 0) -> list[Judgement]:
    """Votes from listeners who follow Luce's choice model with the given true strengths.

    Each round plays the real tune and ``clips - 1`` other arms drawn at random; a listener says
    "can't tell" with probability ``cant_tell``, else picks arm *i* with probability
    ``s_i / sum(s_j)`` over the clips heard.

    Args:
        strengths: true strength per arm, :data:`REAL` among them.
        votes: how many votes.
        clips: clips per round.
        cant_tell: the share of "can't tell" votes.
        listeners: how many simulated listeners (votes are dealt to them in turn).
        seed: makes the panel repeatable.
    """
    rng = random.Random(seed)
    others = [arm for arm in strengths if arm != REAL]
    out = []
    for n in range(votes):
        heard = [REAL, *rng.sample(others, min(clips - 1, len(others)))]
        rng.shuffle(heard)
        if rng.random() < cant_tell:
            chosen = None
        else:
            chosen = rng.choices(heard, weights=[strengths[arm] for arm in heard])[0]
        out.append(Judgement(tuple(heard), chosen, f"listener-{n % listeners}"))
    return out
