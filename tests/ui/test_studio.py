"""The Studio section and the Compose section's composers, driven with gradio_client: against a real
Seldon gateway (the ``studio`` pipeline), a plain MLServer (no pipelines) and no server at all."""

from __future__ import annotations

import re

import pytest
import soundfile
from gradio_client import Client

from ui_launch import launched, load_app_module

pytestmark = pytest.mark.ui

STUDIO_OUTPUTS = ["Message", "Winner (ABC)", "Winner's notation", "Winner's audio", "Critic's scores",
                  "Critic's report"]


def test_studio_endpoint_signature(app_module, closed_url):
    with launched(app_module, closed_url) as url:
        api = Client(url, verbose=False).view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert [p["parameter_name"] for p in api["/studio"]["parameters"]] == ["prompt", "seed", "bars"]
    assert [p["parameter_has_default"] for p in api["/studio"]["parameters"]] == [False, True, True]
    assert [r["label"] for r in api["/studio"]["returns"]] == STUDIO_OUTPUTS
    compose = load_app_module("app.sections.compose")
    assert [value for _, value in compose.TARGETS] == ["newest", "v1", "v2", "studio"]


def test_studio_without_a_server_says_so(app_module, closed_url):
    with launched(app_module, closed_url, seldon=True) as url:
        client = Client(url, verbose=False)
        message, abc, notation, audio, scores, report = client.predict("a jig in D", api_name="/studio")
        empty = client.predict("  ", api_name="/studio")[0]
        status = client.predict(api_name="/status")
    start = "Start it with `make up` (or `make gateway` for your own manifests)."
    assert message == f"The studio could not compose: The inference server at {closed_url} is not running. {start}"
    assert status == f"The inference server at {closed_url} is not running. {start}"
    assert (abc, notation, audio, scores, report) == ("", "", None, None, "")
    assert empty.startswith("Write a prompt first")


def test_an_unknown_composer_is_named(closed_url):
    """The dropdown refuses other values over the API; the plain function names them too."""
    compose = load_app_module("app.sections.compose")
    message = compose.compose(closed_url, "a jig", target="v9")[0]
    assert message == "Unknown composer 'v9': choose one of newest, v1, v2, studio."


@pytest.mark.server
def test_a_plain_mlserver_serves_no_studio(app_module, ui_server):
    """Sections whose pipeline is not served say so, and where it would be."""
    with launched(app_module, ui_server.http_url) as url:
        client = Client(url, verbose=False)
        message, abc, *_ = client.predict("a jig in D", api_name="/studio")
        composed = client.predict("a jig in D", 1.0, 0, "fiddle", 7, 4, "studio", api_name="/compose")[0]
        by_version = client.predict("a jig in D", 1.0, 0, "fiddle", 7, 4, "v1", api_name="/compose")[0]
    assert message.startswith(f"The studio is not available: Pipeline 'studio' is not served at {ui_server.http_url}"), message
    assert "`make up`" in message and abc == ""
    assert composed.startswith("Could not compose: Pipeline 'studio' is not served"), composed
    assert by_version.startswith("Composed and played on fiddle"), by_version
    assert by_version.endswith("Answered by `tune-generator` v1."), by_version  # MLServer names the version


# -- against a Seldon gateway ------------------------------------------------------------------------
@pytest.mark.server
def test_the_studio_shows_the_winner_its_scores_and_the_report(app_module, ui_gateway, tmp_path):
    with launched(app_module, ui_gateway.http_url, seldon=True) as url:
        client = Client(url, verbose=False, download_files=str(tmp_path))
        message, abc, notation, audio, scores, report = client.predict("a lively jig in D", api_name="/studio")
        seed = int(re.search(r"Seed (\d+)\.", message).group(1))
        again = client.predict("a lively jig in D", seed, 8, api_name="/studio")
    assert again[1] == abc and again[5] == report  # the same prompt, seed and bars: the same answer
    assert message.startswith("The critic chose **"), message
    assert "Answered by the `studio` pipeline (route " in message and "`:studio.pipeline:`" in message
    assert re.search(r"Request id `\w+`", message), message
    assert "K:" in abc and "<svg" in notation
    info = soundfile.info(audio)
    assert info.format == "WAV" and info.duration > 1
    table = dict(zip(scores["columns"], zip(*scores["data"])))
    assert len(table["candidate"]) >= 2, scores  # one bar per candidate: both generator versions at least
    assert all(0 <= s <= 1 for s in table["score"])
    assert table["result"].count("winner") == 1
    winner = table["candidate"][table["result"].index("winner")]
    assert f"chose **{winner}** of {len(table['candidate'])} candidates" in message
    assert report.strip() and winner in report  # the critic says why the others lost


