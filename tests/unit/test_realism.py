"""Judging tunes against real ones: the statistics on small constructed inputs, the request-log
adapter on constructed records, and one small end-to-end run of ``tunesmith eval realism``."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest

from tunesmith.realism import judge, musical, samples
from tunesmith.realism.samples import Sample
from tunesmith.style.model import frechet_distance

JIG = """X:1
T:Pickup jig
M:6/8
L:1/8
R:jig
K:D
A | dfe dcB | (3ABA F D3 |]
"""
REEL = """X:1
T:Straight reel
M:2/2
L:1/8
R:reel
K:D
DEFG ABcd | dcBA GFED | DEFG ABcd | dcBA GFED |]
"""


def scale_tune(rhythm: str, start: int) -> str:
    """A reel or jig of running eighths, different for each ``start``."""
    notes = "CDEFGABcdefgab"
    meter, per_bar = ("2/2", 8) if rhythm == "reel" else ("6/8", 6)
    run = [notes[(start + i * (1 + start % 3)) % len(notes)] for i in range(per_bar * 4)]
    bars = [" ".join(run[i:i + per_bar]).replace(" ", "") for i in range(0, len(run), per_bar)]
    return f"X:1\nT:t{start}\nM:{meter}\nL:1/8\nR:{rhythm}\nK:C\n" + " | ".join(bars) + " |]\n"


def dull_tune(rhythm: str) -> str:
    """One note repeated: nothing like a real tune."""
    meter, bar = ("2/2", "C8") if rhythm == "reel" else ("6/8", "C6")
    return f"X:1\nT:dull\nM:{meter}\nL:1/8\nR:{rhythm}\nK:C\n" + " | ".join([bar] * 4) + " |]\n"


@pytest.fixture(scope="module")
def real():
    tunes = [scale_tune(r, i) for i in range(8) for r in ("reel", "jig")]
    return samples.from_tunes("real", tunes)


# --- features -------------------------------------------------------------------------------


def test_notes_know_their_length_and_place_in_the_bar():
    notes = musical.notes_of(JIG)
    assert notes[0].position == Fraction(5, 6)  # the pickup sits at the end of its bar
    assert [n.position for n in notes[1:4]] == [0, Fraction(1, 6), Fraction(1, 3)]
    triplet = notes[7:10]
    assert [n.length for n in triplet] == [Fraction(2, 3)] * 3
    assert notes[10].position == Fraction(1, 3)  # after the triplet's one quarter
    assert notes[0].pitch == 69 and notes[1].pitch == 74  # A, d


def test_features_of_a_straight_reel():
    notes = musical.notes_of(REEL)
    pcs = musical.pitch_class_histogram(notes)
    assert pcs.sum() == pytest.approx(1.0) and pcs[2] == pytest.approx(8 / 32)  # D or d, twice a bar
    assert musical.pitch_range(notes)[0] == 74 - 62
    intervals = musical.interval_histogram(notes)
    assert intervals.sum() == pytest.approx(1.0)
    assert intervals[musical.INTERVAL_LIMIT] == pytest.approx(3 / 31)  # the same note across each bar line
    lengths = musical.note_length_histogram(notes)
    assert lengths[musical.NOTE_LENGTHS.index(Fraction(1))] == 1.0
    onsets = musical.onset_pattern(notes)
    assert np.flatnonzero(onsets).tolist() == list(range(0, musical.ONSET_GRID, musical.ONSET_GRID // 8))
    assert onsets.max() == 1.0  # every bar has a note at each eighth


def test_feature_vectors_have_one_row_per_tune():
    vectors = musical.feature_vectors([JIG, REEL, REEL])
    assert list(vectors) == list(musical.FEATURES)
    assert vectors["pitch classes"].shape == (3, 12) and vectors["pitch range"].shape == (3, 1)
    assert vectors["onsets in the bar"].shape == (3, musical.ONSET_GRID)


# --- comparing distributions ----------------------------------------------------------------


def test_overlap_and_kl_of_the_same_and_of_different_distances():
    rng = np.random.default_rng(0)
    a, b = rng.normal(5, 1, 400), rng.normal(5, 1, 400)
    overlap, kl = musical.compare_distances(a, b)
    assert overlap > 0.9 and kl < 0.05
    far_overlap, far_kl = musical.compare_distances(a, rng.normal(9, 1, 400))
    assert far_overlap < 0.2 and far_kl > 1.0
    same = np.full(10, 3.0)  # every distance equal: still a finite answer
    assert musical.compare_distances(same, same)[0] == pytest.approx(1.0, abs=0.05)


def test_the_quick_frechet_distance_is_the_style_models():
    rng = np.random.default_rng(1)
    for n in (10, 60):
        a, b = rng.normal(size=(n, 48)), rng.normal(size=(n, 48)) * 1.2 + 0.3
        assert judge.frechet(a, b) == pytest.approx(frechet_distance(a, b), rel=1e-6)


def test_copies_within_a_set_are_found_in_any_key():
    from tunesmith.music.abc import read_tune, render_tune
    from tunesmith.music.pitch import transpose

    long_tune = scale_tune("reel", 1).replace("|]", "| " + " | ".join(["CDEF GABc"] * 6) + " |]")
    header, symbols = read_tune(long_tune)
    moved = render_tune(*transpose(header, symbols, 2))
    flags = judge.copies_each_other([long_tune, scale_tune("jig", 2), moved])
    assert flags.tolist() == [1.0, 0.0, 1.0]


# --- resampling and tests -------------------------------------------------------------------


def test_bootstrap_gives_an_interval_and_a_fixed_figure_a_point():
    x = np.arange(20)
    values = np.linspace(0, 1, 20)
    flags = np.zeros(20)
    rows = judge.bootstrap(lambda i: np.array([values[i].mean(), flags[i].mean()]), (x,), 200, 0)
    assert rows[0]["low"] < rows[0]["value"] < rows[0]["high"]
    assert rows[0]["se"] == pytest.approx(values.std() / math.sqrt(20), rel=0.3)
    assert rows[1]["low"] == rows[1]["high"] == 0.0


def test_permutation_test_tells_different_groups_from_alike_ones():
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.normal(0, 1, 30), rng.normal(1.5, 1, 30), rng.normal(0, 1, 30)])

    def statistic(x, y):
        return np.array([values[y].mean() - values[x].mean()])

    assert judge.permutation_pvalues(statistic, np.arange(30), np.arange(30, 60), 300, 0)[0] < 0.01
    assert judge.permutation_pvalues(statistic, np.arange(30), np.arange(60, 90), 300, 0)[0] > 0.05


def test_tunes_needed_follows_the_standard_error():
    # 1.96 + 0.84 standard errors must fit into the difference: (2.80 * 0.05 / 0.1)^2 = 1.96 times as many
    assert judge.tunes_needed(100, 0.1, 0.05) == 197
    assert judge.tunes_needed(100, -0.1, 0.05) == 197
    assert math.isinf(judge.tunes_needed(100, 0.0, 0.05))


# --- judging sets ---------------------------------------------------------------------------


def test_an_arm_that_is_the_real_tunes_scores_the_ceiling(real):
    copy = Sample("copy", list(real.tunes), list(real.rhythms), real.halves.copy())
    pool = judge.Pool(real, [copy])
    ceiling = pool.measures(pool.rows["real"], pool.rows["real"])
    assert np.allclose(pool.measures(pool.rows["copy"], pool.rows["real"]), ceiling, equal_nan=True)


def test_judge_prefers_the_arm_that_writes_like_the_real_tunes(real):
    like = samples.from_tunes("like", [scale_tune(r, i + 20) for i in range(8) for r in ("reel", "jig")])
    dull = samples.from_tunes("dull", [dull_tune(r) for _ in range(8) for r in ("reel", "jig")])
    report = judge.judge(real, [dull, like], resamples=40, seed=0)
    assert list(report["sets"]) == ["real", "dull", "like"]
    rows = {r["measure"]: r for r in report["ab"]["rows"]}
    overlaps = [rows[f"overlap: {f}"] for f in musical.FEATURES]
    assert all(r["difference"]["value"] > 0 for r in overlaps)  # like - dull: like overlaps the real tunes more
    assert sum(r["p"] < 0.05 for r in overlaps) >= 3
    assert all(r["closer"] in ("like", None) for r in rows.values())
    copied = report["sets"]["dull"]["values"][judge.NAMES.index("copies its own set (48-note run)")]
    assert copied["value"] == 0.0  # 4 bars of one note: shorter than a 48-note run


def test_the_verdict_names_the_arm_with_more_clear_wins():
    assert judge.verdict("v1", "v2", {"v1": 1, "v2": 4}, 9).startswith("v2 is closer to the real tunes: v2 is significantly closer on 4 of 14")
    assert judge.verdict("v1", "v2", {"v1": 2, "v2": 2}, 10).startswith("neither v1 nor v2")


# --- where tunes come from ------------------------------------------------------------------


def record(arm, status, outputs, experiment="ab"):
    return SimpleNamespace(arm=arm, status=status, outputs=outputs, experiment=experiment)


def test_tunes_are_read_from_request_log_records():
    records = [
        record("v1", 200, {"abc": [REEL]}),
        record("v1", 200, {"abc": [JIG, REEL]}),
        record("v1", 400, {"error": "bad key"}),
        record("v1", 200, {"report": "winner: candidate 1", "tunes": [JIG]}),
    ]
    sample = samples.from_records(records)
    assert sample.name == "v1"
    assert sample.tunes == [REEL, JIG, REEL, JIG]
    assert sample.rhythms == ["reel", "jig", "reel", "jig"]
    assert sample.halves.tolist() == [0, 0, 1, 1]


def test_arms_are_read_from_a_request_log():
    class Log:
        def records(self, experiment=None, arm=None, target=None):
            assert experiment == "ab"
            return [record("v1", 200, {"abc": [REEL]}), record("v2", 200, {"abc": [JIG]}), record(None, 200, {"abc": [JIG]})]

    arms = samples.arms_in_log(Log(), experiment="ab")
    assert list(arms) == ["v1", "v2"] and arms["v2"].tunes == [JIG]


def test_request_log_records_of_the_gateway(tmp_path):
    requestlog = pytest.importorskip("tunesmith.gateway.requestlog")
    log = requestlog.RequestLog(tmp_path / "requests.sqlite")
    for arm, tune in (("v1", REEL), ("v2", JIG), ("v2", REEL)):
        log.append(requestlog.Record(0.0, "id", "model", f"tune-generator-{arm}", "ab", arm, False, 200, 12.0,
                                     {"prompt": ["a reel"]}, {"abc": [tune]}))
    arms = samples.arms_in_log(log, experiment="ab")
    assert {name: len(s) for name, s in arms.items()} == {"v1": 1, "v2": 2}


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.slow
def test_make_eval_realism_prints_the_table_and_saves_the_plots(tmp_path, capsys):
    from tunesmith.realism import report

    result = report.main(["--per-rhythm", "2", "--bars", "8", "--resamples", "20", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "| overlap: pitch classes | higher |" in printed and "Verdict: " in printed
    assert list(result["sets"]) == ["real", "v1", "v2"]
    assert result["sets"]["real"]["n"] == 8  # two tunes of each rhythm, one in each half
    overlap = result["sets"]["v2"]["values"][judge.NAMES.index("overlap: intervals")]
    assert 0 < overlap["value"] <= 1 and overlap["low"] <= overlap["high"]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["ab"]["a"] == "v1" and len(saved["ab"]["rows"]) == len(judge.MEASURES)
    assert (tmp_path / "features.png").stat().st_size > 10_000 and (tmp_path / "measures.png").stat().st_size > 10_000


@pytest.mark.slow
def test_eval_realism_judges_the_arms_of_a_request_log(tmp_path, capsys):
    from tunesmith.gateway.requestlog import Record, RequestLog
    from tunesmith.realism import report

    log = RequestLog(tmp_path / "requests.sqlite")
    tunes = samples.reference(per_rhythm=2, bars=8).tunes  # real tunes stand in for the arms' answers
    for i, tune in enumerate(tunes * 2):
        arm = f"tune-generator-v{1 + i % 2}"
        log.append(Record(float(i), f"r{i}", "model", arm, "ab", arm, False, 200, 10.0, {}, {"abc": [tune]}))
    log.append(Record(99.0, "other", "model", "tune-generator-v1", "canary", "tune-generator-v1", False, 200, 10.0,
                      {}, {"abc": [JIG]}))
    log.close()  # committed, as a gateway's log is when another process reads it
    result = report.main(["--log", str(log.path), "--experiment", "ab", "--per-rhythm", "2", "--bars", "8",
                          "--resamples", "10", "--no-plots", "--no-listen", "--out", str(tmp_path / "out")])
    assert list(result["sets"]) == ["real", "tune-generator-v1", "tune-generator-v2"]
    assert [result["sets"][arm]["n"] for arm in ("tune-generator-v1", "tune-generator-v2")] == [8, 8]
    assert "Verdict: " in capsys.readouterr().out
