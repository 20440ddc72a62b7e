"""The audio-fx runtime from notebook 2.2: an audio file and effect settings in, a WAV file out."""

from __future__ import annotations

import base64
import copy
import io

import numpy as np
import pytest
import soundfile
from mlserver.codecs import Base64Codec
from runtime_helpers import output, predict, sample_request

from tunesmith.audio import effects
from tunesmith.serving.inputs import BadInput

SAMPLE = sample_request("audio-fx")
TONE = base64.b64decode(SAMPLE["inputs"][0]["data"][0])


def encoded(samples, rate, fmt="WAV", subtype="PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def audio_input(data: bytes, raw: bool = False) -> dict:
    return {"name": "audio", "datatype": "BYTES", "shape": [1], "data": [data if raw else base64.b64encode(data).decode()]}


def setting(name, value, datatype="FP32"):
    return {"name": name, "datatype": datatype, "shape": [1], "data": [value]}


def wav_of(response) -> tuple[np.ndarray, int]:
    out = output(response, "audio")
    assert out.datatype == "BYTES" and out.shape == [1] and out.parameters.content_type == "base64"
    samples, rate = soundfile.read(io.BytesIO(Base64Codec.decode_output(out)[0]), dtype="float32")
    assert rate == output(response, "sample_rate").data.root[0]
    return samples, rate


def test_sample_request_gives_a_processed_wav(audio_fx):
    response = predict(audio_fx, SAMPLE)
    assert response.model_name == "audio-fx"
    samples, rate = wav_of(response)
    assert rate == 22050 and samples.ndim == 1
    assert np.isfinite(samples).all() and 0.01 < np.abs(samples).max() <= 1.0
    dry, dry_rate = soundfile.read(io.BytesIO(TONE))
    assert len(samples) / rate > len(dry) / dry_rate  # the reverb tail makes it longer


def test_no_settings_leave_the_sound_unchanged(audio_fx):
    t = np.arange(22050) / 22050
    tone = (0.5 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    samples, _ = wav_of(predict(audio_fx, {"inputs": [audio_input(encoded(tone, 22050))]}))
    assert len(samples) == len(tone)
    assert np.abs(samples - tone).max() < 1e-3  # 16-bit rounding only


def test_pitch_shift_moves_the_frequency(audio_fx):
    t = np.arange(22050) / 22050
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    payload = {"inputs": [audio_input(encoded(tone, 22050)), setting("pitch_semitones", 12.0)]}
    samples, rate = wav_of(predict(audio_fx, payload))
    peak_hz = np.argmax(np.abs(np.fft.rfft(samples))) * rate / len(samples)
    assert peak_hz == pytest.approx(880, rel=0.02)


def test_stereo_flac_at_another_rate_is_converted_not_refused(audio_fx):
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.3
    samples, rate = wav_of(predict(audio_fx, {"inputs": [audio_input(encoded(stereo, 44100, fmt="FLAC"))]}))
    assert rate == 22050 and samples.ndim == 1 and len(samples) == pytest.approx(22050, abs=2)


def test_raw_bytes_as_over_grpc_are_accepted(audio_fx):
    samples, _ = wav_of(predict(audio_fx, {"inputs": [audio_input(TONE, raw=True)]}))
    assert samples.size > 0


def test_every_effect_setting_is_an_input(audio_fx, platform_models):
    import json

    settings = json.loads((platform_models / "audio-fx" / "model-settings.json").read_text())
    declared = {i["name"]: i["datatype"] for i in settings["inputs"]}
    assert declared == {"audio": "BYTES", **{name: "FP32" for name in effects.PARAM_RANGES}}


def nan_wav() -> bytes:
    samples = np.zeros(1000, dtype=np.float32)
    samples[10] = np.nan
    return encoded(samples, 22050, subtype="FLOAT")


# (inputs, words the 400 message must contain)
BAD = {
    "missing audio": ([setting("gain_db", 3.0)], ["audio", "missing"]),
    "audio as a number": ([setting("audio", 3, "INT32")], ["audio", "BYTES"]),
    "not audio": ([audio_input(b"this is plain text, not a sound file")], ["audio", "not a readable audio file"]),
    "zero bytes": ([{"name": "audio", "datatype": "BYTES", "shape": [1], "data": [""]}], ["audio", "empty"]),
    "a WAV with no samples": ([audio_input(encoded(np.zeros(0, dtype=np.float32), 22050))], ["no samples"]),
    "too long": ([audio_input(encoded(np.zeros(31 * 8000, dtype=np.float32), 8000))], ["31.00 s", "limit of 30 s"]),
    "NaN samples": ([audio_input(nan_wav())], ["NaN"]),
    "two files": ([{"name": "audio", "datatype": "BYTES", "shape": [2], "data": ["UklGRg==", "UklGRg=="]}], ["audio", "exactly one"]),
    **{
        f"{name} out of range": ([audio_input(TONE), setting(name, high + 1.0)], [name, f"between {low:g} and {high:g}"])
        for name, (low, high, _, _) in effects.PARAM_RANGES.items()
    },
    "setting as text": ([audio_input(TONE), setting("gain_db", "loud", "BYTES")], ["gain_db"]),
    "NaN setting": ([audio_input(TONE), setting("reverb_mix", float("nan"))], ["reverb_mix", "finite"]),
    "two values for a setting": ([audio_input(TONE), {"name": "gain_db", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}], ["gain_db", "one number"]),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_a_400_naming_the_problem(audio_fx, case):
    inputs, words = BAD[case]
    with pytest.raises(BadInput) as caught:
        predict(audio_fx, {"inputs": copy.deepcopy(inputs)})
    assert caught.value.status_code == 400
    for word in words:
        assert word.lower() in str(caught.value).lower(), str(caught.value)


def test_too_many_bytes_are_refused_before_decoding(audio_fx):
    big = b"\0" * (audio_fx.max_bytes + 1)
    with pytest.raises(BadInput, match="at most"):
        predict(audio_fx, {"inputs": [audio_input(big, raw=True)]})
