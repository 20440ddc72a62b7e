"""The gateway for real: ``tunesmith gateway`` on Seldon manifests, a real MLServer behind it, REST and gRPC.

One gateway process serves the whole module (MLServer takes ~20 s to load the models). Its
manifests are written here, the way stage 3 writes them: a Model per platform model folder, named
with the models URI (``gs://tunesmith-workshop/models/<folder>``, mapped to the platform's folder
by ``--models``), and a chain pipeline that reads top to bottom as the data flows::

    prompt-encoder  <- tune-chain.inputs.prompt
    tune-generator  <- prompt-encoder.outputs.header + tune-chain.inputs.seed, .bars    (inner join)
    synthesizer     <- tune-generator.outputs.abc + prompt-encoder.outputs.tempo      (inner join)
    output          <- synthesizer: audio, sample_rate
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import soundfile
from mlserver.codecs import Base64Codec, StringCodec
from mlserver.grpc import converters
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc
from mlserver.types import InferenceRequest, RequestInput, ResponseOutput

from tunesmith import paths
from tunesmith.serving.client import MusicClient
from tunesmith.serving.launcher import free_port, port_in_use

pytestmark = [pytest.mark.server, pytest.mark.slow]

PIPELINE = "tune-chain"
STEPS = ["prompt-encoder", "tune-generator", "synthesizer"]
MODELS = """\
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata:
  name: {name}
spec:
  storageUri: gs://tunesmith-workshop/models/{name}
"""
CHAIN = f"""\
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: {PIPELINE}
spec:
  steps:
    - name: prompt-encoder
      inputs: [{PIPELINE}.inputs.prompt]
    - name: tune-generator
      inputs: [prompt-encoder.outputs.header, {PIPELINE}.inputs.seed, {PIPELINE}.inputs.bars]
    - name: synthesizer
      inputs: [tune-generator.outputs.abc, prompt-encoder.outputs.tempo]
  output:
    steps: [synthesizer]
