"""Stage 3's three pipelines through a real gateway, on the manifests and model folders the notebooks write.

The session's ``platform_models`` fixture replays every notebook's ``materialize`` cells, so
``models/`` and the ``manifests/`` beside it are exactly what 3.1 and 3.2 write: ten Models (two of
them the prompt-encoder and critic folders again, with other parameters), the ``tunesmith`` Server
and the pipelines ``studio`` (a join of both generators judged by the critic), ``studio-retry``
(triggers and an ``any`` join) and ``hum`` (transcriber -> generator -> synthesizer).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal

import grpc
import httpx
import pytest
from mlserver.grpc import converters, dataplane_pb2_grpc
from mlserver.types import InferenceRequest
from test_gateway_server import start_gateway, wait_for

from tunesmith import paths
from tunesmith.audio import io as audio
from tunesmith.generator.critic import RUN_LENGTH, NoveltyIndex
from tunesmith.music.abc import Header
from tunesmith.serving.client import decode_outputs, encode_inputs
from tunesmith.serving.launcher import free_port
from tunesmith.transcriber.voice import excerpt_tune, voice_like

pytestmark = [pytest.mark.server, pytest.mark.slow]

PIPELINES = ["hum", "prompt-monitor", "studio", "studio-retry"]
KESH = "X:1\nT:The Kesh\nR:jig\nM:6/8\nL:1/8\nK:G\n|:G3 GAB|A3 ABd|edd gdd|edB dBA|G3 GAB|A3 ABd|edd gdB|AGF G3:|\n"


@pytest.fixture(scope="module")
def gateway(platform_models, tmp_path_factory):
    manifests = platform_models.parent / "manifests"
    name = f"pytest-pipelines-{os.getpid()}"
    http_port, grpc_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("pipelines") / "gateway.log"
    process = start_gateway(manifests, platform_models, name, log, http_port, grpc_port)
    url = f"http://127.0.0.1:{http_port}"
    try:
        for pipeline in PIPELINES:
            wait_for(f"{url}/v2/pipelines/{pipeline}/ready", process, log)
        yield url, f"127.0.0.1:{grpc_port}"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        for run in (paths.RUN / name, paths.RUN / f"{name}-mlserver"):
            shutil.rmtree(run, ignore_errors=True)


@pytest.fixture(scope="module")
def http(gateway):
    with httpx.Client(base_url=gateway[0], timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def stub(gateway):
    with grpc.insecure_channel(gateway[1], options=[("grpc.max_send_message_length", -1)]) as channel:
        yield dataplane_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def corpus():
    return NoveltyIndex.from_corpus()


def studio_request(seed: int, prompt: str = "a lively jig in D", bars: int = 8) -> dict:
    return {"inputs": [
        {"name": "prompt", "datatype": "BYTES", "shape": [1], "data": [prompt]},
        {"name": "seed", "datatype": "INT64", "shape": [1], "data": [seed]},
        {"name": "bars", "datatype": "INT32", "shape": [1], "data": [bars]},
    ]}


def tensors(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return {o["name"]: o["data"] for o in response.json()["outputs"]}


def grpc_call(stub, pipeline: str, inputs: dict) -> dict:
    request = InferenceRequest(inputs=encode_inputs(inputs, binary="raw"))
    message = converters.ModelInferRequestConverter.from_types(request, model_name="", model_version="")
    reply = stub.ModelInfer(message, metadata=(("seldon-model", f"{pipeline}.pipeline"),), timeout=120)
    return decode_outputs(converters.ModelInferResponseConverter.to_types(reply))


def inspect(http, pipeline: str, request_id: str, expr: str) -> list[dict]:
    """The messages of one topic (``<pipeline>.<step>.(inputs|outputs)``) for one request; [] if the step never ran."""
    body = http.get(f"/v2/pipelines/{pipeline}/inspect", params={"request_id": request_id, "expr": expr}).json()
    return [m["value"] for topic in body["topics"] for m in topic["msgs"]]


def test_the_notebooks_manifests_are_served(http):
    listing = {p["name"]: p for p in http.get("/v2/pipelines").json()["pipelines"]}
    assert sorted(listing) == PIPELINES and all(p["ready"] for p in listing.values())
    assert listing["studio"]["steps"] == ["brief", "tune-generator-v1", "tune-generator-v2", "tune-critic", "synthesizer"]
    for model in ("brief", "prompt-encoder", "tune-generator-v1", "tune-generator-v2", "tune-critic", "tune-critic-strict",
                  "synthesizer", "transcriber", "audio-fx", "style-classifier"):
        assert http.get(f"/v2/models/{model}/ready").status_code == 200, model


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_studio_judges_six_tunes_and_its_winner_copies_no_corpus_tune(http, corpus, seed):
    response = http.post("/v2/pipelines/studio/infer", json=studio_request(seed), headers={"x-request-id": f"studio-{seed}"})
    out = tensors(response)
    assert response.headers.get_list("x-seldon-route") == [
        ":brief_1:", ":tune-generator-v1_1:", ":tune-generator-v2_1:", ":tune-critic_1:", ":synthesizer_1:", ":studio.pipeline:"]
    (winner,) = out["abc"]
    assert len(out["scores"]) == 6 and out["report"][0].startswith("request M:6/8 K:D R:jig, 6 candidates")
    assert base64.b64decode(out["audio"][0])[:4] == b"RIFF"
    (sent,) = inspect(http, "studio", f"studio-{seed}", "studio.tune-critic.inputs")
    assert [t["name"] for t in sent["inputs"]] == ["header", "candidates", "candidates"]  # the join keeps both
    candidates = [tune for t in sent["inputs"][1:] for tune in t["data"]]
    assert winner in candidates and out["scores"][candidates.index(winner)] == max(out["scores"])
    assert corpus.shared_run(winner).length < RUN_LENGTH


def test_the_studio_over_grpc_and_the_header_form_give_the_same_tune(http, stub):
    rest = tensors(http.post("/v2/pipelines/studio/infer", json=studio_request(4)))
    by_header = tensors(http.post("/v2/models/studio/infer", json=studio_request(4), headers={"seldon-model": "studio.pipeline"}))
    over_grpc = grpc_call(stub, "studio", {"prompt": "a lively jig in D", "seed": 4, "bars": 8})
    assert by_header["abc"] == over_grpc["abc"] == rest["abc"]
    assert list(over_grpc["scores"]) == pytest.approx(rest["scores"])


def test_studio_retry_takes_both_branches(http, stub):
    branches = {}
    for seed in range(1, 9):
        response = http.post("/v2/pipelines/studio-retry/infer", json=studio_request(seed), headers={"x-request-id": f"retry-{seed}"})
        out = tensors(response)
        assert sorted(out) == ["abc", "audio"]
        strict = inspect(http, "studio-retry", f"retry-{seed}", "studio-retry.tune-critic-strict.outputs")[0]
        said = [t["name"] for t in strict["outputs"]]
        fallback = inspect(http, "studio-retry", f"retry-{seed}", "studio-retry.tune-critic.outputs")
        if "accept" in said:  # v2's best is good enough: v1 and the lenient critic never run
            branches[seed] = "accept"
            assert not fallback and not inspect(http, "studio-retry", f"retry-{seed}", "studio-retry.tune-generator-v1.outputs")
            assert out["abc"] == next(t["data"] for t in strict["outputs"] if t["name"] == "abc")
        else:  # the strict critic gave no tune: v1 wrote three more and the lenient critic chose among six
            branches[seed] = "retry"
            assert said == ["scores", "report", "retry"] and "below min_score 0.97" in strict["outputs"][1]["data"][0]
            assert ":tune-generator-v1_1:" in response.headers.get_list("x-seldon-route")
            (chosen,) = fallback
            assert out["abc"] == next(t["data"] for t in chosen["outputs"] if t["name"] == "abc")
            assert len(next(t["data"] for t in chosen["outputs"] if t["name"] == "scores")) == 6
    assert set(branches.values()) == {"accept", "retry"}, branches
    retried = next(seed for seed, branch in branches.items() if branch == "retry")
    assert grpc_call(stub, "studio-retry", {"prompt": "a lively jig in D", "seed": retried, "bars": 8})["abc"] == \
        tensors(http.post("/v2/pipelines/studio-retry/infer", json=studio_request(retried)))["abc"]


def hum_wav() -> bytes:
    return audio.encode_wav(voice_like(excerpt_tune(KESH, bars=8), seed=1, tempo=110), 22050)


def test_hum_continues_what_was_hummed_over_rest_and_grpc(http, stub):
    wav = hum_wav()
    body = {"inputs": [
        {"name": "audio", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(wav).decode()],
         "parameters": {"content_type": "base64"}},
        {"name": "seed", "datatype": "INT64", "shape": [1], "data": [1]},
    ]}
    response = http.post("/v2/pipelines/hum/infer", json=body, headers={"x-request-id": "hum-1"})
    out = tensors(response)
    (sent,) = inspect(http, "hum", "hum-1", "hum.tune-generator-v2.inputs")
    given = {t["name"]: t["data"][0] for t in sent["inputs"]}
    assert sorted(given) == ["abc_prefix", "header", "seed"]  # the tensorMap renamed the transcription
    assert Header.from_abc(out["abc"][0]) == Header.from_abc(given["header"])
    assert Header.from_abc(given["header"]).meter == "6/8"
    assert base64.b64decode(out["audio"][0])[:4] == b"RIFF"
    assert grpc_call(stub, "hum", {"audio": wav, "seed": 1})["abc"] == out["abc"]  # raw bytes over gRPC


def test_base64_text_not_labelled_so_is_refused_by_the_first_step(http):
    """Inside a pipeline a REST caller's text reaches the model as bytes: it must say it is base64."""
    body = {"inputs": [{"name": "audio", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(hum_wav()).decode()]},
                       {"name": "seed", "datatype": "INT64", "shape": [1], "data": [1]}]}
    response = http.post("/v2/pipelines/hum/infer", json=body)
    assert response.status_code == 400 and response.text.startswith("transcriber : ")



