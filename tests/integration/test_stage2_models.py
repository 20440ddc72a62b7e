"""Stage 2's models served side by side with stage 1's by one real MLServer, over REST and gRPC.

The server is the shared ``platform_server`` (the finished platform, materialised from the
notebooks). Each model answers its contract; bad audio gets a 4xx that names the problem.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import requests
import soundfile

from prometheus_client.parser import text_string_to_metric_families

from concurrent.futures import ThreadPoolExecutor

from tunesmith.audio import io as audio
from tunesmith.audio import synth
from tunesmith.serving.client import GrpcMusicClient, MusicClient, grpc_infer
from tunesmith.transcriber.voice import excerpt_tune, voice_like

pytestmark = [pytest.mark.server, pytest.mark.slow]

STAGE2 = ["prompt-encoder", "audio-fx", "transcriber", "style-classifier"]


def infer(server, model: str, inputs: list[dict]) -> requests.Response:
    return requests.post(f"{server.http_url}/v2/models/{model}/infer", json={"inputs": inputs}, timeout=120)


def outputs_of(response: requests.Response) -> dict:
    assert response.status_code == 200, response.text[:500]
    return {o["name"]: o for o in response.json()["outputs"]}


def wav(seconds: float = 1.0, rate: int = 22050, channels: int = 1, fmt: str = "WAV") -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.4 * np.sin(2 * np.pi * 440 * t)
    samples = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=fmt)
    return buffer.getvalue()


def audio_input(data: bytes) -> dict:
    return {"name": "audio", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(data).decode()]}


@pytest.mark.parametrize("model", STAGE2)
def test_stage2_models_are_ready_beside_stage1(platform_server, model):
    for name in [model, "synthesizer", "tune-generator"]:
        assert requests.get(f"{platform_server.http_url}/v2/models/{name}/ready", timeout=10).status_code == 200, name


def test_prompt_encoder_over_rest(platform_server):
    prompts = ["a lively reel in G", "a lullaby", "a march at 100 bpm"]
    out = outputs_of(infer(platform_server, "prompt-encoder", [{"name": "prompt", "datatype": "BYTES", "shape": [3], "data": prompts}]))
    assert set(out) == {"header", "tempo", "meter_confidence", "key_confidence", "rhythm_confidence", "tempo_confidence"}
    assert all(o["shape"] == [3] for o in out.values())
    assert "R:reel" in out["header"]["data"][0] and "K:G" in out["header"]["data"][0]
    assert out["tempo"]["data"][2] == 100 and out["tempo_confidence"]["data"][2] == pytest.approx(1.0)


def test_audio_fx_over_rest_converts_stereo_flac(platform_server):
    out = outputs_of(infer(platform_server, "audio-fx", [
        audio_input(wav(rate=44100, channels=2, fmt="FLAC")),
        {"name": "gain_db", "datatype": "FP32", "shape": [1], "data": [-6.0]},
    ]))
    assert out["audio"]["parameters"]["content_type"] == "base64"
    samples, rate = soundfile.read(io.BytesIO(base64.b64decode(out["audio"]["data"][0])))
    assert rate == out["sample_rate"]["data"][0] == 22050 and samples.ndim == 1
    assert np.abs(samples).max() == pytest.approx(0.4 * 10 ** (-6 / 20), rel=0.05)


def test_audio_fx_over_grpc_takes_raw_bytes(platform_server):
    result = grpc_infer(platform_server.grpc_address, "audio-fx", {"audio": wav(), "tempo_rate": 2.0})
    samples, rate = soundfile.read(io.BytesIO(result["audio"][0]))
    assert rate == 22050 and len(samples) == pytest.approx(rate / 2, rel=0.05)


def hum() -> bytes:
    tune = "X:1\nM:6/8\nL:1/8\nK:G\nG3 GAB|A3 ABd|edd gdd|edB dBA|\n"
    return audio.encode_wav(voice_like(excerpt_tune(tune, bars=4), seed=5, tempo=110), 22050)


def metric_count(server, name: str, model: str) -> float:
    families = text_string_to_metric_families(requests.get(server.metrics_url, timeout=10).text)
    for family in families:
        for sample in family.samples:
            if sample.name == f"{name}_count" and sample.labels.get("model_name") == model:
                return sample.value
    return 0.0


def test_transcriber_over_rest_and_its_metric_on_the_metrics_endpoint(platform_server):
    before = metric_count(platform_server, "transcription_confidence", "transcriber")
    out = outputs_of(infer(platform_server, "transcriber", [audio_input(hum())]))
    assert {name: o["shape"] for name, o in out.items()} == {n: [1] for n in ("abc", "header", "confidence", "tempo", "key", "meter")}
    assert "G3GAB" in out["abc"]["data"][0].replace(" ", "") and out["meter"]["data"][0] == "6/8"
    assert 0.5 < out["confidence"]["data"][0] <= 1.0
    assert metric_count(platform_server, "transcription_confidence", "transcriber") == before + 1


KESH = "X:1\nT:The Kesh\nR:jig\nM:6/8\nL:1/8\nK:G\n|:G3 GAB|A3 ABd|edd gdd|edB dBA|G3 GAB|A3 ABd|edd gdB|AGF G3:|\n"
MAGGIE = "X:1\nT:Drowsy Maggie\nR:reel\nM:2/2\nL:1/8\nK:Edor\n|:E2BE dEBE|E2BE AFDF|E2BE dEBE|BABc dAFD:|\n"


@pytest.fixture(scope="module")
def dances() -> dict[str, bytes]:
    """A jig and a reel at their dance tempos, as WAV files."""
    return {
        "jig": audio.encode_wav(synth.render(KESH, tempo=168, instrument="fiddle"), 22050),
        "reel": audio.encode_wav(synth.render(MAGGIE, tempo=220, instrument="flute"), 22050),
    }


def test_style_classifier_over_rest_and_grpc(platform_server, dances):
    with MusicClient(platform_server.http_url) as rest, GrpcMusicClient(platform_server.grpc_address) as grpc:
        for rhythm, recording in dances.items():
            heard = rest.classify(recording)
            assert list(heard) == sorted(heard, key=heard.get, reverse=True)  # most likely first
            assert set(heard) == {"reel", "jig", "hornpipe", "slip jig"}  # names from the metadata
            assert next(iter(heard)) == rhythm
            over_grpc = grpc.classify(recording)
            assert list(over_grpc) == list(heard)
            assert list(over_grpc.values()) == pytest.approx(list(heard.values()), abs=1e-5)
        probabilities, embeddings = rest.classify_many(list(dances.values()))
        grpc_probabilities, grpc_embeddings = grpc.classify_many(list(dances.values()))  # raw bytes, [2]
    assert [max(p, key=p.get) for p in probabilities] == list(dances)
    assert embeddings.shape == (2, 48)
    np.testing.assert_allclose(grpc_embeddings, embeddings, atol=1e-5)
    assert [list(p) for p in grpc_probabilities] == [list(p) for p in probabilities]


def test_concurrent_classifications_are_batched_and_each_caller_gets_its_own(platform_server, dances):
    """Adaptive batching merges the callers' [1] requests; each must get its own recording's row back."""
    order = ["jig", "reel"] * 6
    before = metric_count(platform_server, "rhythm_confidence", "style-classifier")
    with MusicClient(platform_server.http_url) as client:
        alone = {rhythm: client.classify(dances[rhythm]) for rhythm in dances}
        with ThreadPoolExecutor(len(order)) as pool:
            answers = list(pool.map(lambda rhythm: client.classify(dances[rhythm]), order))
    for rhythm, answer in zip(order, answers):
        assert list(answer.values()) == pytest.approx(list(alone[rhythm].values()), abs=1e-5)
    assert metric_count(platform_server, "rhythm_confidence", "style-classifier") == before + 2 + len(order)


def test_one_callers_bad_recording_does_not_fail_the_callers_batched_with_it(platform_server, dances):
    """A refused merged batch is re-run request by request: only the bad request's caller gets the 400."""
    sent = [dances["jig"], dances["reel"], b"not a recording", dances["jig"]] * 3

    def call(recording):
        return infer(platform_server, "style-classifier", [audio_input(recording)])

    with ThreadPoolExecutor(len(sent)) as pool:
        replies = list(pool.map(call, sent))
    for recording, reply in zip(sent, replies):
        if recording == b"not a recording":
            assert reply.status_code == 400 and "'audio'" in reply.json()["error"] and "[" not in reply.json()["error"]
        else:
            assert reply.status_code == 200, reply.text[:300]
            label = outputs_of(reply)["label"]["data"][0]
            assert label == ("jig" if recording == dances["jig"] else "reel")


