"""The Hum to tune, Effects and Classify tabs, launched for real and driven with gradio_client."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile
from gradio_client import Client, handle_file

from tunesmith.audio.io import encode_wav
from tunesmith.serving.client import MusicClient
from tunesmith.audio.effects import PARAM_RANGES
from tunesmith.audio.synth import render
from ui_launch import launched, load_app_module

pytestmark = pytest.mark.ui

MELODY = """X:1
T:Four bars
M:4/4
L:1/8
K:D
D2F2 A2d2|c2A2 F2A2|B2G2 E2G2|F2E2 D4|]
"""
"""A four-bar melody, played by the synthesizer's own code to stand in for a hummed one."""
SAMPLE_RATE = 22050


@pytest.fixture(scope="module")
def melody_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "melody.wav"
    path.write_bytes(encode_wav(render(MELODY, tempo=100, instrument="flute", sample_rate=SAMPLE_RATE), SAMPLE_RATE))
    return path


@pytest.fixture(scope="module")
def not_audio(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "notes.wav"
    path.write_text("these are notes about a tune, not a recording of one\n")
    return path


def frames(path) -> int:
    info = soundfile.info(path)
    assert info.format == "WAV"
    return info.frames


def test_endpoint_signatures(app_module, closed_url):
    with launched(app_module, closed_url) as url:
        api = Client(url, verbose=False).view_api(return_format="dict", print_info=False)["named_endpoints"]
    names = lambda endpoint: [p["parameter_name"] for p in api[endpoint]["parameters"]]  # noqa: E731
    assert names("/hum_to_tune") == ["recording", "bars", "temperature", "seed", "instrument"]
    assert names("/effects") == ["recording", *PARAM_RANGES]  # callers can pass settings by name
    assert names("/classify") == ["recording"]
    returns = lambda endpoint: [r["label"] for r in api[endpoint]["returns"]]  # noqa: E731
    assert returns("/hum_to_tune") == ["Message", "Transcription (ABC)", "Transcription notation", "Tune (ABC)",
                                       "Tune notation", "Tune audio", "Notes summary"]
    assert returns("/effects") == ["Message", "After", "Spectrogram before", "Spectrogram after"]
    assert returns("/classify") == ["Message", "Rhythm", "Top label"]


def test_sliders_come_from_the_effect_ranges():
    from tunesmith.audio.effects import EffectParams

    effects = load_app_module("app.sections.effects")
    assert effects.EFFECT_NAMES == tuple(PARAM_RANGES)
    for name, (low, high, *_) in PARAM_RANGES.items():
        step = effects._step(low, high, getattr(EffectParams(), name))
        assert 0 < step <= (high - low) / 10


def test_server_down_is_said_plainly(app_module, closed_url, melody_wav):
    down = f"The inference server at {closed_url} is not running. Start it with `make serve`."
    with launched(app_module, closed_url) as url:
        client = Client(url, verbose=False)
        hum = client.predict(handle_file(melody_wav), api_name="/hum_to_tune")
        fx = client.predict(handle_file(melody_wav), api_name="/effects")
        style = client.predict(handle_file(melody_wav), api_name="/classify")
    assert hum[0] == f"Could not transcribe the recording: {down}"
    assert fx[0] == f"Could not apply the effects: {down}"
    assert style[0] == f"Could not classify: {down}"
    assert hum[5] is None and fx[1] is None and style[2] == ""


def test_missing_audio_is_asked_for(app_module, closed_url):
    with launched(app_module, closed_url) as url:
        client = Client(url, verbose=False)
        for endpoint in ("/hum_to_tune", "/effects", "/classify"):
            assert client.predict(None, api_name=endpoint)[0].startswith("Record or upload"), endpoint


def test_big_recordings_are_sent_small(tmp_path):
    """A 48 kHz stereo microphone recording is sent as 22.05 kHz mono: the same sound, less base64."""
    t = np.arange(48000) / 48000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path / "mic.wav"
    soundfile.write(path, np.stack([tone, tone], axis=1), 48000)
    audio_bytes = load_app_module("app.common").audio_bytes
    sent = audio_bytes(str(path))
    info = soundfile.info(__import__("io").BytesIO(sent))
    assert (info.samplerate, info.channels, info.frames) == (22050, 1, 22050)
    assert len(sent) < path.stat().st_size / 3
    text = tmp_path / "notes.txt"
    text.write_bytes(b"not audio")
    assert audio_bytes(str(text)) == b"not audio"  # the model explains what is wrong


@pytest.mark.server
def test_effects_change_the_length_with_the_tempo(app_module, ui_server, melody_wav):
    with launched(app_module, ui_server.http_url) as url:
        client = Client(url, verbose=False)
        same = client.predict(handle_file(melody_wav), api_name="/effects")
        fast = client.predict(handle_file(melody_wav), tempo_rate=2.0, api_name="/effects")
    assert "changed: nothing" in same[0] and "changed: tempo_rate." in fast[0], (same[0], fast[0])
    original = frames(melody_wav)
    assert frames(same[1]) == pytest.approx(original, rel=0.01)
    assert frames(fast[1]) == pytest.approx(original / 2, rel=0.05)
    assert same[2]["type"] == same[3]["type"] == "matplotlib"


@pytest.mark.server
def test_classify_gives_each_rhythm_a_probability(app_module, ui_server, melody_wav):
    with launched(app_module, ui_server.http_url) as url:
        message, chart, top = Client(url, verbose=False).predict(handle_file(melody_wav), api_name="/classify")
    confidences = {c["label"]: c["confidence"] for c in chart["confidences"]}
    assert set(confidences) == {"reel", "jig", "hornpipe", "slip jig"}
    assert sum(confidences.values()) == pytest.approx(1.0, abs=1e-3)
    assert top == chart["label"] == max(confidences, key=confidences.get)
    assert message.startswith(f"Most likely a **{top}**")


@pytest.mark.server
def test_hum_to_tune_transcribes_continues_and_plays(app_module, ui_server, melody_wav):
    with launched(app_module, ui_server.http_url) as url:
        message, heard, heard_svg, tune, tune_svg, audio, summary = Client(url, verbose=False).predict(
            handle_file(melody_wav), 4, 0.9, 7, "fiddle", api_name="/hum_to_tune"
        )
    assert message.startswith("Heard "), message
    for abc in (heard, tune):
        for header in ("X:", "M:", "L:", "K:"):
            assert re.search(rf"^{header}", abc, re.MULTILINE), (header, abc)
    assert "<svg" in heard_svg and "<svg" in tune_svg
    assert frames(audio) > 0
    assert "notes** from" in summary and "**Key**" in summary
    opening = heard.split("K:", 1)[1].split("\n", 1)[1].strip().rstrip("|]")
    if "Continuation is unavailable" in message:  # a generator without the abc_prefix input
        assert tune == heard
    else:
        assert "continued it" in message, message
        assert tune.split("K:", 1)[1].split("\n", 1)[1].startswith(opening)  # the tune starts as hummed
        assert tune.count("|") > heard.count("|")


@pytest.mark.server
def test_not_audio_gets_the_models_message(app_module, ui_server, not_audio):
    with launched(app_module, ui_server.http_url) as url:
        client = Client(url, verbose=False)
        hum = client.predict(handle_file(not_audio), api_name="/hum_to_tune")[0]
        fx = client.predict(handle_file(not_audio), api_name="/effects")[0]
    assert hum.startswith("Could not transcribe the recording: input 'audio': ")
    assert fx.startswith("Could not apply the effects: ")
    for message in (hum, fx):
        assert "not a readable audio file" in message, message
        assert "Traceback" not in message
