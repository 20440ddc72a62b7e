"""The Gradio app, launched for real and driven through its API with gradio_client."""

from __future__ import annotations

import re

import pytest
import soundfile
from gradio_client import Client

from ui_launch import launched, load_app_module

pytestmark = pytest.mark.ui

COMPOSE_INPUTS = ["prompt", "temperature", "tempo", "instrument", "seed", "bars", "target"]
COMPOSE_OUTPUTS = ["message", "abc", "notation", "audio", "waveform", "spectrogram"]


def test_instruments_are_the_synthesizers():
    from tunesmith.audio.synth import INSTRUMENTS

    common = load_app_module("app.common")
    assert common.INSTRUMENTS == INSTRUMENTS
    assert common.DEFAULT_INSTRUMENT in INSTRUMENTS


def test_compose_endpoint_signature(app_module, closed_url):
    with launched(app_module, closed_url) as url:
        api = Client(url, verbose=False).view_api(return_format="dict", print_info=False)
    compose = api["named_endpoints"]["/compose"]
    assert [p["parameter_name"] for p in compose["parameters"]] == COMPOSE_INPUTS
    assert [not p["parameter_has_default"] for p in compose["parameters"]] == [True] + [False] * 6
    assert compose["parameters"][-1]["parameter_default"] == "newest"  # callers that name no composer get the newest
    assert [r["label"].lower() for r in compose["returns"]] == COMPOSE_OUTPUTS
    assert "/status" in api["named_endpoints"]


def test_server_down_is_said_plainly(app_module, closed_url):
    down = f"The inference server at {closed_url} is not running. Start it with `make serve`."
    with launched(app_module, closed_url) as url:
        client = Client(url, verbose=False)
        message, abc, notation, audio, wave, spec = client.predict("a lively jig in D", api_name="/compose")
        status = client.predict(api_name="/status")
    assert message == f"Could not compose: {down}"
    assert (abc, notation, audio, wave, spec) == ("", "", None, None, None)
    assert status == down


def test_empty_prompt_asks_for_one(app_module, closed_url):
    with launched(app_module, closed_url) as url:
        message = Client(url, verbose=False).predict("   ", api_name="/compose")[0]
    assert message.startswith("Write a prompt first")


@pytest.mark.server
def test_compose_writes_engraves_and_plays_a_tune(app_module, ui_server):
    with launched(app_module, ui_server.http_url) as url:
        client = Client(url, verbose=False)
        message, abc, notation, audio, wave, spec = client.predict(
            "a lively jig in D", 0.9, 100, "flute", 7, 8, api_name="/compose"
        )
    assert message.startswith("Composed and played on flute at 100 bpm"), message
    for header in ("X:", "T:", "M:", "K:"):
        assert re.search(rf"^{header}", abc, re.MULTILINE), (header, abc)
    assert "<svg" in notation or "No notation" in notation
    info = soundfile.info(audio)
    assert info.format == "WAV" and info.frames > 0
    assert wave["type"] == spec["type"] == "matplotlib"


@pytest.mark.server
def test_tempo_0_plays_each_dance_at_its_own_speed(app_module, ui_server):
    with launched(app_module, ui_server.http_url) as url:
        client = Client(url, verbose=False)
        reel, *_ = client.predict("a reel in D", 1.0, 0, "fiddle", 3, 4, api_name="/compose")
        air, *_ = client.predict("a slow air in D", 1.0, 0, "fiddle", 3, 4, api_name="/compose")
    assert reel.startswith("Composed and played on fiddle at 220 bpm"), reel
    assert air.startswith("Composed and played on fiddle at the synthesizer's default tempo"), air


@pytest.mark.server
def test_status_names_the_loaded_models(app_module, ui_server):
    with launched(app_module, ui_server.http_url) as url:
        status = Client(url, verbose=False).predict(api_name="/status")
    assert status.startswith(f"Inference server at {ui_server.http_url} is running")
    assert "`tune-generator` ready" in status and "`synthesizer` ready" in status


def test_sections_wait_for_their_models(app_module, closed_url):
    """A stage-1 server gets a stage-1 app; a section appears once every model it needs is loaded."""
    from tunesmith.serving.client import MusicClient

    client = MusicClient(closed_url)
    assert app_module._status(closed_url)[1:] == (True, ["Compose"])  # not up yet: check again soon
    assert app_module.shown_sections(client, {"tune-generator", "synthesizer"}) == ["Compose"]
    stage_2 = {"tune-generator", "synthesizer", "audio-fx", "transcriber", "style-classifier"}
    assert app_module.shown_sections(client, stage_2) == ["Compose", "Hum to tune", "Effects", "Classify"]
    seldon = MusicClient(closed_url, seldon=True)  # Seldon names each generator version as a Model
    assert "Hum to tune" in app_module.shown_sections(seldon, {"tune-generator-v2", "synthesizer", "transcriber"})


def test_a_server_not_up_yet_is_starting_when_the_launcher_says_so(app_module, closed_url, monkeypatch):
    """`tunesmith up` opens the UI before the server answers: the page answers at once and says so."""
    monkeypatch.setenv(app_module.STARTING_ENV, "1")
    with launched(app_module, closed_url) as url:
        status = Client(url, verbose=False).predict(api_name="/status")
    assert status == app_module.STARTING.format(url=closed_url)


@pytest.mark.server
def test_the_sections_of_the_loaded_models_are_offered(app_module, ui_server):
    from tunesmith.serving.client import MusicClient

    line, soon, labels = app_module._status(ui_server.http_url)
    served = {m["name"] for m in MusicClient(ui_server.http_url).models() if m["state"] == "READY"}
    assert labels == [label for label, _ in app_module.TABS if set(app_module.NEEDS[label]) <= served], line
    assert {"Compose", "Hum to tune", "Effects", "Classify", "Studio"} <= set(labels) and not soon, line


@pytest.mark.server
def test_bad_request_shows_the_servers_message(app_module, ui_server):
    with launched(app_module, ui_server.http_url) as url:
        message = Client(url, verbose=False).predict("jig " * 5000, api_name="/compose")[0]
    assert message.startswith("Could not compose: ")
    assert "prompt" in message and "characters" in message
    assert "Traceback" not in message


def test_page_loads_no_web_fonts(app_module, closed_url):
    """Offline first: the theme's fonts come from the app, not from Google Fonts."""
    import requests

    with launched(app_module, closed_url) as url:
        page = requests.get(url, timeout=30).text
    assert "Tunesmith" in page
    assert "fonts.googleapis.com/css" not in page
