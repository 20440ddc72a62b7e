"""The transcriber runtime from notebook 2.3: a recording in, ABC and its reading out, a metric logged."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import soundfile
from mlserver.context import model_context
from mlserver.metrics.registry import REGISTRY
from runtime_helpers import output, predict, sample_request

from tunesmith.audio import io as audio
from tunesmith.serving.inputs import BadInput

SAMPLE = sample_request("transcriber")
HUM = base64.b64decode(SAMPLE["inputs"][0]["data"][0])  # a voice-like rendering of G3 GAB|A3 ABd|edd gdd|edB dBA|


def audio_input(data: bytes) -> dict:
    return {"name": "audio", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(data).decode()]}


def run(transcriber, payload):
    """MLServer runs predict() inside the model's context, which mlserver.log() needs for its labels."""
    with model_context(transcriber.settings):
        return predict(transcriber, payload)


def text(response, name) -> str:
    value = output(response, name).data.root[0]
    return value.decode() if isinstance(value, bytes) else value


def test_sample_request_gives_the_tune_and_its_reading(transcriber):
    response = run(transcriber, SAMPLE)
    assert response.model_name == "transcriber"
    expected = {"abc": "BYTES", "header": "BYTES", "confidence": "FP32", "tempo": "INT32", "key": "BYTES", "meter": "BYTES"}
    assert {o.name: o.datatype for o in response.outputs} == expected
    assert all(o.shape == [1] for o in response.outputs)
    abc = text(response, "abc")
    assert text(response, "header") == f"X:1\nM:{text(response, 'meter')}\nL:1/8\nK:{text(response, 'key')}"  # a generator's header
    notes = abc.replace(" ", "")  # beaming (spaces between note groups) is a matter of layout
    assert abc.startswith("X:") and "G3GAB" in notes and "eddgdd" in notes
    assert text(response, "meter") == "6/8" and f"K:{text(response, 'key')}" in abc
    assert 100 <= output(response, "tempo").data.root[0] <= 120
    assert 0.5 < output(response, "confidence").data.root[0] <= 1.0


def test_each_transcription_is_observed_in_the_custom_metric(transcriber):
    def count() -> float:
        return REGISTRY.get_sample_value(
            "transcription_confidence_count", {"model_name": "transcriber", "model_version": "v1"}
        ) or 0.0

    before = count()
    run(transcriber, SAMPLE)
    assert count() == before + 1


def test_stereo_at_another_rate_is_converted(transcriber):
    samples, rate = soundfile.read(io.BytesIO(HUM), dtype="float32")
    stereo = np.stack([samples, samples], axis=1)
    buffer = io.BytesIO()
    soundfile.write(buffer, stereo, rate, format="WAV")
    response = run(transcriber, {"inputs": [audio_input(buffer.getvalue())]})
    assert "G3GAB" in text(response, "abc").replace(" ", "")


BAD = {
    "missing audio": ([{"name": "sound", "datatype": "BYTES", "shape": [1], "data": ["x"]}], ["audio", "missing"]),
    "not audio": ([audio_input(b"la la la, not a recording")], ["audio", "not a readable audio file"]),
    "empty audio": ([audio_input(audio.encode_wav(np.zeros(0, dtype=np.float32), 22050))], ["audio", "no samples"]),
    "too long": ([audio_input(audio.encode_wav(np.zeros(31 * 8000, dtype=np.float32), 8000))], ["limit of 30 s"]),
    "silence": ([audio_input(audio.encode_wav(np.zeros(22050, dtype=np.float32), 22050))], ["no melody"]),
    "noise": ([audio_input(audio.encode_wav((0.3 * np.random.default_rng(0).standard_normal(22050)).astype(np.float32), 22050))], ["no melody"]),
    "two recordings": ([{"name": "audio", "datatype": "BYTES", "shape": [2], "data": ["UklGRg==", "UklGRg=="]}], ["audio", "exactly one"]),
}


def nan_wav() -> bytes:
    samples = np.full(2000, 0.1, dtype=np.float32)
    samples[5] = np.inf
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, 22050, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


BAD["infinite samples"] = ([audio_input(nan_wav())], ["NaN or infinite"])


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_a_400_naming_the_problem(transcriber, case):
    inputs, words = BAD[case]
    with pytest.raises(BadInput) as caught:
        run(transcriber, {"inputs": inputs})
    assert caught.value.status_code == 400
    for word in words:
        assert word.lower() in str(caught.value).lower(), str(caught.value)
