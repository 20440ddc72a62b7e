"""The tune critic: score candidate tunes for one request and keep the best (``tune-critic``).

Stage 3 of the workshop asks several generators for tunes and wants *unique* ones back. The critic
reads the request's header (``X:1\\nM:6/8\\nL:1/8\\nR:jig\\nK:D``) and the candidates (complete ABC)
and scores each on four criteria:

* **bars** - the share of bars that fill the requested meter (short bars only as a pickup or at a
  section end, as :func:`tunesmith.music.abc.bar_checks` has it);
* **key fit** - the Krumhansl-Kessler correlation of the tune's pitch classes with the requested
  key (:func:`tunesmith.generator.quality.key_correlation`);
* **header** - the candidate's ``M:``, ``K:`` and ``R:`` say what was asked for;
* **novelty** - the longest run of notes the candidate shares with any tune of the whole corpus,
  compared as :class:`tunesmith.generator.quality.RunIndex` compares runs (intervals and lengths,
  so a transposed copy counts). A run of :data:`RUN_LENGTH` notes or more *disqualifies*: such a
  tune is a copy, whatever else it does well, and if every candidate is one there is no winner
  and the caller generates again.

The weighted sum ranks the candidates; ties go to the earlier candidate. The winner is
*accepted* when it meets :data:`ACCEPT_BARS`, :data:`ACCEPT_KEY_CORRELATION` and asks for
nothing but the requested header, so a pipeline can route ``accept`` or ``retry``.

The novelty index (:class:`NoveltyIndex`) holds every run of :data:`RUN_BASE` steps of the corpus
as a 64-bit hash with its position, sorted, in numpy arrays. A candidate's own windows are
looked up by binary search; a shared run of ``L >= RUN_BASE`` steps shows up as ``L - RUN_BASE +
1`` hits on one diagonal (corpus position minus candidate position), so the longest run is the
longest streak of consecutive hits on a diagonal, checked note by note before it is reported.
Indexing the corpus (12,323 tunes, 0.9 M steps) takes about two seconds, so the index is kept
beside the corpus (:data:`INDEX_FILE`); ``make setup`` builds it with ``python -m
tunesmith.generator.critic``, and a critic that finds it missing or stale builds it again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tunesmith.music.abc import (
    UNIT,
    Header,
    NormaliseError,
    bar_checks,
    bars_of,
    canonical_key,
    canonical_meter,
    meter_length,
    read_tune,
    rhythm_name,
    split_tune,
)
from tunesmith.generator.quality import RUN_LENGTH, histogram_of, key_correlation, run_steps

RUN_BASE = 8
"""Steps per indexed window. Shorter runs are the common stock of the idiom (scale fragments,
arpeggios: the most frequent 8-step window occurs 70 times in the corpus, so lookups stay cheap),
and a run shorter than this is reported as 0."""

BARS_WEIGHT = 0.35  # a bar that does not fill the meter breaks the dance; the loudest fault a player hears
HEADER_WEIGHT = 0.25  # M:, K:, R: other than asked is a different tune from the one requested
KEY_WEIGHT = 0.25  # as much as the header: a tune that names the key but does not sound in it misses it too
NOVELTY_WEIGHT = 0.15  # below the hard limit a shorter shared run is a mild preference only; it must not outweigh a fault
STOCK_RUN = 12
"""Shared runs up to this many steps cost no novelty: a real test-split tune shares a 12.5-step run
with the training tunes on average (median 9), so runs this long are the idiom's stock phrases,
not copying. From here the novelty falls linearly to 0 at :data:`RUN_LENGTH`."""

ACCEPT_BARS = 1.0
"""Share of bars that must fill the meter for the winner to be accepted (the bar-aware decoder
gets every bar right, so anything less is a fault worth a retry)."""
ACCEPT_KEY_CORRELATION = 0.6
"""Key fit the winner needs to be accepted: 91 % of the real test-split tunes reach it with their own
key (mean 0.78), and the generator with its key prior averages 0.83."""

_HIGH = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the rolling window hash
_SOURCE_RE = re.compile(r"(?m)^%source\s+(\S+)")


@dataclass(frozen=True)
class SharedRun:
    """The longest run a tune shares with an indexed tune.

    Attributes:
        length: steps (notes and rests) in the run; 0 when no run of :data:`RUN_BASE` is shared.
        tune: index of the corpus tune it is shared with, ``None`` when ``length`` is 0.
        name: how reports name that tune (its title where the corpus file has one).
        at: step of the candidate where the run starts.
        corpus_at: step of the corpus tune where the run starts.
    """

    length: int
    tune: int | None = None
    name: str | None = None
    at: int = 0
    corpus_at: int = 0


class NoveltyIndex:
    """Every run of :data:`RUN_BASE` steps of a set of tunes, for finding the longest shared run.

    Build it with :meth:`build` (any tunes) or :meth:`from_corpus` (the three corpus splits).
    """

    def __init__(self, full: np.ndarray, start: np.ndarray, offsets: np.ndarray, vocab: dict,
                 lengths: dict, names: list[str], k: int = RUN_BASE):
        self.full = full  # step ids, every tune's steps one after another
        self.start = start  # length-only ids: a run's first step is compared by length alone
        self.offsets = offsets  # tune t holds steps offsets[t]:offsets[t + 1]
        self.vocab = vocab
        self.lengths = lengths
        self.names = names
        self.k = k
        hashes = _window_hashes(full, start, k)
        valid = np.flatnonzero(_windows_inside_tunes(offsets, len(full), k))
        order = np.argsort(hashes[valid], kind="stable")
        self.keys = hashes[valid][order]
        self.positions = valid[order].astype(np.int32)

    @classmethod
    def build(cls, tunes: list[str], names: list[str] | None = None, k: int = RUN_BASE) -> NoveltyIndex:
        """Index canonical ABC tunes.

        Args:
            tunes: the tunes to compare candidates against.
            names: one name per tune for reports; default ``"tune <n>"``.
            k: window length; runs shorter than this are not found.
        """
        if k < 2:
            raise ValueError("k must be at least 2: consecutive windows must overlap")
        vocab: dict = {}
        lengths: dict = {}
        full: list[int] = []
        start: list[int] = []
        offsets = [0]
        for abc in tunes:
            for step in run_steps(abc):
                full.append(vocab.setdefault(step, len(vocab) + 1))
                start.append(lengths.setdefault(step[1], len(lengths) + 1))
            offsets.append(len(full))
        names = list(names) if names is not None else [f"tune {i + 1}" for i in range(len(tunes))]
        if len(names) != len(tunes):
            raise ValueError(f"{len(names)} names for {len(tunes)} tunes")
        dtype = np.int16 if max(len(vocab), len(lengths)) < 2 ** 15 else np.int32
        return cls(np.array(full, dtype=dtype), np.array(start, dtype=dtype), np.array(offsets, dtype=np.int64),
                   vocab, lengths, names)

    @classmethod
    def from_corpus(cls, k: int = RUN_BASE) -> NoveltyIndex:
        """Index the whole corpus: train, validation and test (a copy of any of them is a copy).

        Reading the steps of 12,323 tunes takes about 2 s, so the result is kept beside the corpus
        files (:data:`INDEX_FILE`, tagged with their sha256, rebuilt when they change) and one
        index serves every critic of a process (``tune-critic`` and ``tune-critic-strict`` load
        the same folder).
        """
        return _corpus_index(k)

    def save(self, path: Path, tag: str) -> None:
        """Write the index's inputs to ``path`` (``.npz``) atomically, with ``tag`` to check on load."""
        steps = json.dumps([list(step) for step in self.vocab])  # in id order: ids are 1, 2, ...
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(temporary, "wb") as out:
            np.savez(out, full=self.full, start=self.start, offsets=self.offsets, steps=np.array(steps),
                     lengths=np.array(json.dumps(list(self.lengths))), names=np.array(self.names),
                     k=np.array(self.k), tag=np.array(tag))
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path, tag: str) -> NoveltyIndex | None:
        """The index saved at ``path`` with ``tag``; ``None`` if it is missing, unreadable or of other files."""
        try:
            with np.load(path, allow_pickle=False) as saved:
                if str(saved["tag"]) != tag:
                    return None
                vocab = {tuple(step): i + 1 for i, step in enumerate(json.loads(str(saved["steps"])))}
                lengths = {length: i + 1 for i, length in enumerate(json.loads(str(saved["lengths"])))}
                return cls(saved["full"], saved["start"], saved["offsets"], vocab, lengths,
                           [str(name) for name in saved["names"]], int(saved["k"]))
        except (OSError, KeyError, ValueError):
            return None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        """Bytes held by the index arrays."""
        return sum(a.nbytes for a in (self.full, self.start, self.offsets, self.keys, self.positions))

    def shared_run(self, abc: str) -> SharedRun:
        """The longest run of steps ``abc`` shares with any indexed tune (earliest tune on a tie)."""
        steps = run_steps(abc)
        full = np.array([self.vocab.get(s, 0) for s in steps], dtype=np.int64)
        start = np.array([self.lengths.get(s[1], 0) for s in steps], dtype=np.int64)
        if len(steps) < self.k:
            return SharedRun(0)
        hashes = _window_hashes(full, start, self.k)
        lo = np.searchsorted(self.keys, hashes, "left")
        hi = np.searchsorted(self.keys, hashes, "right")
        counts = hi - lo
        if not counts.any():
            return SharedRun(0)
        query = np.repeat(np.arange(len(hashes)), counts)
        first = np.cumsum(counts) - counts
        corpus = self.positions[np.arange(counts.sum()) - np.repeat(first, counts) + np.repeat(lo, counts)]
        return self._longest(full, start, query, corpus.astype(np.int64))

    def longest_shared_run(self, abc: str) -> tuple[int, str | None]:
        """``(length, name of the corpus tune)``; ``(0, None)`` when no run of :data:`RUN_BASE` is shared."""
        run = self.shared_run(abc)
        return run.length, run.name

    def _longest(self, full, start, query, corpus) -> SharedRun:
        """The longest streak of hits on one diagonal that the steps themselves confirm."""
        diagonal = corpus - query
        order = np.lexsort((query, diagonal))
        diagonal, query, corpus = diagonal[order], query[order], corpus[order]
        new = np.ones(len(query), dtype=bool)
        new[1:] = (diagonal[1:] != diagonal[:-1]) | (query[1:] != query[:-1] + 1)
        heads = np.flatnonzero(new)
        streaks = np.diff(np.append(heads, len(query)))
        # longest first, then the earliest corpus position: the same answer on every run
        for h in np.lexsort((corpus[heads], -streaks)):
            i, p = int(query[heads[h]]), int(corpus[heads[h]])
            length = int(streaks[h]) + self.k - 1
            if self._confirmed(full, start, i, p, length):
                tune = int(np.searchsorted(self.offsets, p, "right") - 1)
                return SharedRun(length, tune, self.name_of(tune), i, p - int(self.offsets[tune]))
        return SharedRun(0)

    def _confirmed(self, full, start, i, p, length) -> bool:
        """Compare the steps themselves, so a hash collision can never be reported as a copy.

        A streak that fails (one spurious hit in some 2^64 lookups) is skipped whole, so a
        collision could at worst hide a run, never invent one.
        """
        return bool(start[i] == self.start[p] and np.array_equal(full[i + 1:i + length], self.full[p + 1:p + length]))

    def name_of(self, tune: int) -> str:
        """A report's name for an indexed tune: ``'Title' (source)`` when the corpus file has a title."""
        name = self.names[tune]
        title = corpus_title(name)
        return f"'{title}' ({name})" if title else name


