"""tunesmith.serving.client against a real MLServer serving small stand-ins for the music models.

The stand-ins (written into ``tmp_path``) follow the server contract exactly (input names,
datatypes, base64 WAV output, 400 with a message for bad input) but compute nothing: the generator
writes a fixed tune titled with the prompt and as many bars as asked (after the opening it is given,
if any), the synthesizer a short sine tone, the effects stand-in changes the length by the tempo
rate, the transcriber writes a fixed tune and the classifier gives fixed probabilities. That tests
the client's encoding, decoding and error handling over real HTTP and gRPC without waiting for
trained models.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import textwrap

import numpy as np
import pytest
import soundfile

from tunesmith.serving.client import (
    BadRequest,
    GrpcMusicClient,
    ModelNotReady,
    MusicClient,
    ServerUnavailable,
    decode_output,
    encode_input,
    grpc_infer,
)
from tunesmith.serving.launcher import Server, free_port

pytestmark = pytest.mark.server

STUB_GENERATOR = '''
from mlserver import MLModel
from mlserver.codecs import StringCodec
from mlserver.types import InferenceRequest, InferenceResponse
from tunesmith.serving.inputs import BadInput, read_scalar, read_strings


class StubGenerator(MLModel):
    """Writes a fixed jig titled with the prompt, ``bars`` bars long (default 8)."""

    async def load(self) -> bool:
        return True

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        headers = read_strings(request, "header", max_items=8, max_chars=200, required=False)
        prompts = headers or read_strings(request, "prompt", max_items=8, max_chars=200)
        seed = read_scalar(request, "seed", kind=int, default=0)
        read_scalar(request, "temperature", kind=float, default=1.0, low=0, high=5, low_inclusive=False)
        bars = read_scalar(request, "bars", kind=int, default=8, low=1, high=64)
        prefixes = read_strings(request, "abc_prefix", max_items=8, max_chars=2000, required=False, allow_empty=True)
        if prefixes and len(prefixes) != len(prompts):
            raise BadInput(f"input 'abc_prefix' has {len(prefixes)} values for {len(prompts)} rows")
        tunes = []
        for i, prompt in enumerate(prompts):
            opening = prefixes[i].strip() + " " if prefixes and prefixes[i] else ""
            body = " ".join(["dfd cec|" if (b + seed) % 2 else "dfa agf|" for b in range(bars)])
            title = prompt.replace("\\n", " ")
            tunes.append(f"X:{i + 1}\\nT:{title}\\nM:6/8\\nL:1/8\\nK:D\\n{opening}{body}]\\n")
        return InferenceResponse(model_name=self.name, outputs=[StringCodec.encode_output("abc", tunes)])
'''

STUB_SYNTHESIZER = '''
import io

import numpy as np
import soundfile
from mlserver import MLModel
from mlserver.codecs import Base64Codec, NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from tunesmith.serving.inputs import BadInput, read_scalar, read_strings

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


STUB_EFFECTS = '''
import io

import numpy as np
import soundfile
from mlserver import MLModel
from mlserver.codecs import Base64Codec, NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from tunesmith.serving.inputs import BadInput, read_bytes, read_scalar


class StubEffects(MLModel):
    """Plays the audio faster or slower by dropping or repeating samples, and applies the gain."""

    async def load(self) -> bool:
        return True

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        data = read_bytes(request, "audio", max_bytes=10_000_000)
        rate = read_scalar(request, "tempo_rate", kind=float, default=1.0, low=0.5, high=2.0)
        gain = read_scalar(request, "gain_db", kind=float, default=0.0, low=-24, high=24)
        try:
            samples, sr = soundfile.read(io.BytesIO(data), dtype="float32")
        except Exception as exc:
            raise BadInput(f"input 'audio': not an audio file ({exc})") from None
        index = np.arange(int(len(samples) / rate)) * rate
        out = samples[index.astype(int)] * 10 ** (gain / 20)
        buffer = io.BytesIO()
        soundfile.write(buffer, out, sr, format="WAV")
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                Base64Codec.encode_output("audio", [buffer.getvalue()]),
                NumpyCodec.encode_output("sample_rate", np.asarray([sr], dtype=np.int32)),
            ],
        )
'''

STUB_TRANSCRIBER = '''
import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse
from tunesmith.serving.inputs import read_bytes


class StubTranscriber(MLModel):
    """Hears the same two bars in every recording."""

    async def load(self) -> bool:
        return True

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        read_bytes(request, "audio", max_bytes=10_000_000)
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                StringCodec.encode_output("abc", ["X:1\\nT:Heard\\nM:4/4\\nL:1/8\\nQ:1/4=96\\nK:G\\nGABc d2B2|c2A2 G4|]\\n"]),
                NumpyCodec.encode_output("confidence", np.asarray([0.75], dtype=np.float32)),
                NumpyCodec.encode_output("tempo", np.asarray([96], dtype=np.int32)),
                StringCodec.encode_output("key", ["G"]),
                StringCodec.encode_output("meter", ["4/4"]),
            ],
        )
'''

STUB_CLASSIFIER = '''
import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from tunesmith.serving.inputs import read_byte_items


class StubClassifier(MLModel):
    """Always hears a jig (the class names are declared in model-settings.json); the embedding is
    the file's size, so each row can be told apart."""

    async def load(self) -> bool:
        return True

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        files = read_byte_items(request, "audio", max_bytes=10_000_000, max_items=8)
        probabilities = np.tile(np.asarray([0.1, 0.7, 0.15, 0.05], dtype=np.float32), (len(files), 1))
        embedding = np.asarray([[len(f), 1.0] for f in files], dtype=np.float32)
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output("probabilities", probabilities),
                     NumpyCodec.encode_output("embedding", embedding)],
        )
