"""Bad input gets a 4xx whose message names the problem, and the server keeps serving."""

from __future__ import annotations

import pytest
import requests

pytestmark = [pytest.mark.server, pytest.mark.slow]

TUNE = "X:1\nT:t\nM:6/8\nL:1/8\nK:D\n|:dAF DFA|dfe dcB|AFD DFA|BGE E3:|\n"


def prompt(data, datatype="BYTES", shape=None):
    return {"name": "prompt", "datatype": datatype, "shape": shape or [len(data)], "data": data}


def scalar(name, datatype, value):
    return {"name": name, "datatype": datatype, "shape": [1], "data": [value]}


def abc(text):
    return {"name": "abc", "datatype": "BYTES", "shape": [1], "data": [text]}


# (model, inputs, words the error message must contain)
CASES = {
    "missing prompt": ("tune-generator", [scalar("seed", "INT64", 1)], ["prompt"]),
    "prompt sent as numbers": ("tune-generator", [prompt([1, 2], "INT64")], ["prompt", "BYTES"]),
    "oversized prompt": ("tune-generator", [prompt(["jig " * 5000])], ["prompt", "characters"]),
    "thousands of prompts": ("tune-generator", [prompt(["a jig"] * 5000)], ["prompt", "5000"]),
    "negative temperature": ("tune-generator", [prompt(["a jig"]), scalar("temperature", "FP32", -1.0)], ["temperature"]),
    "zero bars": ("tune-generator", [prompt(["a jig"]), scalar("bars", "INT32", 0)], ["bars"]),
    "shape disagrees with data": ("tune-generator", [prompt(["a jig", "a reel"], shape=[5])], ["shape"]),
    "seed as text": ("tune-generator", [prompt(["a jig"]), scalar("seed", "BYTES", "seven")], ["seed"]),
    "missing abc": ("synthesizer", [scalar("tempo", "INT32", 120)], ["abc"]),
    "text that is not ABC": ("synthesizer", [abc("hello, this is not music")], ["ABC"]),
    "megabytes of ABC": ("synthesizer", [abc(TUNE + "|dAF DFA" * 300_000)], ["abc"]),
    "tempo 0": ("synthesizer", [abc(TUNE), scalar("tempo", "INT32", 0)], ["tempo"]),
    "unknown instrument": ("synthesizer", [abc(TUNE), {"name": "instrument", "datatype": "BYTES", "shape": [1], "data": ["theremin"]}], ["instrument"]),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_a_4xx_that_names_the_problem(platform_server, case):
    model, inputs, words = CASES[case]
    response = requests.post(
        f"{platform_server.http_url}/v2/models/{model}/infer", json={"inputs": inputs}, timeout=60
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    message = response.json().get("error", "")
    for word in words:
        assert word.lower() in message.lower(), message


def test_malformed_json_is_a_4xx(platform_server):
    response = requests.post(
        f"{platform_server.http_url}/v2/models/tune-generator/infer",
        data='{"inputs": [{"name": "prompt"',
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert 400 <= response.status_code < 500


def test_unknown_model_is_a_404(platform_server):
    response = requests.post(
        f"{platform_server.http_url}/v2/models/no-such-model/infer", json={"inputs": [prompt(["x"])]}, timeout=10
    )
    assert response.status_code == 404


def test_server_keeps_serving_after_bad_input(platform_server):
    for case in CASES.values():
        model, inputs, _ = case
        requests.post(f"{platform_server.http_url}/v2/models/{model}/infer", json={"inputs": inputs}, timeout=60)
    ok = requests.post(
        f"{platform_server.http_url}/v2/models/tune-generator/infer", json={"inputs": [prompt(["a reel in G"])]}, timeout=60
    )
    assert ok.status_code == 200, ok.text
    assert requests.get(platform_server.http_url + "/v2/health/ready", timeout=5).status_code == 200
