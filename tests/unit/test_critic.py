"""The tune critic: exact longest shared runs, copies never win, faults are named, ties are stable."""

import random
import re

import pytest

from tunesmith import paths
from tunesmith.generator.critic import RUN_BASE, Critic, NoveltyIndex
from tunesmith.generator.model import TuneGenerator
from tunesmith.generator.quality import RUN_LENGTH, RunIndex, run_steps
from tunesmith.music.abc import BAR_TOKENS, Header, read_tune, render_tune, symbol_length
from tunesmith.music.pitch import transpose
from tunesmith.music.corpus import ensure_splits, read_split

CHECKPOINT = paths.CHECKPOINTS / "tune-generator"
JIG = Header(meter="6/8", key="D", rhythm="jig")
REQUEST = "X:1\nM:6/8\nL:1/8\nR:jig\nK:D"


@pytest.fixture(scope="module")
def critic():
    return Critic.from_corpus()


@pytest.fixture(scope="module")
def tunes():
    """Seeded tunes from the shipped generator: two jigs in D as asked, one in G, one reel."""
    gen = TuneGenerator.from_pretrained(CHECKPOINT, threads=1)
    headers = [JIG, JIG, Header(meter="6/8", key="G", rhythm="jig"), Header(meter="4/4", key="D", rhythm="reel")]
    return dict(zip(["jig", "jig2", "jig in G", "reel"], gen.generate(headers, [1, 2, 3, 4], bars=16)))


def _random_tune(rng: random.Random, n: int, lengths=("", "2")) -> list[str]:
    """``n`` natural notes in C with the given lengths, no bar lines (runs ignore them)."""
    return [rng.choice("CDEFGABcdefg") + rng.choice(lengths) for _ in range(n)]


def _abc(symbols: list[str], key: str = "C") -> str:
    return render_tune(Header(meter="4/4", key=key), symbols + ["|]"])


def _notes(symbols: list[str], n: int) -> list[str]:
    """The symbols up to and including the ``n``-th note or rest."""
    count = 0
    for i, symbol in enumerate(symbols):
        count += symbol_length(symbol) is not None
        if count == n:
            return symbols[:i + 1]
    raise ValueError(f"fewer than {n} notes")


def test_the_index_finds_the_longest_run_exactly_on_a_constructed_example():
    rng = random.Random(0)
    corpus = [_random_tune(rng, 40) for _ in range(3)]
    index = NoveltyIndex.build([_abc(s) for s in corpus], names=["one", "two", "three"])
    # the query is in F: 20 notes of "two" and 12 of "one", both transposed up a fourth, between
    # dotted notes that no corpus note matches, so neither copy can grow by a note
    moved = [transpose(Header(key="C"), s, 5)[1] for s in corpus]
    filler = _random_tune(rng, 3, lengths=("3",))
    query = _abc(filler + moved[1][10:30] + filler + moved[0][5:17] + filler, key="F")
    run = index.shared_run(query)
    assert (run.length, run.name, run.at, run.corpus_at) == (20, "two", 3, 10)
    assert index.longest_shared_run(query) == (20, "two")
    assert index.longest_shared_run(_abc(filler + moved[0][5:17] + filler, key="F")) == (12, "one")
    # the same answer as quality.RunIndex, which only says yes or no for one length
    corpus_abc = [_abc(s) for s in corpus]
    assert [query in RunIndex(corpus_abc, n=n) for n in (12, 19, 20, 21)] == [True, True, True, False]


def test_shorter_than_the_base_window_counts_as_no_shared_run():
    rng = random.Random(1)
    notes = _random_tune(rng, 30)
    index = NoveltyIndex.build([_abc(notes)])
    query = _abc(_random_tune(rng, 3, ("3",)) + notes[:RUN_BASE - 1] + _random_tune(rng, 3, ("3",)))
    assert index.longest_shared_run(query) == (0, None)


