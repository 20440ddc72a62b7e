"""The drift detector of notebook 3.7 served as a Model and run as a side step of the prompt-monitor pipeline,
through a real gateway: the caller's reply is the prompt encoder's alone, normal prompts stay quiet, a burst
of off-distribution prompts raises the alarm, and the verdict reaches the metrics and the log."""

from __future__ import annotations

import time

import pytest
import requests
from conftest import prompt_body
from prometheus_client.parser import text_string_to_metric_families

from tunesmith.monitoring import drift

pytestmark = [pytest.mark.server, pytest.mark.slow]
BURST_LIMIT = 12
"""Metal prompts within which the alarm must ring; `python -m tunesmith.monitoring.drift` measures 5-9."""


def verdict(platform, request_id: str, pipeline: str = "prompt-monitor") -> dict:
    """The drift detector's outputs for one request, from its outputs topic (``inspect``)."""
    for _ in range(100):
        topics = requests.get(f"{platform.http_url}/v2/pipelines/{pipeline}/inspect", timeout=10, params={
            "request_id": request_id, "expr": f"{pipeline}.drift-detector.outputs"}).json()["topics"]
        if topics and topics[0]["msgs"]:
            return {t["name"]: t["data"][0] for t in topics[0]["msgs"][0]["value"]["outputs"]}
        time.sleep(0.1)
    raise AssertionError(f"no drift-detector output for {request_id}")


def metric(platform, name: str) -> float:
    text = requests.get(f"{platform.metrics_url}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and s.labels.get("model_name") == "drift-detector")


def test_the_side_step_runs_but_the_reply_is_the_main_steps(monitored_platform):
    reply = requests.post(f"{monitored_platform.http_url}/v2/pipelines/prompt-monitor/infer", json=prompt_body("a reel in G"),
                          headers={"x-request-id": "side-1"}, timeout=60)
    direct = requests.post(f"{monitored_platform.http_url}/v2/models/prompt-encoder/infer", json=prompt_body("a reel in G"), timeout=60)
    assert reply.status_code == direct.status_code == 200, reply.text
    assert reply.json()["outputs"] == direct.json()["outputs"]
    assert reply.headers["x-seldon-route"] == ":prompt-encoder_1:, :prompt-monitor.pipeline:"
    assert set(verdict(monitored_platform, "side-1")) == {"is_drift", "p_val", "distance", "threshold", "window"}


def test_normal_prompts_stay_quiet_and_a_metal_burst_raises_the_alarm(monitored_platform):
    url = f"{monitored_platform.http_url}/v2/pipelines/prompt-monitor/infer"
    tested_before = metric(monitored_platform, "drift_p_value_count")
    quiet = []
    for i, prompt in enumerate(drift.reference_prompts(drift.WINDOW, split="test", seed=11)):
        requests.post(url, json=prompt_body(prompt), headers={"x-request-id": f"normal-{i}"}, timeout=60).raise_for_status()
        quiet.append(verdict(monitored_platform, f"normal-{i}"))
    assert quiet[-1]["window"] == drift.WINDOW and not any(v["is_drift"] for v in quiet)
    alarm_at = None
    for i, prompt in enumerate(drift.off_distribution("metal", BURST_LIMIT, seed=5), 1):
        requests.post(url, json=prompt_body(prompt), headers={"x-request-id": f"metal-{i}"}, timeout=60).raise_for_status()
        if verdict(monitored_platform, f"metal-{i}")["is_drift"]:
            alarm_at = i
            break
    assert alarm_at is not None, f"no alarm within {BURST_LIMIT} metal prompts"
    assert metric(monitored_platform, "drift_p_value_count") > tested_before
    assert metric(monitored_platform, "drift_alarm_sum") >= 1
    assert "drift-detector: drift in the last 20 prompts" in monitored_platform.mlserver_log.read_text()
