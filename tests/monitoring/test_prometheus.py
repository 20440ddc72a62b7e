"""A real Prometheus on the project's scrape config (monitoring/prometheus.yml) against a running gateway and
MLServer: every PromQL query of the Grafana dashboard returns data, and promtool accepts the alerting rules
and their unit tests."""

from __future__ import annotations

import shutil
import time

import pytest
import requests
from conftest import generate, prompt_body
from tunesmith.serving.launcher import free_port

from tunesmith.monitoring import drift, prometheus, quality

pytestmark = [pytest.mark.server, pytest.mark.slow]
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool is not installed (Debian: apt-get install prometheus)")
needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None,
                                      reason="prometheus is not installed (Debian: apt-get install prometheus)")


@needs_promtool
def test_promtool_accepts_the_rules_and_the_config():
    for args in (("check", "rules", str(prometheus.ALERTS)), ("check", "config", str(prometheus.CONFIG))):
        checked = prometheus.promtool(*args)
        assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_every_alert_fires_in_its_unit_test():
    tested = prometheus.promtool("test", "rules", str(prometheus.ALERT_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    rules = prometheus.ALERTS.read_text()
    for alert in ("ModelErrors", "SlowPipeline", "PromptDrift", "CopiedTunes"):
        assert f"alert: {alert}" in rules and f"alertname: {alert}" in prometheus.ALERT_TESTS.read_text()


def test_the_dashboard_queries_the_metrics_the_platform_exposes():
    queries = prometheus.dashboard_queries()
    assert len(queries) >= 10
    text = " ".join(expr for _, expr in queries)
    for family in ("seldon_model_infer_total", "seldon_pipeline_step_infer", "seldon_experiment_infer",
                   "model_infer_request_duration", "drift_p_value", "drift_alarm", "tunesmith_tune_quality"):
        assert family in text


def traffic(platform, seed: int) -> None:
    """Enough requests that every family has series: the prompt monitor past its first full window, a refused
    prompt, and both arms of the generator experiment (one request routed to each, so a 50/50 split
    cannot leave one out; with a refused request)."""
    for prompt in drift.reference_prompts(drift.WINDOW + 1, split="test", seed=seed):
        requests.post(f"{platform.http_url}/v2/pipelines/prompt-monitor/infer", json=prompt_body(prompt), timeout=60)
    bad = requests.post(f"{platform.http_url}/v2/models/prompt-encoder/infer", json=prompt_body("x" * 600), timeout=60)
    assert bad.status_code == 400
    for i, arm in enumerate((None, None, "tune-generator-v1", "tune-generator-v2")):
        assert generate(platform, seed=seed * 10 + i, arm=arm).status_code == 200
    assert generate(platform, seed=1, bars=999).status_code == 400


@needs_prometheus
def test_prometheus_scrapes_the_platform_and_every_dashboard_query_returns_data(monitored_platform):
    traffic(monitored_platform, seed=3)
    exporter_port = free_port()
    exporter = quality.serve(exporter_port, monitored_platform.request_log)
    config = prometheus.local_config(monitored_platform.http_url, monitored_platform.metrics_url,
                                     f"127.0.0.1:{exporter_port}", scrape_interval="1s")
    assert [job["job_name"] for job in config["scrape_configs"]] == ["seldon-gateway", "mlserver", "tune-quality"]
    try:
        with prometheus.Prometheus(config) as prom:
            prom.wait_for_scrapes(after=time.time())
            traffic(monitored_platform, seed=4)  # between scrapes, so rates are not all zero
            prom.wait_for_scrapes(after=time.time())
            empty = [f"{title}: {expr}" for title, expr in prometheus.dashboard_queries() if not prom.query(expr, wait=20)]
            assert not empty, "queries without data:\n" + "\n".join(empty)
            arms = {series["metric"]["arm"] for series in prom.query('tunesmith_tune_quality{experiment="gen-ab"}')}
            assert arms == {"tune-generator-v1", "tune-generator-v2"}
            loaded = [rule["name"] for group in prom.api("rules")["groups"] for rule in group["rules"]]
            assert {"ModelErrors", "PipelineErrors", "SlowPipeline", "SlowModel", "PromptDrift", "CopiedTunes"} <= set(loaded)
    finally:
        exporter.stop()