def _window_hashes(full: np.ndarray, start: np.ndarray, k: int) -> np.ndarray:
    """64-bit hash of every window of ``k`` steps: its first step by length, the rest whole."""
    n = len(full) - k + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = start[:n].astype(np.uint64)
    for t in range(1, k):
        h = h * _HIGH + full[t:t + n].astype(np.uint64)
    h ^= h >> np.uint64(31)  # spread the low bits the multiplier leaves regular
    return h


def _windows_inside_tunes(offsets: np.ndarray, total: int, k: int) -> np.ndarray:
    """True for every window start whose ``k`` steps all belong to one tune."""
    n = max(total - k + 1, 0)
    tune_end = np.repeat(offsets[1:], np.diff(offsets))[:n]
    return np.arange(n) + k <= tune_end


@functools.lru_cache(maxsize=256)
def corpus_title(source: str) -> str | None:
    """The ``T:`` of a corpus tune, read from music21's file (``"oneills1850/0001-0050.abc#7"``).

    The splits keep only the notes and a ``%source`` line; a report that names a copied tune by
    its title is read by people, so the title is looked up for the few tunes a report names.
    """
    m = re.fullmatch(r"([^/]+)/([^#/]+)#(\S*)", source)
    if not m:
        return None
    from tunesmith.music.corpus import corpus_dir

    path = corpus_dir() / m.group(1) / m.group(2)
    if not path.is_file():
        return None
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    for chunk in re.split(r"(?m)^(?=X:)", text):
        x = re.match(r"X:\s*(\S*)", chunk)
        if x and x.group(1) == m.group(3):
            title = re.search(r"(?m)^T:\s*(.+?)\s*$", chunk)
            return title.group(1) if title else None
    return None