'''

STUB_LABELS = ["reel", "jig", "hornpipe", "slip jig"]


def write_stub_models(root):
    """Write the stand-in model folders under ``root``; returns ``root``."""
    for name, module, cls, source in (
        ("tune-generator", "stub_generator", "StubGenerator", STUB_GENERATOR),
        ("synthesizer", "stub_synthesizer", "StubSynthesizer", STUB_SYNTHESIZER),
        ("audio-fx", "stub_effects", "StubEffects", STUB_EFFECTS),
        ("transcriber", "stub_transcriber", "StubTranscriber", STUB_TRANSCRIBER),
        ("style-classifier", "stub_classifier", "StubClassifier", STUB_CLASSIFIER),
    ):
        folder = root / name
        folder.mkdir(parents=True)
        (folder / f"{module}.py").write_text(textwrap.dedent(source))
        settings = {"name": name, "implementation": f"{module}.{cls}"}
        if name == "tune-generator":
            settings["inputs"] = [{"name": n, "datatype": t, "shape": [s]} for n, t, s in (
                ("prompt", "BYTES", -1), ("header", "BYTES", -1), ("seed", "INT64", 1), ("temperature", "FP32", 1),
                ("bars", "INT32", 1), ("abc_prefix", "BYTES", 1))]
        if name == "style-classifier":
            settings["outputs"] = [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 4],
                                    "parameters": {"labels": STUB_LABELS}}]
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
    assert index == dict.fromkeys(["tune-generator", "synthesizer", "audio-fx", "transcriber", "style-classifier"], "READY")
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


def _tone(seconds: float = 1.0, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    t = np.arange(int(rate * seconds)) / rate
    soundfile.write(buffer, (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), rate, format="WAV")
    return buffer.getvalue()


def test_compose_continues_an_opening(client):
    assert "abc_prefix" in client.model_inputs("tune-generator")
    abc = client.compose("a jig", bars=2, abc_prefix="ABc def|")
    assert abc.splitlines()[-1].startswith("ABc def| ")
    tunes = client.compose_many(["a jig", "a reel"], bars=1, abc_prefix="ABc def|")  # one opening per row
    assert all(t.splitlines()[-1].startswith("ABc def| ") for t in tunes)
    first, second = client.compose_many(["a jig", "a reel"], bars=1, abc_prefix=["ABc def|", ""])
    assert "ABc" in first and "ABc" not in second


def test_compose_from_header_lines(client):
    abc = client.compose(header="X:1 M:6/8 K:D", bars=1)  # the header goes instead of a prompt
    assert "T:X:1 M:6/8 K:D" in abc
    assert client.compose_many(None, headers=["X:1", "X:2"], bars=1)[1].startswith("X:2\nT:X:2")
    with pytest.raises(ValueError, match="exactly one"):
        client.compose("a jig", header="X:1")
    with pytest.raises(ValueError, match="exactly one"):
        client.compose()


def test_effects_return_a_wav_file(client):
    wav, rate = client.effects(_tone(1.0), tempo_rate=2.0, gain_db=-6.0)
    samples, file_rate = soundfile.read(io.BytesIO(wav))
    assert rate == file_rate == 16000
    assert len(samples) == 8000  # twice as fast: half as long
    with pytest.raises(BadRequest, match="tempo_rate"):
        client.effects(_tone(0.1), tempo_rate=5.0)
    with pytest.raises(BadRequest, match="unknown effect setting.*'reverb_mx'"):
        client.effects(_tone(0.1), reverb_mx=0.5)
    with pytest.raises(BadRequest, match="not an audio file"):
        client.effects(b"this is not audio")
    with pytest.raises(TypeError, match="bytes"):
        client.effects("tone.wav")


def test_transcribe_returns_abc_and_its_facts(client):
    heard = client.transcribe(_tone(0.5))
    assert heard["abc"].startswith("X:1") and "K:G" in heard["abc"]
    assert (heard["key"], heard["meter"], heard["tempo"]) == ("G", "4/4", 96)
    assert heard["confidence"] == pytest.approx(0.75)


def test_classify_names_every_class(client):
    probabilities = client.classify(_tone(0.5))
    assert list(probabilities) == ["jig", "hornpipe", "reel", "slip jig"]  # most likely first
    assert sum(probabilities.values()) == pytest.approx(1.0)


def test_classify_many_gives_each_recording_its_row(client):
    short, long = _tone(0.1), _tone(0.5)
    probabilities, embeddings = client.classify_many([short, long])
    assert [list(p) for p in probabilities] == [STUB_LABELS, STUB_LABELS]  # the model's order
    assert embeddings.shape == (2, 2) and embeddings[:, 0].tolist() == [len(short), len(long)]
    with pytest.raises(TypeError, match="list of recordings"):
        client.classify_many(long)


# -- gRPC against the same server -------------------------------------------------------------------
def test_grpc_gives_the_same_answers_as_rest(client, grpc_client):
    assert grpc_client.live()
    assert grpc_client.model_ready("tune-generator") is True
    assert grpc_client.model_ready("no-such-model") is False
    assert {m["name"] for m in grpc_client.models()} == {m["name"] for m in client.models()}
    assert grpc_client.compose("a reel", seed=5, bars=3) == client.compose("a reel", seed=5, bars=3)
    wav, rate = grpc_client.synthesize("X:1\nK:D\nabc|", tempo=120)
    assert wav[:4] == b"RIFF" and rate == 16000
    assert grpc_client.transcribe(_tone(0.5)) == client.transcribe(_tone(0.5))
    slow, _ = grpc_client.effects(_tone(0.5), tempo_rate=0.5)
    assert soundfile.info(io.BytesIO(slow)).frames == 16000


def test_grpc_errors(grpc_client):
    with pytest.raises(BadRequest, match="temperature"):
        grpc_client.compose("a jig", temperature=0.0)
    with pytest.raises(ModelNotReady):
        grpc_client.infer("no-such-model", {"prompt": "x"})


def test_grpc_infer_helper(stub_server):
    outputs = grpc_infer(stub_server.grpc_address, "tune-generator", {"prompt": ["a march"]})
    assert outputs["abc"][0].startswith("X:1")


# -- Seldon: the same client against tunesmith gateway -----------------------------------------------
STUB_CRITIC = '''
import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse
from tunesmith.serving.inputs import read_strings