"""
STARTUP_S = 150


@dataclass
class Running:
    url: str
    grpc_address: str
    process: subprocess.Popen
    log: Path
    mlserver_url: str
    limit: int


def request_body(prompt: str = "a lively jig in D", seed: int = 7, bars: int = 4) -> dict:
    return {
        "inputs": [
            {"name": "prompt", "datatype": "BYTES", "shape": [1], "data": [prompt]},
            {"name": "seed", "datatype": "INT64", "shape": [1], "data": [seed]},
            {"name": "bars", "datatype": "INT32", "shape": [1], "data": [bars]},
        ]
    }


def output(body: dict, name: str) -> dict:
    return next(o for o in body["outputs"] if o["name"] == name)


def wav_of(body: dict) -> bytes:
    return Base64Codec.decode_output(ResponseOutput(**output(body, "audio")))[0]


def write_manifests(folder: Path, models: list[str], pipeline: str | None = CHAIN) -> Path:
    manifests = folder / "manifests"
    manifests.mkdir()
    (manifests / "models.yaml").write_text("---\n".join(MODELS.format(name=name) for name in models))
    if pipeline:
        (manifests / f"{PIPELINE}.yaml").write_text(pipeline)
    return manifests


def start_gateway(manifests: Path, models: Path, name: str, log: Path, http_port: int, grpc_port: int) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "tunesmith", "gateway", "--manifests", str(manifests), "--models", str(models),
        "--name", name, "--http-port", str(http_port), "--grpc-port", str(grpc_port),
    ]
    with open(log, "w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


def wait_for(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer 200 within {STARTUP_S} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def gateway(platform_models, tmp_path_factory) -> Running:
    folder = tmp_path_factory.mktemp("gateway")
    name = f"pytest-gateway-{os.getpid()}"
    http_port, grpc_port = free_port(), free_port()
    log = folder / "gateway.log"
    process = start_gateway(write_manifests(folder, STEPS), platform_models, name, log, http_port, grpc_port)
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_for(f"{url}/v2/pipelines/{PIPELINE}/ready", process, log)
        first = log.read_text()
        mlserver_url = re.search(r"MLServer loading on (\S+)", first).group(1)
        limit = int(re.search(r"requests up to (\d+) bytes", first).group(1))
        yield Running(url, f"127.0.0.1:{grpc_port}", process, log, mlserver_url, limit)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    assert code == 0, log.read_text()
    assert not port_in_use(int(mlserver_url.rsplit(":", 1)[1])), "MLServer outlived the gateway"
    for run in (paths.RUN / name, paths.RUN / f"{name}-mlserver"):
        shutil.rmtree(run, ignore_errors=True)


@pytest.fixture(scope="module")
def http(gateway):
    with httpx.Client(base_url=gateway.url, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def stub(gateway):
    with grpc.insecure_channel(gateway.grpc_address, options=[("grpc.max_send_message_length", -1)]) as channel:
        yield dataplane_pb2_grpc.GRPCInferenceServiceStub(channel)


# -- pipelines over REST ---------------------------------------------------------------------------
def test_a_pipeline_called_with_the_seldon_model_header(http):
    response = http.post(
        f"/v2/models/{PIPELINE}/infer",
        json=request_body(),
        headers={"seldon-model": f"{PIPELINE}.pipeline", "x-request-id": "req-header-form", "x-tenant": "folk"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == ""
    samples, rate = soundfile.read(io.BytesIO(wav_of(body)))
    assert rate == output(body, "sample_rate")["data"][0] and len(samples) > 0
    assert response.headers["x-request-id"] == "req-header-form"
    assert response.headers["x-pipeline-version"] == "1"
    assert response.headers["x-tenant"] == "folk"  # the caller's x-* headers travel and come back
    assert response.headers.get_list("x-seldon-route") == [f":{step}_1:" for step in STEPS] + [f":{PIPELINE}.pipeline:"]


def test_the_path_form_gives_the_same_tune(http):
    by_header = http.post(f"/v2/models/{PIPELINE}/infer", json=request_body(seed=3),
                          headers={"seldon-model": f"{PIPELINE}.pipeline"})
    by_path = http.post(f"/v2/pipelines/{PIPELINE}/infer", json=request_body(seed=3))
    by_model_path = http.post(f"/v2/models/{PIPELINE}.pipeline/infer", json=request_body(seed=3))
    for response in (by_header, by_path, by_model_path):
        assert response.status_code == 200, response.text
    assert wav_of(by_header.json()) == wav_of(by_path.json()) == wav_of(by_model_path.json())
    assert by_path.headers["x-request-id"] != by_header.headers["x-request-id"]  # a new id per request


def test_a_failing_step_answers_400_with_its_model_and_error(http):
    response = http.post(f"/v2/pipelines/{PIPELINE}/infer", json=request_body(prompt="x" * 600))
    assert response.status_code == 400
    assert response.text.startswith("prompt-encoder : rpc error: code = InvalidArgument desc = ")
    assert "at most 500" in response.text
    assert response.headers["x-seldon-step-status"] == "400"


def test_an_unknown_pipeline_is_404_and_lists_the_pipelines(http):
    response = http.post("/v2/pipelines/no-such-chain/infer", json=request_body())
    assert response.status_code == 404
    assert response.json()["error"] == f"pipeline no-such-chain not found; the manifests define: {PIPELINE}"
    assert http.get("/v2/pipelines/no-such-chain/ready").status_code == 404


def test_inspect_shows_every_steps_messages(http):
    response = http.post(f"/v2/pipelines/{PIPELINE}/infer", json=request_body(seed=5), headers={"x-request-id": "req-inspect"})
    assert response.status_code == 200, response.text
    everything = http.get(f"/v2/pipelines/{PIPELINE}/inspect", params={"request_id": "req-inspect"}).json()
    names = [topic["name"] for topic in everything["topics"]]
    for step in STEPS:
        assert f"seldon.default.model.{step}.inputs" in names and f"seldon.default.model.{step}.outputs" in names
    abc = http.get(f"/v2/pipelines/{PIPELINE}/inspect",
                   params={"request_id": "req-inspect", "expr": f"{PIPELINE}.tune-generator.outputs.abc"}).json()
    (message,) = abc["topics"][0]["msgs"]
    assert message["key"] == "req-inspect" and message["value"]["name"] == "abc"
    assert message["value"]["data"][0].startswith("X:")
    synth_inputs = http.get(f"/v2/pipelines/{PIPELINE}/inspect",
                            params={"request_id": "req-inspect", "expr": f"{PIPELINE}.synthesizer.inputs"}).json()
    sent = synth_inputs["topics"][0]["msgs"][0]["value"]
    assert [t["name"] for t in sent["inputs"]] == ["abc", "tempo"]  # the inner join of two steps' outputs
    bad = http.get(f"/v2/pipelines/{PIPELINE}/inspect", params={"expr": f"{PIPELINE}.no-step"})
    assert bad.status_code == 400 and "Failed to find step with name no-step" in bad.json()["error"]


def test_readiness_and_listing(http):
    assert http.get("/ready").status_code == 200
    assert http.get(f"/v2/pipelines/{PIPELINE}/ready").status_code == 200
    assert http.get(f"/v2/models/{PIPELINE}.pipeline/ready").status_code == 200
    assert http.get("/v2/models/synthesizer/ready").status_code == 200
    assert http.get("/v2/health/ready").status_code == 200
    listing = http.get("/v2/pipelines").json()["pipelines"]
    assert listing == [{"name": PIPELINE, "version": "1", "steps": STEPS, "ready": True}]


# -- models through the gateway --------------------------------------------------------------------
def test_a_model_call_passes_through_with_its_route(http):
    response = http.post("/v2/models/tune-generator/infer", json={"inputs": request_body()["inputs"][:2]},
                         headers={"x-request-id": "req-model"})
    assert response.status_code == 200, response.text
    assert response.json()["model_name"] == "tune-generator"
    assert response.headers["x-seldon-route"] == ":tune-generator_1:"
    assert response.headers["x-request-id"] == "req-model"
    meta = http.get("/v2/models/synthesizer").json()
    assert meta["name"] == "synthesizer" and [i["name"] for i in meta["inputs"]] == ["abc", "tempo", "instrument"]


def test_model_errors_pass_through_and_unknown_models_are_listed(http):
    bad = http.post("/v2/models/synthesizer/infer", json={"inputs": [{"name": "abc", "datatype": "BYTES", "shape": [1], "data": ["not ABC"]}]})
    assert bad.status_code == 400 and "error" in bad.json()
    unknown = http.post("/v2/models/no-such-model/infer", json=request_body())
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "Model no-such-model not found; the manifests define: prompt-encoder, synthesizer, tune-generator"


def test_the_music_client_works_against_the_gateway(gateway):
    with MusicClient(gateway.url) as client:
        abc = client.compose("a slow air in G", seed=2, bars=4)
        wav, rate = client.synthesize(abc)
        assert rate > 0 and wav[:4] == b"RIFF"
        reply = client.infer_request(f"{PIPELINE}.pipeline", InferenceRequest.model_validate(request_body(seed=9)))
        assert reply.model_name == "" and {o.name for o in reply.outputs} == {"audio", "sample_rate"}


# -- routing and refusals --------------------------------------------------------------------------
def test_routing_errors(http):
    bad = http.post("/v2/models/synthesizer/infer", json=request_body(), headers={"seldon-model": "a.b.c"})
    assert bad.status_code == 400 and bad.json()["error"] == "Bad or missing header seldon-model a.b.c"
    experiment = http.post("/v2/models/x/infer", json=request_body(), headers={"seldon-model": "ab-test.experiment"})
    assert experiment.status_code == 404
    assert experiment.json()["error"] == "experiment ab-test not found; the manifests define: none"
    assert http.post("/v2/repository/index", json={}).status_code == 404  # MLServer's admin API stays inside
    assert http.post("/v2/repository/models/synthesizer/unload").status_code == 404


def test_browser_requests_from_other_sites_are_refused(http):
    foreign = http.post(f"/v2/pipelines/{PIPELINE}/infer", json=request_body(), headers={"origin": "http://evil.example"})
    assert foreign.status_code == 403 and "cross-origin" in foreign.json()["error"]
    cross_site = http.post(f"/v2/pipelines/{PIPELINE}/infer", json=request_body(), headers={"sec-fetch-site": "cross-site"})
    assert cross_site.status_code == 403
    form = http.post(f"/v2/pipelines/{PIPELINE}/infer", content=b"a=1", headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    rebinding = http.get("/v2/pipelines", headers={"host": "evil.example"})
    assert rebinding.status_code == 400


def test_bodies_over_the_limit_are_refused_before_they_are_read(gateway):
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST /v2/pipelines/{PIPELINE}/infer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {gateway.limit + 1}\r\n\r\n".encode()
        )
        answer = sock.makefile("rb")
        status = answer.readline().decode()
        length = next(int(line.split(b":")[1]) for line in iter(answer.readline, b"\r\n")
                      if line.lower().startswith(b"content-length"))
        body = answer.read(length).decode()
    assert status.startswith("HTTP/1.1 413"), status
    assert f"limit of {gateway.limit} bytes" in body


# -- gRPC ------------------------------------------------------------------------------------------
def grpc_request(seed: int = 7, prompt: str = "a lively jig in D") -> InferenceRequest:
    prompt_input = StringCodec.encode_input("prompt", [prompt], use_bytes=True)
    prompt_input.shape = [1]
    return InferenceRequest(inputs=[
        prompt_input,
        RequestInput(name="seed", datatype="INT64", shape=[1], data=[seed]),
        RequestInput(name="bars", datatype="INT32", shape=[1], data=[4]),
    ])


def test_a_pipeline_over_grpc_with_seldon_model_metadata(stub, http):
    message = converters.ModelInferRequestConverter.from_types(grpc_request(seed=3), model_name="", model_version="")
    reply, call = stub.ModelInfer.with_call(
        message, metadata=(("seldon-model", f"{PIPELINE}.pipeline"), ("x-request-id", "req-grpc")), timeout=120
    )
    metadata = call.initial_metadata()
    assert ("x-request-id", "req-grpc") in metadata and ("x-pipeline-version", "1") in metadata
    assert [v for k, v in metadata if k == "x-seldon-route"] == [f":{s}_1:" for s in STEPS] + [f":{PIPELINE}.pipeline:"]
    response = converters.ModelInferResponseConverter.to_types(reply)
    audio = next(o for o in response.outputs if o.name == "audio")
    rest = http.post(f"/v2/pipelines/{PIPELINE}/infer", json=request_body(seed=3))
    assert Base64Codec.decode_output(audio)[0] == wav_of(rest.json())


def test_grpc_errors_are_mapped(stub, gateway):
    failing = converters.ModelInferRequestConverter.from_types(grpc_request(prompt="x" * 600), model_name="", model_version="")
    with pytest.raises(grpc.RpcError) as step_failed:
        stub.ModelInfer(failing, metadata=(("seldon-model", f"{PIPELINE}.pipeline"),), timeout=60)
    assert step_failed.value.code() == grpc.StatusCode.UNKNOWN
    assert step_failed.value.details().startswith("prompt-encoder : rpc error: code = InvalidArgument")
    with pytest.raises(grpc.RpcError) as unknown:
        stub.ModelInfer(failing, metadata=(("seldon-model", "nowhere.pipeline"),), timeout=10)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as no_route:
        stub.ModelInfer(failing, timeout=10)
    assert no_route.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    huge = pb.ModelInferRequest(model_name="synthesizer", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="abc", datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[b"x" * (gateway.limit + 1)]))])
    with pytest.raises(grpc.RpcError) as too_large:
        stub.ModelInfer(huge, timeout=30)
    assert too_large.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_models_over_grpc_pass_through(stub):
    message = converters.ModelInferRequestConverter.from_types(grpc_request(), model_name="tune-generator", model_version="")
    del message.inputs[2]  # the generator takes bars too, but keep the default here
    reply, call = stub.ModelInfer.with_call(message, timeout=60)  # no metadata: model_name routes
    assert reply.model_name == "tune-generator"
    assert ("x-seldon-route", ":tune-generator_1:") in call.initial_metadata()
    assert stub.ModelReady(pb.ModelReadyRequest(name="synthesizer"), timeout=10).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name=PIPELINE), metadata=(("seldon-model", f"{PIPELINE}.pipeline"),), timeout=10).ready
    with pytest.raises(grpc.RpcError) as missing:
        stub.ModelReady(pb.ModelReadyRequest(name="nowhere"), metadata=(("seldon-model", "nowhere.pipeline"),), timeout=10)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND and missing.value.details() == "Pipeline not found"
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
    assert stub.ModelMetadata(pb.ModelMetadataRequest(name="synthesizer"), timeout=10).name == "synthesizer"


# -- metrics and overhead --------------------------------------------------------------------------
def test_metrics_use_seldons_names(http):
    http.post(f"/v2/pipelines/{PIPELINE}/infer", json=request_body())
    text = http.get("/metrics").text
    assert f'seldon_pipeline_infer_total{{code="200",method_type="rest",pipeline="{PIPELINE}",server="pipeline-gateway"}}' in text
    assert re.search(r'seldon_model_infer_total\{code="OK",method_type="grpc",model="synthesizer",model_internal="synthesizer_1"', text)
    assert re.search(rf'seldon_pipeline_step_infer_total\{{code="OK",pipeline="{PIPELINE}",server="pipeline-gateway",step="tune-generator"\}}', text)
    assert "_created" not in text


def test_a_broken_manifest_stops_the_gateway_before_it_starts(tmp_path):
    (tmp_path / "bad.yaml").write_text(CHAIN.replace("inputs: [prompt-encoder.outputs.header", "input: [prompt-encoder.outputs.header"))
    result = subprocess.run([sys.executable, "-m", "tunesmith", "gateway", "--manifests", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert 'json: unknown field "input"' in result.stderr and "bad.yaml" in result.stderr


def test_a_taken_port_is_reported_before_anything_starts(gateway, tmp_path):
    http_port = int(gateway.url.rsplit(":", 1)[1])
    log = tmp_path / "second.log"
    process = start_gateway(write_manifests(tmp_path, ["synthesizer"], None), tmp_path, "pytest-taken-port", log,
                            http_port, free_port())
    assert process.wait(timeout=60) == 1
    assert f"port {http_port} is taken by another workshop server" in log.read_text()  # the first gateway's lock


def test_the_gateway_stops_when_its_mlserver_is_stopped(platform_models, tmp_path):
    """``make stop`` ends the MLServer with SIGTERM: the gateway ends too. (A killed one is restarted:
    tests/gateway/test_replicas.py.)"""
    name = f"pytest-gateway-alone-{os.getpid()}"
    http_port = free_port()
    log = tmp_path / "alone.log"
    process = start_gateway(write_manifests(tmp_path, ["synthesizer"], None), platform_models, name, log,
                            http_port, free_port())
    try:
        wait_for(f"http://127.0.0.1:{http_port}/v2/models/synthesizer/ready", process, log)
        os.kill(int((paths.RUN / f"{name}-mlserver" / "pid").read_text()), signal.SIGTERM)
        assert process.wait(timeout=30) == 1
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for run in (paths.RUN / name, paths.RUN / f"{name}-mlserver"):
            shutil.rmtree(run, ignore_errors=True)
    assert "MLServer replica 0 exited with code 0 (stopped); stopping the gateway." in log.read_text()
