"""Replicas for real: a Model with ``replicas: 2`` on two MLServer processes behind ``tunesmith gateway``.

One gateway serves the module: the synthesizer (cheap to call) with two replicas on a Server with
two, and a one-step pipeline over it, so pipeline steps (gRPC inside the gateway) are covered too.
Eight clients call it over REST, gRPC and the pipeline while one replica's MLServer is killed:
no call may fail, the replica must come back and answer again, and the metrics must say so.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tunesmith import paths
from tunesmith.serving.launcher import free_port
from tunesmith.workshop.bench_replicas import (
    SERVER,
    Traffic,
    kill_replica,
    metric_samples,
    replica_counts,
    replica_ready,
    replica_restarts,
    wait_until_ready,
)

pytestmark = [pytest.mark.server, pytest.mark.slow]

MANIFESTS = SERVER + """\
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata:
  name: synthesizer
spec:
  storageUri: gs://tunesmith-workshop/models/synthesizer
  requirements: [tunesmith]
  replicas: 2
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: play
spec:
  steps:
    - name: synthesizer
  output:
    steps: [synthesizer]
"""
TUNE = {"abc": "X:1\nT:Test\nM:4/4\nL:1/8\nK:D\n|:DFAd fdAF|GBdg fdAF:|\n", "tempo": 160}


class Running:
    def __init__(self, name: str, url: str, grpc_address: str, process: subprocess.Popen, log: Path):
        self.name, self.url, self.grpc_address, self.process, self.log = name, url, grpc_address, process, log


@pytest.fixture(scope="module")
def gateway(platform_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("replicas")
    (folder / "manifests").mkdir()
    (folder / "manifests" / "all.yaml").write_text(MANIFESTS)
    name = f"pytest-replicas-{free_port()}"
    http_port, grpc_port = free_port(), free_port()
    log = folder / "gateway.log"
    command = [sys.executable, "-m", "tunesmith", "gateway", "--manifests", str(folder / "manifests"),
               "--models", str(platform_models), "--name", name, "--http-port", str(http_port),
               "--grpc-port", str(grpc_port)]
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    running = Running(name, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", process, log)
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                ready = replica_ready(running.url)
                if ready == {"0": True, "1": True}:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        else:
            pytest.fail(f"the replicas were not ready within 150 s:\n{log.read_text()}")
        yield running
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=60)
        for run in paths.RUN.glob(f"{name}*"):
            shutil.rmtree(run, ignore_errors=True)


def send(gateway: Running, seconds: float) -> list:
    """Four REST and two gRPC clients of the model, two of the pipeline, for ``seconds``."""
    model = Traffic(gateway.url, "synthesizer", TUNE, rest_clients=4, grpc_clients=2, grpc_address=gateway.grpc_address)
    pipeline = Traffic(gateway.url, "synthesizer", TUNE, rest_clients=2, pipeline="play")
    with model, pipeline:
        time.sleep(seconds)
    return model.outcomes + pipeline.outcomes


def test_calls_are_spread_over_both_replicas(gateway):
    before = replica_counts(gateway.url, "synthesizer")
    outcomes = send(gateway, 2)
    after = replica_counts(gateway.url, "synthesizer")
    assert outcomes and all(o.ok for o in outcomes)
    assert {"rest", "grpc", "pipeline"} <= {o.protocol for o in outcomes}
    for replica in ("0", "1"):
        assert after.get(replica, 0) > before.get(replica, 0), (before, after)


def test_a_bad_request_is_answered_once_and_not_retried(gateway):
    retries = sum(v for _, v in metric_samples(gateway.url, "tunesmith_replica_retries_total"))
    reply = requests.post(f"{gateway.url}/v2/models/synthesizer/infer", timeout=30,
                          json={"inputs": [{"name": "tempo", "datatype": "INT32", "shape": [1], "data": [120]}]})
    assert reply.status_code == 400
    assert sum(v for _, v in metric_samples(gateway.url, "tunesmith_replica_retries_total")) == retries


def test_a_killed_replica_costs_no_request_and_comes_back(gateway):
    """Replica 0 (it also answers the server-wide calls) is SIGKILLed while 8 clients send."""
    restarts = replica_restarts(gateway.url, 0)
    model = Traffic(gateway.url, "synthesizer", TUNE, rest_clients=4, grpc_clients=2, grpc_address=gateway.grpc_address)
    pipeline = Traffic(gateway.url, "synthesizer", TUNE, rest_clients=2, pipeline="play")
    with model, pipeline:
        time.sleep(1.5)
        kill_replica(gateway.name, 0)
        time.sleep(3)
    outcomes = model.outcomes + pipeline.outcomes
    failed = [o for o in outcomes if not o.ok]
    assert not failed, failed[:5]
    assert sum(1 for o in outcomes if o.start > model.outcomes[0].start + 1.5) > 8  # traffic went on after the kill

    wait_until_ready(gateway.url, 0, restarts=restarts, timeout=120)
    assert gateway.process.poll() is None
    retries = {labels["server_replica"]: v for labels, v in metric_samples(gateway.url, "tunesmith_replica_retries_total")
               if labels["reason"] == "reset"}
    assert retries.get("0", 0) >= 1, retries  # requests caught by the kill went to replica 1
    up = {labels["server_replica"]: v for labels, v in metric_samples(gateway.url, "tunesmith_replica_up")}
    assert up == {"0": 1, "1": 1}

    before = replica_counts(gateway.url, "synthesizer")
    assert all(o.ok for o in send(gateway, 2))
    assert replica_counts(gateway.url, "synthesizer")["0"] > before["0"]  # back in rotation
    log = gateway.log.read_text()
    assert "MLServer replica 0 exited with code -9; restarting it." in log
    assert "MLServer replica 0 is back" in log