class StubCritic(MLModel):
    """Every input is a candidate tune; the later a candidate comes, the better it scores."""

    async def load(self) -> bool:
        return True

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        tunes = [read_strings(request, i.name, max_items=1, max_chars=20000)[0] for i in request.inputs]
        scores = np.linspace(0.5, 0.9, len(tunes)).astype(np.float32) if len(tunes) > 1 else np.ones(1, np.float32)
        best = int(np.argmax(scores))
        labels = [chr(ord("A") + i) for i in range(len(tunes))]
        report = "; ".join(f"{label} {'won' if i == best else 'lost'} with {scores[i]:.2f}" for i, label in enumerate(labels))
        return InferenceResponse(model_name=self.name, outputs=[
            StringCodec.encode_output("abc", [tunes[best]]),
            NumpyCodec.encode_output("scores", scores),
            StringCodec.encode_output("report", [report]),
        ])
'''

STUB_BROKEN = '''
from mlserver import MLModel


class Broken(MLModel):
    async def load(self) -> bool:
        raise RuntimeError("no weights in this folder")
'''

STUB_SLOW = '''
import asyncio

from mlserver import MLModel


class Slow(MLModel):
    """Still loading while the tests run, as models are while `make up` opens the UI."""

    async def load(self) -> bool:
        await asyncio.sleep(600)
        return True
