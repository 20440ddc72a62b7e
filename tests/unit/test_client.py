"""tunesmith.client against a real MLServer serving small stand-ins for the two stage-1 models.

The stand-ins (written into ``tmp_path``) follow the server contract exactly (input names,
datatypes, base64 WAV output, 400 with a message for bad input) but compute nothing: the generator
writes a fixed tune titled with the prompt and as many bars as asked, the synthesizer a short sine
tone. That tests the client's encoding, decoding and error handling over real HTTP and gRPC
without waiting for trained models.
"""

from __future__ import annotations

import io
import json
import shutil
import textwrap

import numpy as np
import pytest
import soundfile

from tunesmith.client import (
    BadRequest,
    GrpcMusicClient,
    ModelNotReady,
    MusicClient,
    ServerUnavailable,
    decode_output,
    encode_input,
    grpc_infer,
)
from tunesmith.server import Server, free_port

pytestmark = pytest.mark.server

STUB_GENERATOR = '''
from mlserver import MLModel
from mlserver.codecs import StringCodec
from mlserver.types import InferenceRequest, InferenceResponse
from tunesmith.serving import read_scalar, read_strings


class StubGenerator(MLModel):
    """Writes a fixed jig titled with the prompt, ``bars`` bars long (default 8)."""

    async def load(self) -> bool:
        return True

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        prompts = read_strings(request, "prompt", max_items=8, max_chars=200)
        seed = read_scalar(request, "seed", kind=int, default=0)
        read_scalar(request, "temperature", kind=float, default=1.0, low=0, high=5, low_inclusive=False)
        bars = read_scalar(request, "bars", kind=int, default=8, low=1, high=64)
        tunes = []
        for i, prompt in enumerate(prompts):
            body = " ".join(["dfd cec|" if (b + seed) % 2 else "dfa agf|" for b in range(bars)])
            tunes.append(f"X:{i + 1}\\nT:{prompt}\\nM:6/8\\nL:1/8\\nK:D\\n{body}]\\n")
        return InferenceResponse(model_name=self.name, outputs=[StringCodec.encode_output("abc", tunes)])
'''

STUB_SYNTHESIZER = '''
import io

import numpy as np
import soundfile
from mlserver import MLModel
from mlserver.codecs import Base64Codec, NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from tunesmith.serving import BadInput, read_scalar, read_strings

RATE = 16000
INSTRUMENTS = ("fiddle", "flute", "whistle", "harp", "piano", "sine")


class StubSynthesizer(MLModel):
    """Plays one beat of a sine tone (longer at slower tempi), higher for each instrument."""

    async def load(self) -> bool:
        return True

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        (abc,) = read_strings(request, "abc", max_items=1, max_chars=20000)
        if "K:" not in abc:
            raise BadInput("input 'abc' has no K: (key) line")
        tempo = read_scalar(request, "tempo", kind=int, default=120, low=20, high=400)
        instrument = (read_strings(request, "instrument", max_items=1, max_chars=40, required=False) or ["fiddle"])[0]
        if instrument not in INSTRUMENTS:
            raise BadInput(f"input 'instrument' = {instrument!r} is unknown; choose one of {', '.join(INSTRUMENTS)}")
        seconds = 60.0 / tempo
        t = np.arange(int(RATE * seconds)) / RATE
        pitch = 440.0 * (1 + INSTRUMENTS.index(instrument))
        buffer = io.BytesIO()
        soundfile.write(buffer, (0.3 * np.sin(2 * np.pi * pitch * t)).astype("float32"), RATE, format="WAV")
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                Base64Codec.encode_output("audio", [buffer.getvalue()]),
                NumpyCodec.encode_output("sample_rate", np.asarray([RATE], dtype=np.int32)),
            ],
        )
'''


def write_stub_models(root):
    """Write the two stand-in model folders under ``root``; returns ``root``."""
    for name, module, cls, source in (
        ("tune-generator", "stub_generator", "StubGenerator", STUB_GENERATOR),
        ("synthesizer", "stub_synthesizer", "StubSynthesizer", STUB_SYNTHESIZER),
    ):
        folder = root / name
        folder.mkdir(parents=True)
        (folder / f"{module}.py").write_text(textwrap.dedent(source))
        settings = {"name": name, "implementation": f"{module}.{cls}"}
        (folder / "model-settings.json").write_text(json.dumps(settings))
    return root


@pytest.fixture(scope="module")
def stub_server(tmp_path_factory):
    models = write_stub_models(tmp_path_factory.mktemp("stub-models"))
    with Server(
        models_dir=models,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        name=f"test-client-{free_port()}",
    ) as server:
        yield server
    shutil.rmtree(server.run_dir, ignore_errors=True)  # merged settings and log of this run only


@pytest.fixture()
def client(stub_server):
    with MusicClient(stub_server.http_url, timeout=30) as c:
        yield c


@pytest.fixture()
def grpc_client(stub_server):
    with GrpcMusicClient(stub_server.grpc_address, timeout=30) as c:
        yield c


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


# -- encoding and decoding, no server --------------------------------------------------------------
def test_encode_input_follows_the_contract_datatypes():
    prompt = encode_input("prompt", ["a", "b"])
    assert (prompt.datatype, prompt.shape, list(prompt.data)) == ("BYTES", [2], ["a", "b"])
    assert encode_input("seed", 3).datatype == "INT64"
    temperature = encode_input("temperature", 0.5)
    assert (temperature.datatype, temperature.shape) == ("FP32", [1])
    assert encode_input("bars", np.asarray([8], dtype=np.int32)).datatype == "INT32"
    audio = encode_input("audio", b"RIFF\xff\x00")
    assert audio.parameters.content_type == "base64"
    assert audio.data[0] == "UklGRv8A"
    assert encode_input("audio", b"RIFF\xff\x00", binary="raw").data[0] == b"RIFF\xff\x00"
    with pytest.raises(TypeError, match="flag"):
        encode_input("flag", True)


