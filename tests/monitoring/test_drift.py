"""The drift test itself, without a server: MMD with a permutation p-value, the sliding window, the prompts."""

from __future__ import annotations

import numpy as np
import pytest

from tunesmith.monitoring import drift


def unit_rows(rng: np.random.Generator, n: int, shift: float = 0.0, d: int = 16) -> np.ndarray:
    rows = rng.normal(size=(n, d))
    rows[:, 0] += shift
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def detector() -> drift.MMDDrift:
    return drift.MMDDrift(unit_rows(np.random.default_rng(0), 200), permutations=500)


def test_a_window_from_the_reference_distribution_is_not_drift(detector):
    rng = np.random.default_rng(1)
    p_values = [detector.test(unit_rows(rng, 20)).p_val for _ in range(10)]
    assert min(p_values) > detector.threshold
    assert np.mean(p_values) > 0.2


def test_a_shifted_window_is_drift_with_alibi_detects_names(detector):
    result = detector.test(unit_rows(np.random.default_rng(2), 20, shift=2.0))
    assert result.is_drift and result.p_val < result.threshold == drift.THRESHOLD
    assert result.p_val >= 1 / 501  # a permutation p-value is never 0
    assert set(result.to_dict()) == {"is_drift", "p_val", "distance", "threshold", "window", "tested"}


def test_the_same_window_gets_the_same_p_value(detector):
    window = unit_rows(np.random.default_rng(3), 20, shift=0.5)
    assert detector.test(window).p_val == detector.test(window).p_val


def test_the_monitor_tests_once_its_window_is_full_and_then_slides(detector):
    monitor = drift.DriftMonitor(detector, window=5)
    rng = np.random.default_rng(4)
    early = [monitor.observe(row) for row in unit_rows(rng, 4)]
    assert [r.tested for r in early] == [False] * 4 and [r.window for r in early] == [1, 2, 3, 4]
    assert all(r.p_val == 1.0 and not r.is_drift for r in early)
    full = monitor.observe(unit_rows(rng, 3))  # one request with three prompts: all three count
    assert full.tested and full.window == 5 and len(monitor.recent) == 5


def test_bad_shapes_are_refused_by_name(detector):
    with pytest.raises(ValueError, match="window must be"):
        detector.test(np.zeros((3, 7)))
    with pytest.raises(ValueError, match="reference must be"):
        drift.MMDDrift(np.zeros(5))
    with pytest.raises(ValueError, match="window must be at least 2"):
        drift.DriftMonitor(detector, window=1)


def test_reference_and_traffic_prompts_come_from_headers_and_are_reproducible():
    tunes = ["X:1\nM:6/8\nL:1/8\nR:jig\nK:D\n|:A|", "X:2\nM:3/4\nL:1/8\nK:Ador\n|:A|"]
    first = drift.prompts_from_headers(tunes, 30, seed=1)
    assert first == drift.prompts_from_headers(tunes, 30, seed=1) != drift.prompts_from_headers(tunes, 30, seed=2)
    assert any("jig" in p for p in first)


def test_off_distribution_kinds():
    assert len(drift.off_distribution("metal", 30)) == 30
    assert set(drift.off_distribution("speech", 12)) == set(drift.OFF_DISTRIBUTION["speech"])
    noise = drift.off_distribution("noise", 5, seed=3)
    assert noise == drift.off_distribution("noise", 5, seed=3) and all(noise)
    with pytest.raises(ValueError, match="unknown kind 'polka'"):
        drift.off_distribution("polka", 1)