'''

SELDON_MODELS = {  # Seldon Model -> stand-in folder
    "tune-generator-v1": "tune-generator", "tune-generator-v2": "tune-generator", "synthesizer": "synthesizer",
    "tune-critic": "tune-critic", "broken": "broken",
}
STUB_STUDIO = """\
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: studio
spec:
  steps:
    - name: tune-generator-v1
      inputs: [studio.inputs.prompt, studio.inputs.seed, studio.inputs.bars]
    - name: tune-generator-v2
      inputs: [studio.inputs.prompt, studio.inputs.seed, studio.inputs.bars]
    - name: tune-critic
      inputs: [tune-generator-v1.outputs.abc, tune-generator-v2.outputs.abc]
      tensorMap:
        tune-generator-v1.outputs.abc: candidate_1
        tune-generator-v2.outputs.abc: candidate_2
    - name: synthesizer
      inputs: [tune-critic.outputs.abc]
  output:
    steps: [tune-critic, synthesizer]
"""
STUB_BROKEN_CHAIN = """\
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: broken-chain
spec:
  steps:
    - name: broken
      inputs: [broken-chain.inputs.prompt]
  output:
    steps: [broken]
"""


def write_stub_manifests(root):
    """Stand-in models under ``root/models`` and Seldon manifests naming them under ``root/manifests``."""
    models = write_stub_models(root / "models")
    for name, module, cls, source, outputs in (
        ("tune-critic", "stub_critic", "StubCritic", STUB_CRITIC, ["abc", "scores", "report"]),
        ("broken", "stub_broken", "Broken", STUB_BROKEN, []),
    ):
        (models / name).mkdir()
        (models / name / f"{module}.py").write_text(textwrap.dedent(source))
        settings = {"name": name, "implementation": f"{module}.{cls}",
                    "outputs": [{"name": o, "datatype": "BYTES", "shape": [-1]} for o in outputs]}
        (models / name / "model-settings.json").write_text(json.dumps(settings))
    manifests = root / "manifests"
    manifests.mkdir()
    for name, folder in SELDON_MODELS.items():
        (manifests / f"{name}.yaml").write_text(
            f"apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n  name: {name}\n"
            f"spec:\n  storageUri: {models / folder}\n")
    (manifests / "studio.yaml").write_text(STUB_STUDIO)
    (manifests / "broken-chain.yaml").write_text(STUB_BROKEN_CHAIN)
    return manifests, models


@contextlib.contextmanager
def running_gateway(manifests, models, log, ready_path: str):
    """``tunesmith gateway`` on free ports until the context ends; yields ``(REST URL, gRPC address)``
    once ``ready_path`` answers 200."""
    import subprocess
    import sys
    import time

    import requests

    from tunesmith import paths

    http_port, grpc_port = free_port(), free_port()
    name = f"test-client-gateway-{http_port}"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tunesmith", "gateway", "--manifests", str(manifests), "--models", str(models),
             "--name", name, "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
            stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if requests.get(url + ready_path, timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        yield url, f"127.0.0.1:{grpc_port}"
    finally:
        process.terminate()
        process.wait(timeout=60)
        for run in (paths.RUN / name, paths.RUN / f"{name}-mlserver"):
            shutil.rmtree(run, ignore_errors=True)


@pytest.fixture(scope="module")
def stub_gateway(tmp_path_factory):
    """``tunesmith gateway`` on the stand-ins: ``(REST URL, gRPC address)``."""
    root = tmp_path_factory.mktemp("seldon")
    manifests, models = write_stub_manifests(root)
    with running_gateway(manifests, models, root / "gateway.log", "/v2/pipelines/studio/ready") as gateway:
        _until_models_settle(gateway[0])
        yield gateway


def _until_models_settle(url: str, timeout: float = 120.0) -> None:
    """Wait until every Model has loaded or failed to: the studio's readiness says nothing of ``broken``,
    which a busy machine may still be loading (state ``UNKNOWN``)."""
    import time

    with MusicClient(url, timeout=30, seldon=True) as client:
        deadline = time.monotonic() + timeout
        while True:
            states = {m["name"]: m["state"] for m in client.models()}
            if all(state in ("READY", "UNAVAILABLE") for state in states.values()):
                return
            assert time.monotonic() < deadline, f"models still loading after {timeout:.0f} s: {states}"
            time.sleep(0.3)


@pytest.fixture()
def seldon_client(stub_gateway):
    with MusicClient(stub_gateway[0], timeout=30, seldon=True) as c:
        yield c


def test_seldon_names_a_model_per_version():
    from tunesmith.serving.client import route_names, seldon_name

    assert seldon_name("tune-generator", "v1") == "tune-generator-v1"
    assert seldon_name("tune-generator") == "tune-generator-v2"  # no version: the newest, as MLServer picks
    assert seldon_name("synthesizer") == "synthesizer"
    assert route_names([":tune-generator-v1_1:", ":tune-critic_1:", ":studio.pipeline:"]) == [
        "tune-generator-v1", "tune-critic", "studio.pipeline"]


def test_seldon_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("TUNESMITH_SELDON", "1")
    assert MusicClient("http://127.0.0.1:1").seldon is True
    assert MusicClient("http://127.0.0.1:1", seldon=False).seldon is False
    monkeypatch.setenv("TUNESMITH_SELDON", "0")
    assert MusicClient("http://127.0.0.1:1").seldon is False
    monkeypatch.delenv("TUNESMITH_SELDON")
    assert MusicClient("http://127.0.0.1:1").seldon is False


def test_seldon_compose_goes_to_the_versions_model_and_says_who_answered(seldon_client):
    abc = seldon_client.compose("a reel", seed=1, bars=2, version="v1")
    assert "T:a reel" in abc
    reply = seldon_client.last_reply
    assert (reply.name, reply.route, reply.models) == ("tune-generator-v1", (":tune-generator-v1_1:",), ["tune-generator-v1"])
    assert reply.request_id and reply.answered_by == "tune-generator-v1"
    seldon_client.compose("a reel", bars=2)
    assert seldon_client.last_reply.route == (":tune-generator-v2_1:",)
    wav, rate = seldon_client.synthesize(abc)
    assert wav[:4] == b"RIFF" and seldon_client.last_reply.route == (":synthesizer_1:",)
    assert seldon_client.model_ready("tune-generator", "v1") and seldon_client.model_ready("synthesizer")
    assert not seldon_client.model_ready("tune-generator", "v3")
    assert seldon_client.metadata("tune-generator")["name"] == "tune-generator-v2"
    with pytest.raises(ModelNotReady, match="tune-generator-v3"):
        seldon_client.compose("a reel", version="v3")


def test_a_plain_mlserver_reply_names_the_version(client):
    client.compose("a reel", bars=2)
    assert client.last_reply.route == () and client.last_reply.answered_by == "tune-generator"


def test_seldon_models_and_pipelines_are_listed_with_their_state(seldon_client):
    models = {m["name"]: m for m in seldon_client.models()}
    assert set(models) == set(SELDON_MODELS)
    assert {n for n, m in models.items() if m["state"] == "READY"} == set(SELDON_MODELS) - {"broken"}
    assert models["broken"]["state"] == "UNAVAILABLE" and "no weights" in models["broken"]["reason"]
    pipelines = {p["name"]: p for p in seldon_client.pipelines()}
    assert pipelines["studio"]["ready"] is True and pipelines["broken-chain"]["ready"] is False
    assert seldon_client.pipeline_ready("studio") is True
    assert seldon_client.pipeline_ready("broken-chain") is False
    assert seldon_client.pipeline_ready("no-such-pipeline") is False


def test_the_studio_pipeline(seldon_client):
    from tunesmith.serving.client import Studio

    result = seldon_client.studio("a slip jig")
    assert isinstance(result, Studio)
    assert "T:a slip jig" in result.abc
    assert result.abc.count("|") == 8  # the pipeline needs a seed and bars: the client sends them
    assert isinstance(result.seed, int)
    again = seldon_client.studio("a slip jig", seed=result.seed, bars=3)
    assert again.seed == result.seed and again.abc.count("|") == 3
    assert result.scores == pytest.approx([0.5, 0.9]) and result.labels == ["A", "B"] and result.winner == "B"
    assert result.report == "A lost with 0.50; B won with 0.90"
    assert result.wav[:4] == b"RIFF" and result.sample_rate == 16000
    reply = result.reply
    assert reply.kind == "pipeline" and reply.answered_by == "pipeline studio"
    assert set(reply.models) == {"tune-generator-v1", "tune-generator-v2", "tune-critic", "synthesizer"}
    assert reply.route[-1] == ":studio.pipeline:" and reply.pipeline_version == "1" and reply.request_id
    assert seldon_client.last_reply is again.reply


def test_pipeline_errors_say_what_is_missing(seldon_client):
    from tunesmith.serving.client import PipelineNotReady

    with pytest.raises(PipelineNotReady) as unknown:
        seldon_client.pipeline("no-such-pipeline", prompt="x")
    assert not unknown.value.loading and "not served" in str(unknown.value)
    assert "studio" in str(unknown.value)  # the gateway lists what it serves
    with pytest.raises(PipelineNotReady) as loading:
        seldon_client.pipeline("broken-chain", prompt="x")
    assert loading.value.loading and "not ready" in str(loading.value)
    with pytest.raises(BadRequest) as bad:
        seldon_client.studio("x" * 300)
    assert str(bad.value).startswith("tune-generator-v")  # Seldon's "<step> : <error>"
    with pytest.raises(ServerUnavailable):
        MusicClient(closed_url(), seldon=True).studio("a jig")


def test_a_plain_mlserver_serves_no_pipelines(client):
    from tunesmith.serving.client import ClientError, PipelineNotReady

    with pytest.raises(PipelineNotReady, match="not served"):
        client.studio("a jig")
    with pytest.raises(ClientError, match="serves no pipelines"):
        client.pipelines()


def test_seldon_over_grpc(stub_gateway, seldon_client):
    from tunesmith.serving.client import ClientError, PipelineNotReady

    with GrpcMusicClient(stub_gateway[1], timeout=30, seldon=True) as grpc_client:
        assert grpc_client.live()
        abc = grpc_client.compose("a hornpipe", seed=4, bars=3, version="v1")
        assert grpc_client.last_reply.route == (":tune-generator-v1_1:",)
        assert abc == seldon_client.compose("a hornpipe", seed=4, bars=3, version="v1")
        assert grpc_client.model_ready("tune-generator", "v1") and not grpc_client.model_ready("broken")
        assert grpc_client.pipeline_ready("studio") and not grpc_client.pipeline_ready("broken-chain")
        assert not grpc_client.pipeline_ready("no-such-pipeline")
        result = grpc_client.studio("a slip jig")
        assert result.scores == pytest.approx([0.5, 0.9]) and result.wav[:4] == b"RIFF"
        assert result.reply.route[-1] == ":studio.pipeline:" and result.reply.request_id
        assert grpc_client.metadata("tune-generator")["name"] == "tune-generator-v2"
        with pytest.raises(PipelineNotReady) as unknown:
            grpc_client.pipeline("no-such-pipeline", prompt="x")
        assert not unknown.value.loading
        with pytest.raises(PipelineNotReady) as loading:
            grpc_client.pipeline("broken-chain", prompt="x")
        assert loading.value.loading
        with pytest.raises(BadRequest):
            grpc_client.studio("x" * 300)
        with pytest.raises(ClientError, match="REST"):
            grpc_client.models()


def test_a_failed_model_says_so(seldon_client, stub_gateway):
    with GrpcMusicClient(stub_gateway[1], timeout=30, seldon=True) as grpc_client:
        for client in (seldon_client, grpc_client):
            with pytest.raises(ModelNotReady) as failed:
                client.infer("broken", {"prompt": "x"})
            assert not failed.value.loading and "server log" in str(failed.value), failed.value


def test_a_model_still_loading_says_so(tmp_path):
    """A gateway answers while its MLServer loads (as `make up` opens the UI): "not ready yet", not "failed"."""
    (tmp_path / "models" / "slow").mkdir(parents=True)
    (tmp_path / "models" / "slow" / "stub_slow.py").write_text(textwrap.dedent(STUB_SLOW))
    (tmp_path / "models" / "slow" / "model-settings.json").write_text(
        json.dumps({"name": "slow", "implementation": "stub_slow.Slow"}))
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "slow.yaml").write_text(
        f"apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n  name: slow\n"
        f"spec:\n  storageUri: {tmp_path / 'models' / 'slow'}\n")
    with running_gateway(tmp_path / "manifests", tmp_path / "models", tmp_path / "gateway.log", "/ready") as (url, address):
        with MusicClient(url, timeout=30, seldon=True) as rest, GrpcMusicClient(address, timeout=30, seldon=True) as rpc:
            for client in (rest, rpc):
                with pytest.raises(ModelNotReady) as loading:
                    client.infer("slow", {"prompt": "x"})
                assert loading.value.loading and "is not ready yet" in str(loading.value), loading.value
            (slow,) = rest.models()
            assert (slow["name"], slow["state"]) == ("slow", "LOADING"), slow
