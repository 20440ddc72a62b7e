"""The app's Monitor section reading a real gateway and MLServer: requests and errors per experiment arm,
latency per model and pipeline step, the drift p-value between readings, and the section's place in the app."""

from __future__ import annotations

import importlib
import sys

import pytest
import requests
from conftest import generate, prompt_body

from tunesmith import paths
from tunesmith.monitoring import drift

pytestmark = [pytest.mark.server, pytest.mark.ui]


def app_module(name: str):
    if str(paths.REPO) not in sys.path:
        sys.path.append(str(paths.REPO))
    return importlib.import_module(name)


def test_the_section_is_registered_and_waits_for_the_drift_detector():
    app = app_module("app.app")
    assert [label for label, _ in app.TABS][-1] == "Monitor"
    assert app_module("app.sections.monitor").NEEDS == ("drift-detector",)


def test_the_plots_show_arms_latency_drift_and_quality(monitored_platform, monkeypatch):
    monitor = app_module("app.sections.monitor")
    metrics_port = monitored_platform.metrics_url.rsplit(":", 1)[1]
    monkeypatch.setenv("METRICS_PORT", metrics_port)
    monkeypatch.setenv("TUNESMITH_REQUEST_LOG", str(monitored_platform.request_log))
    monitor._quality.cache_clear()
    assert monitor.metrics_urls(monitored_platform.http_url, True)[1] == f"http://127.0.0.1:{metrics_port}/metrics"
    history, *_ = monitor.refresh(monitored_platform.http_url, True, [])
    for prompt in drift.reference_prompts(drift.WINDOW + 2, split="test", seed=9):
        requests.post(f"{monitored_platform.http_url}/v2/pipelines/prompt-monitor/infer", json=prompt_body(prompt), timeout=60)
    for seed in range(3):
        assert generate(monitored_platform, seed=100 + seed).status_code == 200
    assert generate(monitored_platform, seed=1, bars=999).status_code == 400
    history, message, arms, rates, latency, drift_frame, quality, _votes = monitor.refresh(
        monitored_platform.http_url, True, history)
    monitor._quality.cache_clear()
    assert len(history) == 2
    assert "drift-detector` ran" in message
    assert any(arm.startswith("gen-ab: tune-generator-v") for arm in arms["arm"]) and "refused" in set(arms["result"])
    assert {"model drift-detector", "prompt-monitor / drift-detector", "prompt-monitor / prompt-encoder"} <= set(latency["where"])
    assert (rates["requests/s"] > 0).any()
    p_values = drift_frame[drift_frame["series"] == "p-value"]["p"]
    assert len(p_values) == 1 and 0 < p_values.iloc[0] <= 1
    scored = quality[quality["arm"].str.startswith("gen-ab: ")]
    assert set(scored["measure"]) == {"bars_right", "novel", "critic_score"}
    assert scored["mean"].between(0, 1).all() and scored["tunes"].sum() >= 3 * 3  # three measures per arm row


def test_its_buttons_send_prompts_through_the_prompt_monitor(monitored_platform):
    monitor = app_module("app.sections.monitor")
    line = monitor.send_prompts(monitored_platform.http_url, "speech", n=3)
    assert line.startswith("Sent 3 speech prompts through `prompt-monitor`"), line
    assert "did not answer" in monitor.send_prompts("http://127.0.0.1:9", "normal", n=1)