def test_decode_output_reads_content_types():
    from mlserver.codecs import Base64Codec, NumpyCodec, StringCodec

    assert decode_output(StringCodec.encode_output("abc", ["X:1"])) == ["X:1"]
    assert decode_output(Base64Codec.encode_output("audio", [b"\xff\x00"], use_bytes=False)) == [b"\xff\x00"]
    rate = decode_output(NumpyCodec.encode_output("sample_rate", np.asarray([16000], dtype=np.int32)))
    assert rate.ravel().tolist() == [16000]


def test_url_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("TUNESMITH_SERVER_URL", "http://example.invalid:9999/")
    assert MusicClient().url == "http://example.invalid:9999"
    monkeypatch.delenv("TUNESMITH_SERVER_URL")
    assert MusicClient().url == "http://127.0.0.1:8080"


# -- a server that is not there ---------------------------------------------------------------------
def test_server_down_is_a_plain_message():
    url = closed_url()
    client = MusicClient(url, timeout=5)
    assert client.live() is False
    with pytest.raises(ServerUnavailable) as err:
        client.compose("a jig")
    assert str(err.value) == f"The inference server at {url} is not running. Start it with `make serve`."
    with pytest.raises(ServerUnavailable):
        client.model_ready("tune-generator")


def test_grpc_server_down_is_a_plain_message():
    address = f"127.0.0.1:{free_port()}"
    with GrpcMusicClient(address, timeout=5) as client:
        assert client.live() is False
        with pytest.raises(ServerUnavailable, match="make serve"):
            client.compose("a jig")


# -- REST against a real server ---------------------------------------------------------------------
def test_server_and_model_status(client):
    assert client.live() and client.ready()
    assert client.model_ready("tune-generator") is True
    assert client.model_ready("no-such-model") is False
    index = {m["name"]: m["state"] for m in client.models()}
    assert index == {"tune-generator": "READY", "synthesizer": "READY"}
    assert client.metadata("synthesizer")["name"] == "synthesizer"


def test_compose_returns_a_complete_tune(client):
    abc = client.compose("a lively jig in D", seed=1, temperature=0.8, bars=4)
    for header in ("X:", "T:a lively jig in D", "M:", "L:", "K:"):
        assert header in abc
    assert abc.count("|") == 4  # the bars input reached the model


def test_compose_many_keeps_prompt_order(client):
    prompts = ["a reel", "a slow air", "a hornpipe"]
    tunes = client.compose_many(prompts, seed=3)
    assert [t.splitlines()[1] for t in tunes] == [f"T:{p}" for p in prompts]


def test_synthesize_returns_a_wav_file(client):
    abc = client.compose("a jig")
    wav, rate = client.synthesize(abc, tempo=60, instrument="flute")
    samples, file_rate = soundfile.read(io.BytesIO(wav))
    assert rate == file_rate == 16000
    assert len(samples) == 16000  # one beat at 60 bpm: the tempo input reached the model


def test_bad_input_raises_the_servers_message(client):
    with pytest.raises(BadRequest) as err:
        client.compose("a jig", temperature=-1.0)
    assert err.value.status == 400
    assert "temperature" in str(err.value)
    with pytest.raises(BadRequest) as err:
        client.synthesize("X:1\nK:D\nabc|", instrument="theremin")
    assert str(err.value).startswith("input 'instrument' = 'theremin' is unknown")  # no error class name
    with pytest.raises(BadRequest, match="K:"):
        client.synthesize("not a tune")


def test_unknown_model_is_not_ready(client):
    with pytest.raises(ModelNotReady) as err:
        client.infer("no-such-model", {"prompt": "x"})
    assert err.value.name == "no-such-model"
    assert client.url in str(err.value)


def test_generic_infer_decodes_outputs(client):
    outputs = client.infer("synthesizer", {"abc": "X:1\nK:D\nabc|", "tempo": np.asarray([120], dtype=np.int32)})
    assert outputs["audio"][0][:4] == b"RIFF"
    assert np.ravel(outputs["sample_rate"]).tolist() == [16000]


# -- gRPC against the same server -------------------------------------------------------------------
def test_grpc_gives_the_same_answers_as_rest(client, grpc_client):
    assert grpc_client.live()
    assert grpc_client.model_ready("tune-generator") is True
    assert grpc_client.model_ready("no-such-model") is False
    assert {m["name"] for m in grpc_client.models()} == {"tune-generator", "synthesizer"}
    assert grpc_client.compose("a reel", seed=5, bars=3) == client.compose("a reel", seed=5, bars=3)
    wav, rate = grpc_client.synthesize("X:1\nK:D\nabc|", tempo=120)
    assert wav[:4] == b"RIFF" and rate == 16000


def test_grpc_errors(grpc_client):
    with pytest.raises(BadRequest, match="temperature"):
        grpc_client.compose("a jig", temperature=0.0)
    with pytest.raises(ModelNotReady):
        grpc_client.infer("no-such-model", {"prompt": "x"})


def test_grpc_infer_helper(stub_server):
    outputs = grpc_infer(stub_server.grpc_address, "tune-generator", {"prompt": ["a march"]})
    assert outputs["abc"][0].startswith("X:1")
