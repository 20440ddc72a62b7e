"""One real gateway for the monitoring tests: the prompt monitor of notebook 3.7 (the prompt encoder with
the drift detector as a side step) and a small A/B experiment, so every metric family has series."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tunesmith import paths
from tunesmith.serving.launcher import free_port

STARTUP_S = 300
EXPERIMENT = """\
apiVersion: mlops.seldon.io/v1alpha1
kind: Experiment
metadata:
  name: gen-ab
spec:
  candidates:
    - name: tune-generator-v1
      weight: 50
    - name: tune-generator-v2
      weight: 50
"""
MODELS = ("prompt-encoder", "drift-detector", "tune-generator-v1", "tune-generator-v2")


@dataclass
class Platform:
    http_url: str
    metrics_url: str  # MLServer's metrics port
    mlserver_log: Path
    request_log: Path


def monitoring_manifests(platform_models: Path, folder: Path) -> Path:
    """The platform's own manifests for the prompt monitor and both generator versions, plus an A/B Experiment."""
    source = platform_models.parent / "manifests"
    if not (source / "pipelines" / "prompt-monitor.yaml").exists():
        pytest.skip("the platform has no prompt-monitor pipeline (notebook 3.7 writes it)")
    for sub, names in {"servers": None, "models": MODELS, "pipelines": ("prompt-monitor",)}.items():
        (folder / sub).mkdir(parents=True)
        for path in sorted((source / sub).glob("*.yaml")):
            if names is None or path.stem in names:
                shutil.copy(path, folder / sub / path.name)
    (folder / "experiments").mkdir()
    (folder / "experiments" / "gen-ab.yaml").write_text(EXPERIMENT)
    return folder


@pytest.fixture(scope="session")
def monitored_platform(platform_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("monitoring")
    manifests = monitoring_manifests(Path(platform_models), folder / "manifests")
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    name = f"pytest-monitoring-{http_port}"
    log = folder / "gateway.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tunesmith", "gateway", "--manifests", str(manifests), "--models", str(platform_models),
             "--name", name, "--http-port", str(http_port), "--grpc-port", str(grpc_port),
             "--metrics-port", str(metrics_port), "--request-log", str(folder / "requests.sqlite")],
            stdout=out, stderr=subprocess.STDOUT, cwd=paths.REPO)
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if requests.get(f"{url}/v2/pipelines/prompt-monitor/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"the gateway was not ready in {STARTUP_S} s:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield Platform(url, f"http://127.0.0.1:{metrics_port}", paths.RUN / f"{name}-mlserver" / "mlserver.log",
                       folder / "requests.sqlite")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for run in (paths.RUN / name, paths.RUN / f"{name}-mlserver"):
            shutil.rmtree(run, ignore_errors=True)


def prompt_body(prompt: str) -> dict:
    return {"inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [1], "data": [prompt]}]}


def generate(platform: Platform, seed: int, bars: int = 2, arm: str | None = None) -> requests.Response:
    """One call to the gen-ab experiment: a tune from one of the two generator versions (``arm``, if
    given, as a sticky route names it; else the split chooses)."""
    headers = {"seldon-model": "gen-ab.experiment"}
    if arm is not None:
        headers["x-seldon-route"] = f":{arm}_1:"
    return requests.post(f"{platform.http_url}/v2/models/gen-ab/infer", headers=headers,
                         timeout=120, json={"inputs": [
                             {"name": "prompt", "datatype": "BYTES", "shape": [1], "data": ["a jig in G"]},
                             {"name": "seed", "datatype": "INT64", "shape": [1], "data": [seed]},
                             {"name": "bars", "datatype": "INT32", "shape": [1], "data": [bars]}]})
