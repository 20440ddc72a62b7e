"""Seldon Experiments through a real gateway: the split, sticky sessions, mirrors, pipelines, live changes.

One gateway serves the module. Its Models are the synthesizer's folder three times (``synth-a``,
``synth-b``, ``synth-c``: a cheap model, so a thousand requests take seconds), two one-step
pipelines, and four Experiments, one per idea, as Seldon's ``samples/experiments/`` keeps them:
``split`` (70/30), ``shadow`` (a 100 % mirror), ``canary`` (``default``, 90/10, changed under
traffic) and ``plays`` (``resourceType: pipeline``). Every request lands in the request log, which
the tests read as stage 3's judge does; the last test kills the gateway outright (SIGKILL) and
finds every answered request in it.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import shutil
import signal
import time
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from mlserver.grpc import converters, dataplane_pb2_grpc
from mlserver.types import InferenceRequest
from scipy.stats import chisquare
from test_gateway_server import start_gateway, wait_for

from tunesmith import paths
from tunesmith.gateway import manifests, requestlog, routing
from tunesmith.gateway.experiments import Experiments, NoRoute, ReloadRefused
from tunesmith.serving.client import encode_inputs
from tunesmith.serving.launcher import free_port

MODEL = """\
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata:
  name: {name}
spec:
  storageUri: gs://tunesmith-workshop/models/synthesizer
"""
PIPELINE = """\
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: play-{arm}
spec:
  steps:
    - name: synth-{arm}
  output:
    steps: [synth-{arm}]