@dataclass(frozen=True)
class Request:
    """What the caller asked for, in canonical spelling."""

    meter: str
    key: str
    rhythm: str | None

    @classmethod
    def from_header(cls, header: str) -> Request:
        """Read ABC header lines; a missing or unreadable ``M:`` or ``K:`` is a ``ValueError``."""
        fields = Header.from_abc(header)
        return cls(canonical_meter(fields.meter), canonical_key(fields.key),
                   _rhythm(fields.rhythm) if fields.rhythm else None)


@dataclass(frozen=True)
class Score:
    """How one candidate did.

    Attributes:
        index: the candidate's place in the request (0-based); ``label`` is ``A``, ``B``, ...
        bars: share of bars that fill the requested meter.
        bad_bars: ``(bar number, "overfull" or "short")`` per wrong bar, numbered as players count
            them: from 1, an opening pickup being bar 0.
        key_correlation: correlation of the pitch classes with the requested key's profile.
        meter, key, rhythm: what the candidate's ``M:``, ``K:``, ``R:`` say (``None`` if absent).
        meter_ok, key_ok, rhythm_ok: each as requested (no ``R:`` requested: any rhythm is fine).
        longest_run: steps of the longest run shared with a corpus tune (0: shorter than :data:`RUN_BASE`).
        run_with: the corpus tune of that run.
        novelty: 1 up to a :data:`STOCK_RUN`-step shared run, falling linearly to 0 at :data:`RUN_LENGTH`.
        total: the weighted sum of bars, header, key fit and novelty, 0..1.
        disqualified: why the candidate may not win, or ``None``.
        accepted: it would be accepted as the winner (see :data:`ACCEPT_BARS`).
        explanation: its faults; after :meth:`Critic.choose`, why it won or lost.
    """

    index: int
    label: str
    bars: float
    bad_bars: tuple[tuple[int, str], ...]
    key_correlation: float
    meter: str | None
    key: str | None
    rhythm: str | None
    meter_ok: bool
    key_ok: bool
    rhythm_ok: bool
    longest_run: int
    run_with: str | None
    novelty: float
    total: float
    disqualified: str | None
    accepted: bool
    explanation: str

    @property
    def header(self) -> float:
        """Share of the three header fields that are as requested."""
        return (self.meter_ok + self.key_ok + self.rhythm_ok) / 3