def test_the_index_agrees_with_run_index_on_real_tunes():
    ensure_splits()
    corpus = read_split("train")[:300]
    index = NoveltyIndex.build(corpus)
    # real tunes, and real tunes with the opening of an indexed tune spliced in
    queries = read_split("test")[:6]
    long_ones = [read_tune(t) for t in corpus if len(run_steps(t)) > 40]
    for n, query in enumerate(queries[:3]):
        symbols = read_tune(query)[1]
        header, own = long_ones[10 * n]  # read in the copied tune's key; bar lines reset accidentals
        queries.append(render_tune(header, symbols[:12] + ["|"] + _notes(own, 25 + 5 * n) + ["|"] + symbols[12:]))
    lengths = [index.shared_run(q).length for q in queries]
    assert max(lengths) >= 35
    for n in sorted({max(length, RUN_BASE) for length in lengths}):
        at_n, above = RunIndex(corpus, n=n), RunIndex(corpus, n=n + 1)
        for q, length in zip(queries, lengths):
            assert (q in at_n) == (length >= n)
            if length == n:
                assert q not in above


def test_a_saved_index_loads_back_equal_and_only_with_its_own_tag(tmp_path):
    ensure_splits()
    corpus = read_split("train")[:200]
    index = NoveltyIndex.build(corpus, names=[f"t{i}" for i in range(len(corpus))])
    path = tmp_path / "index.npz"
    index.save(path, "tag-a")
    loaded = NoveltyIndex.load(path, "tag-a")
    assert loaded is not None
    assert (loaded.vocab, loaded.lengths, loaded.names, loaded.k) == (index.vocab, index.lengths, index.names, index.k)
    assert all((getattr(loaded, a) == getattr(index, a)).all() for a in ("full", "start", "offsets", "keys", "positions"))
    query = read_split("test")[0]
    assert loaded.shared_run(query) == index.shared_run(query)
    assert NoveltyIndex.load(path, "tag-b") is None  # the corpus changed: build again
    path.write_bytes(b"not an npz")
    assert NoveltyIndex.load(path, "tag-a") is None
    assert NoveltyIndex.load(tmp_path / "missing.npz", "tag-a") is None


def test_a_corpus_tune_shares_its_whole_length_and_cannot_win(critic):
    tune = next(t for t in read_split("test") if "oneills1850" in t)
    header = read_tune(tune)[0].to_abc()
    [score] = critic.score(header, [tune])
    assert score.longest_run == len(run_steps(tune)) >= RUN_LENGTH
    assert score.novelty == 0.0
    assert re.match(rf"shares an? {score.longest_run}-note run with the corpus tune '.+' \(\S+#\S+\)$",
                    score.disqualified)
    verdict = critic.choose(header, [tune])
    assert verdict.winner is None and verdict.route == "retry"
    assert "no winner" in verdict.report


def test_a_transposed_60_note_copy_is_disqualified_and_the_new_tune_wins(critic, tunes):
    source = next(t for t in read_split("train") if "R:jig" in t and "K:G\n" in t and len(run_steps(t)) > 80)
    header, symbols = read_tune(source)
    _, moved = transpose(header, symbols, -5)  # G -> D, as the request asks
    copied = _notes(moved, 60)
    rest = read_tune(tunes["jig"])[1]
    copy = render_tune(JIG, copied + ["|"] + rest, title="Copy")
    verdict = critic.choose(REQUEST, [copy, tunes["jig"]])
    assert verdict.scores[0].longest_run >= 60
    assert verdict.scores[0].disqualified is not None
    assert verdict.winner == 1
    assert re.match(rf"shares an? {verdict.scores[0].longest_run}-note run with", verdict.scores[0].explanation)
    assert "A lost: shares a" in verdict.report


def test_a_copy_never_wins_even_against_a_much_worse_tune(critic, tunes):
    source = next(t for t in read_split("train") if "R:jig" in t and "K:G\n" in t)
    header, symbols = read_tune(source)
    copy = render_tune(JIG, transpose(header, symbols, -5)[1], title="Copy")
    verdict = critic.choose(REQUEST, [copy, tunes["reel"]])
    assert verdict.scores[0].total > verdict.scores[1].total
    assert verdict.scores[0].disqualified is not None
    assert verdict.winner == 1 and verdict.route == "retry"