"""
EXPERIMENTS = {
    "split": {"candidates": [{"name": "synth-a", "weight": 70}, {"name": "synth-b", "weight": 30}]},
    "shadow": {"candidates": [{"name": "synth-a", "weight": 100}], "mirror": {"name": "synth-b", "percent": 100}},
    "canary": {"default": "synth-c", "candidates": [{"name": "synth-c", "weight": 90}, {"name": "synth-a", "weight": 10}]},
    "plays": {"resourceType": "pipeline", "candidates": [{"name": "play-a", "weight": 50}, {"name": "play-b", "weight": 50}]},
}  # fmt: skip
TUNE = "X:1\nM:4/4\nL:1/8\nK:C\nCEGc|\n"
BODY = {"inputs": [{"name": "abc", "datatype": "BYTES", "shape": [1], "data": [TUNE]}]}


def experiment_doc(name: str, spec: dict) -> dict:
    return {"apiVersion": manifests.API_VERSION, "kind": "Experiment", "metadata": {"name": name}, "spec": spec}


def write_manifests(folder: Path, experiments: dict = EXPERIMENTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "models.yaml").write_text("---\n".join(MODEL.format(name=f"synth-{x}") for x in "abc"))
    (folder / "pipelines.yaml").write_text("---\n".join(PIPELINE.format(arm=x) for x in "ab"))
    (folder / "experiments").mkdir(exist_ok=True)
    for name, spec in experiments.items():
        (folder / "experiments" / f"{name}.yaml").write_text(yaml.safe_dump(experiment_doc(name, spec), sort_keys=False))
    return folder


# -- without a server: the choices and the refusals ------------------------------------------------------
def test_a_default_that_a_pipeline_step_calls_is_refused(tmp_path):
    folder = write_manifests(tmp_path / "m", {"ab": {"default": "synth-a", "candidates": [
        {"name": "synth-a", "weight": 50}, {"name": "synth-b", "weight": 50}]}})  # fmt: skip
    with pytest.raises(manifests.ManifestError) as failure:
        manifests.load(folder)
    assert failure.value.field == "spec.default" and "pipeline steps call model synth-a" in failure.value.message
    assert manifests.load(folder, for_cluster=True).experiments["ab"].default == "synth-a"  # a cluster splits steps too


@pytest.mark.parametrize("spec, field, words", [
    ({"candidates": [{"name": "synth-a", "weight": 0}]}, "spec.candidates", "add up to 0"),
    ({"candidates": [{"name": "synth-x", "weight": 1}]}, "spec.candidates[0].name", "no Model synth-x"),
    ({"candidates": [{"name": "synth-a", "weight": 1}], "mirror": {"name": "play-a", "percent": 5}}, "spec.mirror.name",
     "no Model play-a"),
    ({"resourceType": "pipeline", "candidates": [{"name": "synth-a", "weight": 1}]}, "spec.candidates[0].name",
     "no Pipeline synth-a"),
])  # fmt: skip
def test_what_the_gateway_cannot_serve_is_refused_by_field(tmp_path, spec, field, words):
    with pytest.raises(manifests.ManifestError) as failure:
        manifests.load(write_manifests(tmp_path / "m", {"e": spec}))
    assert failure.value.field == field and words in failure.value.message


def test_sticky_routes_match_as_envoy_does_and_skip_the_mirror(tmp_path):
    experiments = Experiments(manifests.load(write_manifests(tmp_path / "m")), rng=random.Random(1))
    target = routing.Target("canary", "experiment")
    sticky = experiments.route(target, sticky=":synth-x_1:,:synth-a_1:")  # contains, among other entries
    assert (sticky.target.name, sticky.experiment, sticky.sticky) == ("synth-a", "canary", True)
    assert experiments.route(routing.Target("shadow", "experiment"), sticky=":synth-a_1:").mirror is None
    assert experiments.route(routing.Target("shadow", "experiment")).mirror == routing.Target("synth-b", "model")
    with pytest.raises(NoRoute, match="names none of its candidates"):
        experiments.route(target, sticky=":synth-b_1:")
    assert experiments.route(routing.Target("synth-b", "model")).experiment is None  # no default: untouched
    assert experiments.route(routing.Target("synth-c", "model")).experiment == "canary"  # the default's own name


def test_a_reload_changes_experiments_only(tmp_path):
    folder = write_manifests(tmp_path / "m")
    experiments = Experiments(manifests.load(folder))
    (folder / "experiments" / "split.yaml").write_text(yaml.safe_dump(experiment_doc("split", {
        "candidates": [{"name": "synth-a", "weight": 1}, {"name": "synth-b", "weight": 3}]})))  # fmt: skip
    assert experiments.reload() == ["experiment split changed: synth-a 25%, synth-b 75%"]
    (folder / "models.yaml").write_text((folder / "models.yaml").read_text().replace("synthesizer", "audio-fx", 1))
    with pytest.raises(ReloadRefused, match="Model manifests changed"):
        experiments.reload()
    assert experiments.describe()[3]["candidates"][1]["share"] == 0.75  # still served as before


# -- a real gateway -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gateway(platform_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("experiments")
    name = f"pytest-experiments-{os.getpid()}"
    http_port, grpc_port = free_port(), free_port()
    log, request_log = folder / "gateway.log", folder / "requests.sqlite"
    previous, os.environ[requestlog.ENV_PATH] = os.environ.get(requestlog.ENV_PATH), str(request_log)
    try:
        process = start_gateway(write_manifests(folder / "manifests"), platform_models, name, log, http_port, grpc_port)
    finally:
        os.environ.update({requestlog.ENV_PATH: previous} if previous else {})
    url = f"http://127.0.0.1:{http_port}"
    try:
        for pipeline in ("play-a", "play-b"):
            wait_for(f"{url}/v2/pipelines/{pipeline}/ready", process, log)
        wait_for(f"{url}/v2/models/synth-c/ready", process, log)
        yield url, f"127.0.0.1:{grpc_port}", folder / "manifests", requestlog.RequestLog(request_log), log, process
    finally:
        if process.poll() is None:  # the last test kills it outright
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        for run in (paths.RUN / name, paths.RUN / f"{name}-mlserver"):
            shutil.rmtree(run, ignore_errors=True)


@pytest.fixture(scope="module")
def http(gateway):
    with httpx.Client(base_url=gateway[0], timeout=60) as client:
        yield client


def logged(log: requestlog.RequestLog, count: int, **where) -> list[requestlog.Record]:
    """The gateway's records matching ``where``, once there are ``count`` (it commits on its own thread)."""
    deadline = time.monotonic() + 30
    while len(records := log.records(**where)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return records


async def _many(url: str, n: int, headers: dict, concurrency: int = 8) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> httpx.Response:
            async with gate:
                return await client.post("/v2/models/any/infer", json=BODY, headers={**headers, "x-request-id": f"r{i}"})

        return await asyncio.gather(*(one(i) for i in range(n)))




@pytest.mark.server
@pytest.mark.slow
def test_a_thousand_requests_split_70_30(gateway):
    url, _, _, log, *_ = gateway
    replies = asyncio.run(_many(url, 1000, {"seldon-model": "split.experiment"}))
    assert all(r.status_code == 200 for r in replies)
    routes = collections.Counter(r.headers["x-seldon-route"] for r in replies)
    assert set(routes) == {":synth-a_1:", ":synth-b_1:"}
    assert all(r.json()["model_name"] == r.headers["x-seldon-route"][1:-3] for r in replies)  # the arm answered
    observed = [routes[":synth-a_1:"], routes[":synth-b_1:"]]
    assert chisquare(observed, [700, 300]).pvalue > 0.001, observed
    records = logged(log, 1000, experiment="split")
    assert len(records) == 1000 and collections.Counter(r.arm for r in records) == {
        "synth-a": observed[0], "synth-b": observed[1]}
    assert records[0].inputs == {"abc": [TUNE]} and records[0].outputs["audio"][0]["bytes"] > 1000  # audio as a digest


@pytest.mark.server
@pytest.mark.slow
def test_sticky_sessions_over_rest_and_grpc(gateway, http):
    first = http.post("/v2/models/any/infer", json=BODY, headers={"seldon-model": "split.experiment"})
    route = first.headers["x-seldon-route"]
    for _ in range(15):
        again = http.post("/v2/models/any/infer", json=BODY, headers={"seldon-model": "split.experiment",
                                                                    "x-seldon-route": route})
        assert again.headers["x-seldon-route"] == route
    for _ in range(10):  # the 30 % arm, every time
        assert http.post("/v2/models/any/infer", json=BODY, headers={
            "seldon-model": "split.experiment", "x-seldon-route": ":synth-b_1:"}).json()["model_name"] == "synth-b"
    stale = http.post("/v2/models/any/infer", json=BODY, headers={"seldon-model": "split.experiment",
                                                                "x-seldon-route": ":synth-c_1:"})
    assert stale.status_code == 404 and "names none of its candidates" in stale.json()["error"]
    unknown = http.post("/v2/models/any/infer", json=BODY, headers={"seldon-model": "nope.experiment"})
    assert unknown.status_code == 404 and "canary, plays, shadow, split" in unknown.json()["error"]

    with grpc.insecure_channel(gateway[1]) as channel:
        stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(channel)
        message = converters.ModelInferRequestConverter.from_types(
            InferenceRequest(inputs=encode_inputs({"abc": TUNE}, binary="raw")), model_name="", model_version="")
        for _ in range(5):
            reply, call = stub.ModelInfer.with_call(message, timeout=60, metadata=[
                ("seldon-model", "split.experiment"), ("x-seldon-route", ":synth-b_1:")])
            assert dict(call.initial_metadata())["x-seldon-route"] == ":synth-b_1:" and reply.model_name == "synth-b"


@pytest.mark.server
@pytest.mark.slow
def test_the_mirror_is_called_and_logged_but_never_answers(gateway, http):
    log = gateway[3]
    for i in range(12):
        reply = http.post("/v2/models/any/infer", json=BODY, headers={"seldon-model": "shadow.experiment",
                                                                    "x-request-id": f"shadow-{i}"})
        assert reply.status_code == 200 and reply.headers["x-seldon-route"] == ":synth-a_1:"
        assert reply.json()["model_name"] == "synth-a"
    mirrored = logged(log, 12, experiment="shadow", arm="synth-b")
    assert len(mirrored) == 12 and all(r.mirror and r.status == 200 for r in mirrored)
    assert {r.request_id for r in mirrored} == {f"shadow-{i}" for i in range(12)}  # paired with what it shadowed
    answered = {r.request_id: r for r in log.records(experiment="shadow", arm="synth-a")}
    assert all(not r.mirror for r in answered.values())
    assert all(answered[r.request_id].outputs["audio"] == r.outputs["audio"] for r in mirrored)  # same model, same tune
    metrics = http.get("/metrics").text
    assert 'seldon_experiment_infer_total{arm="synth-b",code="OK",experiment="shadow",method_type="grpc",role="mirror"}' \
        in metrics


@pytest.mark.server
@pytest.mark.slow
def test_a_pipeline_experiment_and_a_default_model(http):
    routes = collections.Counter()
    for _ in range(24):
        reply = http.post("/v2/pipelines/any/infer", json=BODY, headers={"seldon-model": "plays.experiment"})
        assert reply.status_code == 200, reply.text
        entries = reply.headers.get_list("x-seldon-route")
        assert entries[0][1:-3] == entries[-1][1:-len(".pipeline:")].replace("play", "synth")  # the arm's own step
        routes[entries[-1]] += 1
    assert set(routes) == {":play-a.pipeline:", ":play-b.pipeline:"}
    sticky = http.post("/v2/pipelines/any/infer", json=BODY, headers={
        "seldon-model": "plays.experiment", "x-seldon-route": ":synth-b_1:,:play-b.pipeline:"})
    assert sticky.headers.get_list("x-seldon-route")[-1] == ":play-b.pipeline:"
    by_default = collections.Counter(http.post("/v2/models/synth-c/infer", json=BODY).headers["x-seldon-route"]
                                     for _ in range(20))
    assert by_default[":synth-c_1:"] > by_default[":synth-a_1:"]  # the default's own path goes through canary


@pytest.mark.server
@pytest.mark.slow
def test_a_canary_is_promoted_and_rolled_back_under_traffic(gateway, http):
    url, _, folder, *_ = gateway
    file = folder / "experiments" / "canary.yaml"
    original = file.read_text()

    def weights(a: int, c: int) -> str:
        return yaml.safe_dump(experiment_doc("canary", {"default": "synth-c", "candidates": [
            {"name": "synth-c", "weight": c}, {"name": "synth-a", "weight": a}]}), sort_keys=False)  # fmt: skip

    def served() -> dict:
        return {c["name"]: c["weight"] for c in http.get("/v2/experiments").json()["experiments"][0]["candidates"]}

    async def traffic() -> tuple[list, dict]:
        failures, phases, phase = [], collections.defaultdict(collections.Counter), ["90/10"]
        stop = asyncio.Event()
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:

            async def client_loop():
                while not stop.is_set():
                    started = phase[0]
                    reply = await client.post("/v2/models/synth-c/infer", json=BODY)
                    if reply.status_code != 200:
                        failures.append(reply.text)
                    phases[started][reply.headers.get("x-seldon-route")] += 1

            clients = [asyncio.create_task(client_loop()) for _ in range(4)]
            await asyncio.sleep(1)
            file.write_text(weights(100, 0))  # promote: picked up by the gateway's watch, no call needed
            phase[0] = "changing"
            deadline = time.monotonic() + 20
            while (await asyncio.to_thread(served)) != {"synth-c": 0, "synth-a": 100} and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            phase[0] = "0/100"
            await asyncio.sleep(1.5)
            file.write_text(original)  # roll back, applied at once by the reload endpoint
            phase[0] = "changing back"
            reloaded = await client.post("/v2/experiments/reload", json={})
            assert reloaded.status_code == 200 and reloaded.json()["changes"] == [
                "experiment canary changed: synth-c 90%, synth-a 10%"]
            phase[0] = "rolled back"
            await asyncio.sleep(1.5)
            stop.set()
            await asyncio.gather(*clients)
        return failures, phases

    try:
        failures, phases = asyncio.run(traffic())
    finally:
        file.write_text(original)
    assert failures == []
    assert set(phases["0/100"]) == {":synth-a_1:"}, phases
    assert phases["rolled back"][":synth-c_1:"] > phases["rolled back"][":synth-a_1:"], phases
    assert "reload: experiment canary changed: synth-c 0%, synth-a 100%" in gateway[4].read_text()


@pytest.mark.server
@pytest.mark.slow
def test_a_broken_edit_is_not_applied_and_serving_goes_on(gateway, http):
    file = gateway[2] / "experiments" / "split.yaml"
    original = file.read_text()
    try:
        file.write_text(original.replace("synth-b", "synth-x"))
        refused = http.post("/v2/experiments/reload", json={})
        assert refused.status_code == 400 and "no Model synth-x" in refused.json()["error"]
        assert http.post("/v2/models/any/infer", json=BODY, headers={"seldon-model": "split.experiment"}).status_code == 200
    finally:
        file.write_text(original)
    assert http.post("/v2/experiments/reload", json={}).status_code == 200


@pytest.mark.server
@pytest.mark.slow
def test_a_gateway_killed_outright_keeps_every_answered_request(gateway, http):
    """SIGKILL: no shutdown, no flush. Every request answered before it is in the log, but perhaps the last."""
    log, process = gateway[3], gateway[5]
    for i in range(20):
        assert http.post("/v2/models/synth-b/infer", json=BODY, headers={"x-request-id": f"kill-{i}"}).status_code == 200
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    kept = [r.request_id for r in log.records(target="synth-b") if r.request_id.startswith("kill-")]
    assert kept[:19] == [f"kill-{i}" for i in range(19)] and len(kept) >= 19  # at most the one in flight lost