@dataclass(frozen=True)
class Verdict:
    """The critic's decision for one request.

    Attributes:
        winner: index of the chosen candidate, ``None`` when every candidate is disqualified.
        scores: one per candidate, in request order, explanations saying why each won or lost.
        accept: there is a winner and it meets the accept thresholds.
        report: the decision in a few lines of text.
    """

    winner: int | None
    scores: list[Score]
    accept: bool
    report: str

    @property
    def route(self) -> str:
        """``"accept"`` or ``"retry"``, for a pipeline to branch on."""
        return "accept" if self.accept else "retry"


class Critic:
    """Scores candidate tunes against a request; see the module docstring.

    Args:
        index: the novelty index, normally :meth:`NoveltyIndex.from_corpus` (built once, at load).
    """

    def __init__(self, index: NoveltyIndex):
        self.index = index

    @classmethod
    def from_corpus(cls) -> Critic:
        """A critic that compares against the whole corpus."""
        return cls(NoveltyIndex.from_corpus())

    def score(self, header: str, tunes: list[str]) -> list[Score]:
        """Score every candidate against the request ``header`` (ABC header lines).

        Raises:
            ValueError: the header lacks ``M:`` or ``K:`` or names no meter or key; no candidates.
        """
        request = Request.from_header(header)
        if not tunes:
            raise ValueError("no candidate tunes to score")
        return [self._score_one(request, i, abc) for i, abc in enumerate(tunes)]

    def choose(self, header: str, tunes: list[str]) -> Verdict:
        """Score the candidates and pick the best one that is not disqualified."""
        request = Request.from_header(header)
        scores = self.score(header, tunes)
        ranked = sorted(scores, key=_rank)
        winner = ranked[0] if ranked[0].disqualified is None else None
        explained = [replace(s, explanation=_why(s, winner)) for s in scores]
        accept = winner is not None and winner.accepted
        report = _report(request, explained, winner, accept)
        return Verdict(winner.index if winner else None, explained, accept, report)

    def _score_one(self, request: Request, index: int, abc: str) -> Score:
        fields, _ = split_tune(abc)
        _, symbols = read_tune(abc)
        checks = bar_checks(symbols, request.meter)
        bars_found = bars_of(symbols)
        first = 0 if bars_found and bars_found[0][0] < _bar_units(request.meter) and checks[0] else 1
        bad = tuple((n, "overfull" if fill > _bar_units(request.meter) else "short")
                    for n, ((fill, _, _), ok) in enumerate(zip(bars_found, checks), first) if not ok)
        bars = sum(checks) / len(checks) if checks else 0.0
        correlation = key_correlation(histogram_of(abc), request.key)
        meter, key, rhythm = fields.get("M"), fields.get("K"), fields.get("R") or None
        meter_ok = _same(canonical_meter, meter, request.meter)
        key_ok = _same(canonical_key, key, request.key)
        rhythm_ok = request.rhythm is None or (rhythm is not None and _rhythm(rhythm) == request.rhythm)
        run = self.index.shared_run(abc)
        novelty = min(1.0, max(0.0, (RUN_LENGTH - run.length) / (RUN_LENGTH - STOCK_RUN)))
        total = (BARS_WEIGHT * bars + HEADER_WEIGHT * (meter_ok + key_ok + rhythm_ok) / 3
                 + KEY_WEIGHT * max(correlation, 0.0) + NOVELTY_WEIGHT * novelty)
        disqualified = None
        if not checks:
            disqualified = "no notes"
        elif run.length >= RUN_LENGTH:
            disqualified = f"shares {_a(run.length)} {run.length}-note run with the corpus tune {run.name}"
        accepted = (disqualified is None and bars >= ACCEPT_BARS and correlation >= ACCEPT_KEY_CORRELATION
                    and meter_ok and key_ok and rhythm_ok)
        score = Score(index, _label(index), bars, bad, correlation, meter, key, rhythm, meter_ok, key_ok,
                      rhythm_ok, run.length, run.name, novelty, total, disqualified, accepted, "")
        return replace(score, explanation="; ".join(_faults(score, request)) or "no faults")