def test_a_third_party_v2_client_calls_the_studio_with_seldons_header(gateway, corpus):
    """tritonclient knows nothing of this project: the pipeline is a V2 model named by the header.
    (Over REST: tritonclient's gRPC module cannot share a process with MLServer's protos, which
    define the same ``inference`` package; the gRPC path is covered by the stub tests above.)"""
    import numpy as np
    import tritonclient.http as triton

    client = triton.InferenceServerClient(gateway[0].removeprefix("http://"), network_timeout=300.0)
    inputs = []
    for name, datatype, value in (("prompt", "BYTES", np.array([b"a lively jig in D"], dtype=object)),
                                  ("seed", "INT64", np.array([5], dtype=np.int64)),
                                  ("bars", "INT32", np.array([8], dtype=np.int32))):
        tensor = triton.InferInput(name, [1], datatype)
        tensor.set_data_from_numpy(value, binary_data=False)  # MLServer's V2 has no binary-data extension
        inputs.append(tensor)
    outputs = [triton.InferRequestedOutput(name, binary_data=False) for name in ("abc", "audio")]
    result = client.infer("studio", inputs, outputs=outputs, headers={"seldon-model": "studio.pipeline"})
    abc = result.as_numpy("abc")[0]
    abc = abc.decode() if isinstance(abc, bytes) else str(abc)
    assert "M:6/8" in abc and corpus.longest_shared_run(abc)[0] < RUN_LENGTH
    assert result.as_numpy("audio") is not None
