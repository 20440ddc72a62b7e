"""The finished platform served by a real ``mlserver start``, called over REST and gRPC.

These are the contracts stage 3's graphs and the UI rely on: tensor names, shapes, determinism.
"""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
import requests
import soundfile
from mlserver.codecs import Base64Codec, StringCodec
from mlserver.grpc import converters
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc
from mlserver.types import InferenceRequest, InferenceResponse, RequestInput

pytestmark = [pytest.mark.server, pytest.mark.slow]

PROMPTS = ["a lively jig in D major", "a slow waltz in A minor"]


def infer_rest(server, model: str, inputs: list[dict], version: str | None = None) -> requests.Response:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    return requests.post(server.http_url + path, json={"inputs": inputs}, timeout=60)


def prompt_inputs(prompts: list[str], seed: int = 7) -> list[dict]:
    return [
        {"name": "prompt", "datatype": "BYTES", "shape": [len(prompts)], "data": prompts},
        {"name": "seed", "datatype": "INT64", "shape": [1], "data": [seed]},
    ]


def output(body: dict, name: str) -> dict:
    return next(o for o in body["outputs"] if o["name"] == name)


def header(tune: str, field: str) -> str:
    return next(line[2:].strip() for line in tune.splitlines() if line.startswith(field + ":"))


def test_server_is_ready_with_both_models(platform_server):
    assert requests.get(platform_server.http_url + "/v2/health/ready", timeout=5).status_code == 200
    for model in ("tune-generator", "synthesizer"):
        ready = requests.get(f"{platform_server.http_url}/v2/models/{model}/ready", timeout=5)
        assert ready.status_code == 200, model
        meta = requests.get(f"{platform_server.http_url}/v2/models/{model}", timeout=5).json()
        assert meta["name"] == model


def test_generator_returns_one_complete_tune_per_prompt(platform_server):
    response = infer_rest(platform_server, "tune-generator", prompt_inputs(PROMPTS))
    assert response.status_code == 200, response.text
    abc = output(response.json(), "abc")
    assert abc["datatype"] == "BYTES" and abc["shape"] == [2]
    jig, waltz = abc["data"]
    for tune in (jig, waltz):
        for field in ("X", "T", "M", "L", "K"):
            assert header(tune, field)
    assert (header(jig, "M"), header(jig, "K")) == ("6/8", "D")
    assert (header(waltz, "M"), header(waltz, "K")) == ("3/4", "Am")


def test_same_prompt_and_seed_give_the_same_tune(platform_server):
    first = infer_rest(platform_server, "tune-generator", prompt_inputs(PROMPTS[:1], seed=11)).json()
    again = infer_rest(platform_server, "tune-generator", prompt_inputs(PROMPTS[:1], seed=11)).json()
    other = infer_rest(platform_server, "tune-generator", prompt_inputs(PROMPTS[:1], seed=12)).json()
    assert output(first, "abc")["data"] == output(again, "abc")["data"]
    assert output(first, "abc")["data"] != output(other, "abc")["data"]


def grpc_infer(server, request: InferenceRequest, model: str) -> InferenceResponse:
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(channel)
        message = converters.ModelInferRequestConverter.from_types(request, model_name=model, model_version=None)
        reply: pb.ModelInferResponse = stub.ModelInfer(message, timeout=60)
        return converters.ModelInferResponseConverter.to_types(reply)


def test_grpc_gives_the_same_tune_as_rest(platform_server):
    request = InferenceRequest(
        inputs=[
            StringCodec.encode_input("prompt", PROMPTS[:1], use_bytes=True),
            RequestInput(name="seed", datatype="INT64", shape=[1], data=[11]),
        ]
    )
    request.inputs[0].shape = [1]
    reply = grpc_infer(platform_server, request, "tune-generator")
    tunes = StringCodec.decode_output(next(o for o in reply.outputs if o.name == "abc"))
    rest = infer_rest(platform_server, "tune-generator", prompt_inputs(PROMPTS[:1], seed=11)).json()
    assert tunes == output(rest, "abc")["data"]


def wav_from_output(out: dict) -> bytes:
    """The synthesizer sends its WAV file base64-encoded (MLServer's ``base64`` content type)."""
    from mlserver.types import ResponseOutput

    return Base64Codec.decode_output(ResponseOutput(**out))[0]


def test_synthesizer_renders_a_generated_tune_as_wav(platform_server):
    tune = output(infer_rest(platform_server, "tune-generator", prompt_inputs(PROMPTS[:1])).json(), "abc")["data"][0]
    response = infer_rest(
        platform_server,
        "synthesizer",
        [
            {"name": "abc", "datatype": "BYTES", "shape": [1], "data": [tune]},
            {"name": "tempo", "datatype": "INT32", "shape": [1], "data": [120]},
            {"name": "instrument", "datatype": "BYTES", "shape": [1], "data": ["flute"]},
        ],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    rate = output(body, "sample_rate")["data"][0]
    samples, file_rate = soundfile.read(io.BytesIO(wav_from_output(output(body, "audio"))))
    assert file_rate == rate
    assert samples.ndim == 1 and len(samples) > rate  # more than a second of music
    assert np.isfinite(samples).all() and 0.05 < np.abs(samples).max() <= 1.0


TRITON_CALLER = """
import json, sys
import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

http_url, grpc_address, prompt_text = sys.argv[1:4]
prompt = np.array([prompt_text.encode()], dtype=np.object_)
seed = np.array([5], dtype=np.int64)

http = thttp.InferenceServerClient(http_url)
inputs = [thttp.InferInput("prompt", [1], "BYTES"), thttp.InferInput("seed", [1], "INT64")]
inputs[0].set_data_from_numpy(prompt, binary_data=False)
inputs[1].set_data_from_numpy(seed, binary_data=False)
out = [thttp.InferRequestedOutput("abc", binary_data=False)]
http_tune = http.infer("tune-generator", inputs, outputs=out).as_numpy("abc")[0]

client = tgrpc.InferenceServerClient(grpc_address)
inputs = [tgrpc.InferInput("prompt", [1], "BYTES"), tgrpc.InferInput("seed", [1], "INT64")]
inputs[0].set_data_from_numpy(prompt)
inputs[1].set_data_from_numpy(seed)
grpc_tune = client.infer("tune-generator", inputs).as_numpy("abc")[0]

as_text = lambda t: t.decode() if isinstance(t, bytes) else str(t)
print(json.dumps({"http": as_text(http_tune), "grpc": as_text(grpc_tune)}))
"""


def test_third_party_v2_client_tritonclient_http_and_grpc(platform_server):
    """The V2 protocol is not MLServer's own: NVIDIA Triton's client speaks it too.

    It runs in a process of its own, as a third-party caller would: tritonclient's gRPC stubs and
    MLServer's define the same ``inference`` protobuf package, which cannot be loaded twice into
    one process.
    """
    import json
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", TRITON_CALLER, platform_server.http_url.removeprefix("http://"),
         platform_server.grpc_address, PROMPTS[0]],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    tunes = json.loads(result.stdout.strip().splitlines()[-1])
    assert tunes["http"] == tunes["grpc"]
    assert tunes["http"].startswith("X:")