def _rank(score: Score):
    """Qualified first, then the higher total, then the earlier candidate (a deterministic tie-break)."""
    return (score.disqualified is not None, -round(score.total, 9), score.index)


def _label(index: int) -> str:
    return chr(ord("A") + index) if index < 26 else f"#{index + 1}"


def _rhythm(value: str) -> str:
    """A tune type in one spelling (``"Double Jig"`` -> ``"jig"``); unknown types lower-cased."""
    return rhythm_name(value) or " ".join(value.lower().replace("-", " ").split())


def _same(canonical, value: str | None, wanted: str) -> bool:
    """``value`` in canonical spelling equals ``wanted``; an unreadable value never does."""
    if value is None:
        return False
    try:
        return canonical(value) == wanted
    except (NormaliseError, ValueError):
        return False


def _bar_units(meter: str):
    """Eighths in a full bar of ``meter``."""
    return meter_length(meter) / UNIT


def _faults(score: Score, request: Request) -> list[str]:
    """What is wrong with a candidate by itself, worst first."""
    faults = []
    if score.disqualified:
        faults.append(score.disqualified)
    if not score.meter_ok:
        faults.append(f"meter {score.meter or 'missing'}, asked {request.meter}")
    if not score.key_ok:
        faults.append(f"key {score.key or 'missing'}, asked {request.key}")
    if not score.rhythm_ok:
        faults.append(f"rhythm {score.rhythm or 'missing'}, asked {request.rhythm}")
    faults += _bar_faults(score.bad_bars)
    if score.key_correlation < ACCEPT_KEY_CORRELATION:
        faults.append(f"key fit {score.key_correlation:.2f} with {request.key} (below {ACCEPT_KEY_CORRELATION})")
    return faults


def _bar_faults(bad: tuple[tuple[int, str], ...]) -> list[str]:
    """``bar 5 overfull``, ``bars 3, 7 short``, ``bars 1, 2, 3 and 9 more overfull``."""
    out = []
    for kind in ("overfull", "short"):
        numbers = [str(n) for n, k in bad if k == kind]
        if not numbers:
            continue
        shown = ", ".join(numbers[:3]) + (f" and {len(numbers) - 3} more" if len(numbers) > 3 else "")
        out.append(f"bar{'s' if len(numbers) > 1 else ''} {shown} {kind}")
    return out