@pytest.mark.server
def test_compose_says_which_version_or_pipeline_answered(app_module, ui_gateway):
    with launched(app_module, ui_gateway.http_url, seldon=True) as url:
        client = Client(url, verbose=False)
        v1 = client.predict("a reel in G", 1.0, 0, "fiddle", 7, 4, "v1", api_name="/compose")
        v2 = client.predict("a reel in G", 1.0, 0, "fiddle", 7, 4, "v2", api_name="/compose")
        newest = client.predict("a reel in G", 1.0, 0, "fiddle", 7, 4, api_name="/compose")
        studio = client.predict("a reel in G", 1.0, 0, "flute", 7, 4, "studio", api_name="/compose")
        status = client.predict(api_name="/status")
    assert v1[0].endswith("Answered by `tune-generator-v1` (route `:tune-generator-v1_1:`)."), v1[0]
    assert v2[0].endswith("Answered by `tune-generator-v2` (route `:tune-generator-v2_1:`)."), v2[0]
    assert newest[0].endswith("Answered by `tune-generator-v2` (route `:tune-generator-v2_1:`)."), newest[0]
    assert v1[1] != v2[1]  # two models, two tunes for the same seed
    assert studio[0].startswith("Composed and played on flute"), studio[0]
    assert "The critic chose " in studio[0] and "Answered by the `studio` pipeline" in studio[0]
    for route in (":tune-generator-v1_1:", ":tune-generator-v2_1:", ":studio.pipeline:"):
        assert f"`{route}`" in studio[0]
    assert "K:" in studio[1] and soundfile.info(studio[3]).frames > 0
    assert status.startswith(f"Seldon endpoint at {ui_gateway.http_url} is running: all "), status
    assert "`studio` ready" in status


@pytest.mark.server
def test_the_other_sections_work_through_the_gateway(app_module, ui_gateway, tmp_path):
    """Hum, Effects and Classify call their models by the same names on a Seldon endpoint."""
    from gradio_client import handle_file

    with launched(app_module, ui_gateway.http_url, seldon=True) as url:
        client = Client(url, verbose=False, download_files=str(tmp_path))
        composed = client.predict("a jig in D", 1.0, 0, "flute", 3, 4, "v1", api_name="/compose")
        classified = client.predict(handle_file(composed[3]), api_name="/classify")
        hummed = client.predict(handle_file(composed[3]), 4, 1.0, 5, "fiddle", api_name="/hum_to_tune")
    assert classified[0].startswith("Most likely a"), classified[0]
    assert hummed[0].startswith("Heard "), hummed[0]


SLOW = """
import asyncio

from mlserver import MLModel


class Slow(MLModel):
    async def load(self) -> bool:
        await asyncio.sleep(600)
        return True
"""


@pytest.mark.server
def test_the_ui_answers_while_the_models_load(app_module, tmp_path):
    """`make up` opens the UI before the gateway's models are loaded: the status line says they are loading,
    and the Studio says the pipeline is not ready, rather than failing."""
    import json

    from ui_gateway import start_gateway

    (tmp_path / "models" / "slow").mkdir(parents=True)
    (tmp_path / "models" / "slow" / "slow_runtime.py").write_text(SLOW)
    (tmp_path / "models" / "slow" / "model-settings.json").write_text(
        json.dumps({"name": "slow", "implementation": "slow_runtime.Slow"}))
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "models.yaml").write_text(
        f"apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n  name: slow\n"
        f"spec:\n  storageUri: {tmp_path / 'models' / 'slow'}\n---\n"
        "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: studio\n"
        "spec:\n  steps:\n    - name: slow\n  output:\n    steps: [slow]\n")
    gateway = start_gateway(tmp_path / "manifests", tmp_path / "models", tmp_path, ready_path="/ready")
    try:
        with launched(app_module, gateway.http_url, seldon=True) as url:
            client = Client(url, verbose=False)
            status = client.predict(api_name="/status")
            studio = client.predict("a jig in D", api_name="/studio")[0]
            composed = client.predict("a jig in D", 1.0, 0, "fiddle", 7, 4, "studio", api_name="/compose")[0]
    finally:
        gateway.stop()
    assert status == (f"Seldon endpoint at {gateway.http_url} is running: 0 of 1 models ready; loading: `slow`. "
                      "Pipelines: `studio` **not ready**."), status
    assert studio.startswith("The studio is not ready yet: Pipeline 'studio' at "), studio
    assert "still loading" in studio and "Try again in a moment" in studio
    assert composed.startswith("Could not compose: Pipeline 'studio' at "), composed