# (model, inputs, words the error message must contain)
BAD_AUDIO = {
    "not audio": ("audio-fx", [audio_input(b"GIF89a, a picture, not a sound")], ["audio", "not a readable audio file"]),
    "empty audio": ("audio-fx", [audio_input(wav(seconds=0))], ["audio", "no samples"]),
    "too long": ("audio-fx", [audio_input(wav(seconds=31, rate=8000))], ["limit of 30 s"]),
    "silence to transcribe": ("transcriber", [audio_input(audio.encode_wav(np.zeros(22050, dtype=np.float32), 22050))], ["no melody"]),
    "text to transcribe": ("transcriber", [audio_input(b"la la la")], ["audio", "not a readable audio file"]),
    "too short to classify": ("style-classifier", [audio_input(wav(seconds=1))], ["audio", "at least 3 s"]),
    "second recording not audio": ("style-classifier", [{"name": "audio", "datatype": "BYTES", "shape": [2], "data": [
        base64.b64encode(wav(seconds=4)).decode(), base64.b64encode(b"la la la").decode()]}], ["'audio'[1]", "not a readable audio file"]),
    "setting out of range": ("audio-fx", [audio_input(wav()), {"name": "pitch_semitones", "datatype": "FP32", "shape": [1], "data": [24.0]}], ["pitch_semitones", "between -12 and 12"]),
}


@pytest.mark.parametrize("case", BAD_AUDIO, ids=list(BAD_AUDIO))
def test_bad_audio_is_a_4xx_naming_the_problem(platform_server, case):
    model, inputs, words = BAD_AUDIO[case]
    response = infer(platform_server, model, inputs)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    message = response.json().get("error", "")
    for word in words:
        assert word.lower() in message.lower(), message