def _why(score: Score, winner: Score | None) -> str:
    """Why a candidate won or lost, against the winner."""
    if winner is None or score.disqualified:
        return score.explanation
    if score.index == winner.index:
        return f"won with total {score.total:.3f}" + ("" if score.explanation == "no faults" else f"; {score.explanation}")
    reasons = [] if score.explanation == "no faults" else [score.explanation]
    if not reasons:
        reasons = _worse_than(score, winner)
    if not reasons or round(score.total, 9) == round(winner.total, 9):
        return f"tied with {winner.label} ({score.total:.3f}); the earlier candidate wins a tie"
    return "; ".join(reasons) + f"; total {score.total:.3f} vs {winner.total:.3f}"


def _worse_than(score: Score, winner: Score) -> list[str]:
    """The criteria on which a fault-free loser fell behind the winner."""
    out = []
    if score.bars < winner.bars:
        out.append(f"bars right {score.bars:.0%} vs {winner.bars:.0%}")
    if score.key_correlation < winner.key_correlation:
        out.append(f"key fit {score.key_correlation:.2f} vs {winner.key_correlation:.2f}")
    if score.novelty < winner.novelty:
        out.append(f"{_run_text(score.longest_run)} ({score.run_with}; winner {winner.longest_run or 'none'})")
    return out


def _run_text(length: int) -> str:
    if length < RUN_BASE:
        return f"shares no run of {RUN_BASE} notes with the corpus"
    return f"shares {_a(length)} {length}-note run with the corpus"


def _a(number: int) -> str:
    """The article a report needs before a number: "an 8-note run", "a 52-note run"."""
    return "an" if str(number).startswith("8") or number in (11, 18) else "a"


def _report(request: Request, scores: list[Score], winner: Score | None, accept: bool) -> str:
    """The verdict as text: the request, the winner and the route, then each loser and why."""
    asked = f"M:{request.meter} K:{request.key}" + (f" R:{request.rhythm}" if request.rhythm else "")
    lines = [f"request {asked}, {len(scores)} candidate{'s' if len(scores) != 1 else ''}"]
    if winner is None:
        lines.append(f"no winner: every candidate shares a run of {RUN_LENGTH} notes or more with the corpus "
                     "(or has no notes) -> retry")
    else:
        best = scores[winner.index]
        route = "accept" if accept else "retry (below the accept thresholds)"
        lines.append(f"winner {best.label}: {best.explanation}; bars right {best.bars:.0%}, key fit "
                     f"{best.key_correlation:.2f}, {_run_text(best.longest_run)} -> {route}")
    for score in scores:
        if winner is None or score.index != winner.index:
            lines.append(f"{score.label} lost: {score.explanation}")
    return "\n".join(lines)


INDEX_FILE = "novelty-index.npz"
"""The corpus index's file, beside the corpus splits (see :meth:`NoveltyIndex.from_corpus`)."""


@functools.lru_cache(maxsize=2)
def _corpus_index(k: int) -> NoveltyIndex:
    from tunesmith.music.corpus import SPLITS, ensure_splits, read_split

    folder = ensure_splits()
    digest = hashlib.sha256(f"k={k};steps=1".encode())
    for split in SPLITS:
        digest.update((folder / f"{split}.abc").read_bytes())
    tag = digest.hexdigest()
    path = folder / INDEX_FILE
    index = NoveltyIndex.load(path, tag)
    if index is not None:
        return index
    tunes = [abc for split in SPLITS for abc in read_split(split, folder)]
    names = []
    for n, abc in enumerate(tunes):
        m = _SOURCE_RE.search(abc)
        names.append(m.group(1) if m else f"corpus tune {n + 1}")
    index = NoveltyIndex.build(tunes, names, k)
    if all(isinstance(part, (int, str)) for step in index.vocab for part in step):  # what JSON gives back
        try:
            index.save(path, tag)
        except OSError:  # a read-only corpus folder: index again next time
            pass
    return index


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m tunesmith.generator.critic``, index the corpus for the novelty check now
    (``make setup`` runs it) rather than at a critic's first load."""
    import argparse

    argparse.ArgumentParser(description="Index the corpus for the critic's novelty check.").parse_args(argv)
    index = NoveltyIndex.from_corpus()
    print(f"{len(index)} tunes indexed, {index.nbytes / 1e6:.1f} MB, in {INDEX_FILE} beside the corpus")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