def test_a_generated_tune_is_new_and_accepted(critic, tunes):
    verdict = critic.choose(REQUEST, [tunes["jig"]])
    [score] = verdict.scores
    assert score.disqualified is None and score.longest_run < RUN_LENGTH
    assert score.bars == 1.0 and score.key_correlation >= 0.6 and score.header == 1.0
    assert verdict.winner == 0 and verdict.route == "accept"


def test_a_tune_in_the_wrong_meter_loses_and_the_reason_is_named(critic, tunes):
    verdict = critic.choose(REQUEST, [tunes["reel"], tunes["jig"]])
    assert verdict.winner == 1
    reel = verdict.scores[0]
    assert not reel.meter_ok and not reel.rhythm_ok and reel.bars < 0.5
    assert "meter 4/4, asked 6/8" in reel.explanation and "overfull" in reel.explanation
    assert "rhythm reel, asked jig" in reel.explanation


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_a_tune_in_the_wrong_key_loses_wherever_it_stands(critic, tunes, order):
    candidates = [[tunes["jig in G"], tunes["jig"]][i] for i in order]
    verdict = critic.choose(REQUEST, candidates)
    wrong = order.index(0)
    assert verdict.winner == 1 - wrong
    assert "key G, asked D" in verdict.scores[wrong].explanation
    assert f"{'AB'[wrong]} lost: key G, asked D" in verdict.report


def test_an_overfull_bar_is_named_by_number(critic, tunes):
    header, symbols = read_tune(tunes["jig"])
    bar_lines = [i for i, s in enumerate(symbols) if s in BAR_TOKENS and not s.startswith("[")]
    broken = symbols[:bar_lines[4]] + ["A"] + symbols[bar_lines[4]:]  # one eighth too many before the 5th bar line
    tune = render_tune(header, broken, title="Broken")
    [score] = critic.score(REQUEST, [tune])
    assert symbols[0] not in BAR_TOKENS and symbols[1] == "|"  # the tune opens with a one-note pickup, bar 0
    assert score.bad_bars == ((4, "overfull"),)
    assert "bar 4 overfull" in score.explanation
    assert not score.accepted
    assert critic.choose(REQUEST, [tune, tunes["jig"]]).winner == 1


def test_ties_go_to_the_earlier_candidate_every_time(critic, tunes):
    first = critic.choose(REQUEST, [tunes["jig"], tunes["jig"]])
    again = critic.choose(REQUEST, [tunes["jig"], tunes["jig"]])
    assert first.winner == 0
    assert first.scores[0].total == first.scores[1].total
    assert "tied with A" in first.scores[1].explanation
    assert first == again


def test_the_better_of_two_good_tunes_wins_and_the_loser_is_told_why(critic, tunes):
    verdict = critic.choose(REQUEST, [tunes["jig"], tunes["jig2"]])
    winner, loser = verdict.scores[verdict.winner], verdict.scores[1 - verdict.winner]
    assert winner.total > loser.total
    assert f"total {loser.total:.3f} vs {winner.total:.3f}" in loser.explanation
    assert verdict.report.splitlines()[1].startswith(f"winner {winner.label}:")


def test_bad_requests_are_value_errors(critic, tunes):
    with pytest.raises(ValueError, match="M: and K:"):
        critic.score("X:1\nK:D", [tunes["jig"]])
    with pytest.raises(ValueError, match="key"):
        critic.score("M:6/8\nK:H", [tunes["jig"]])
    with pytest.raises(ValueError, match="no candidate"):
        critic.choose(REQUEST, [])


def test_a_candidate_without_notes_is_disqualified(critic, tunes):
    verdict = critic.choose(REQUEST, ["X:1\nM:6/8\nK:D\n", tunes["jig"]])
    assert verdict.scores[0].disqualified == "no notes"
    assert verdict.winner == 1
