"""The synthesizer runtime from notebook 1.2: ABC in, a WAV file out, bad input refused as 400."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import soundfile
from mlserver.codecs import Base64Codec
from runtime_helpers import output, predict, sample_request

from tunesmith.serving.inputs import BadInput

SAMPLE = sample_request("synthesizer")
TUNE = SAMPLE["inputs"][0]["data"][0]


def with_inputs(*inputs: dict) -> dict:
    return {"inputs": list(inputs)}


def abc(text, shape=(1,), datatype="BYTES"):
    return {"name": "abc", "datatype": datatype, "shape": list(shape), "data": [text]}


def scalar(name, datatype, value):
    return {"name": name, "datatype": datatype, "shape": [1], "data": [value]}


def wav_of(response):
    audio = output(response, "audio")
    assert audio.datatype == "BYTES" and audio.shape == [1]
    assert audio.parameters.content_type == "base64"
    return Base64Codec.decode_output(audio)[0]


def test_sample_request_gives_a_wav_file_and_its_sample_rate(synthesizer):
    response = predict(synthesizer, SAMPLE)
    assert response.model_name == "synthesizer"
    rate = output(response, "sample_rate")
    assert rate.datatype == "INT32" and rate.shape == [1]
    samples, file_rate = soundfile.read(io.BytesIO(wav_of(response)))
    assert file_rate == rate.data[0]
    assert samples.ndim == 1 and len(samples) > 5 * file_rate  # the tune lasts several seconds
    assert np.isfinite(samples).all() and 0.05 < np.abs(samples).max() <= 1.0


def test_tempo_and_instrument_are_optional(synthesizer):
    response = predict(synthesizer, with_inputs(abc(TUNE)))
    assert wav_of(response).startswith(b"RIFF")


def test_a_faster_tempo_gives_shorter_audio(synthesizer):
    slow = predict(synthesizer, with_inputs(abc(TUNE), scalar("tempo", "INT32", 80)))
    fast = predict(synthesizer, with_inputs(abc(TUNE), scalar("tempo", "INT32", 160)))
    assert len(wav_of(fast)) < len(wav_of(slow))


def test_the_instrument_changes_the_sound(synthesizer):
    request = copy.deepcopy(SAMPLE)
    flute = wav_of(predict(synthesizer, request))
    request["inputs"][2]["data"] = ["piano"]
    piano = wav_of(predict(synthesizer, request))
    assert flute != piano and len(flute) == len(piano)


def test_a_batch_dimension_is_accepted(synthesizer):
    """MLServer's codecs send [1, 1]; the element count is what matters."""
    assert wav_of(predict(synthesizer, with_inputs(abc(TUNE, shape=(1, 1))))).startswith(b"RIFF")


# (inputs, words the 400 message must contain)
BAD = {
    "missing abc": ([scalar("tempo", "INT32", 120)], ["abc", "missing"]),
    "abc sent as a number": ([{"name": "abc", "datatype": "INT32", "shape": [1], "data": [5]}], ["abc", "BYTES"]),
    "text that is not ABC": ([abc("hello, this is not music")], ["ABC"]),
    "empty abc": ([abc("   ")], ["abc", "empty"]),
    "megabytes of ABC": ([abc(TUNE + "|G3 GAB" * 300_000)], ["abc", "characters"]),
    "two tunes": ([{"name": "abc", "datatype": "BYTES", "shape": [2], "data": [TUNE, TUNE]}], ["abc", "at most 1"]),
    "shape disagrees with data": ([abc(TUNE, shape=(3,))], ["abc", "shape"]),
    "tempo 0": ([abc(TUNE), scalar("tempo", "INT32", 0)], ["tempo", "range"]),
    "negative tempo": ([abc(TUNE), scalar("tempo", "INT32", -120)], ["tempo"]),
    "absurd tempo": ([abc(TUNE), scalar("tempo", "INT32", 100_000)], ["tempo"]),
    "tempo as text": ([abc(TUNE), scalar("tempo", "BYTES", "fast")], ["tempo"]),
    "fractional tempo": ([abc(TUNE), scalar("tempo", "FP32", 99.5)], ["tempo"]),
    "unknown instrument": ([abc(TUNE), {"name": "instrument", "datatype": "BYTES", "shape": [1], "data": ["theremin"]}], ["instrument", "theremin"]),
    "instrument as a number": ([abc(TUNE), scalar("instrument", "INT32", 3)], ["instrument"]),
    "too long to render": ([abc(TUNE.replace(":|", ":|" + "G3 GAB|" * 400)), scalar("tempo", "INT32", 20)], ["limit"]),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_a_400_naming_the_problem(synthesizer, case):
    inputs, words = BAD[case]
    with pytest.raises(BadInput) as caught:
        predict(synthesizer, with_inputs(*inputs))
    assert caught.value.status_code == 400
    for word in words:
        assert word.lower() in str(caught.value).lower(), str(caught.value)


def test_still_serving_after_bad_input(synthesizer):
    for inputs, _ in BAD.values():
        with pytest.raises(BadInput):
            predict(synthesizer, with_inputs(*inputs))
    assert wav_of(predict(synthesizer, SAMPLE)).startswith(b"RIFF")
