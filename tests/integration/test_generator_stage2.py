"""Stage 2 of the tune generator against the real server: two versions, adaptive batching with
concurrent clients, openings over REST, and the custom metric on /metrics."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tunesmith import paths
from tunesmith.generator.model import TuneGenerator
from tunesmith.generator.prompt import parse_prompt

pytestmark = [pytest.mark.server, pytest.mark.slow]

PROMPT = "a reel in G"


def column(name, datatype, values):
    return {"name": name, "datatype": datatype, "shape": [len(values)], "data": list(values)}


def infer(server, inputs, version=None) -> dict:
    path = "/v2/models/tune-generator" + (f"/versions/{version}" if version else "") + "/infer"
    response = requests.post(server.http_url + path, json={"inputs": inputs}, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def one_tune(server, seed: int, bars: int = 4, version: str = "v1") -> str:
    body = infer(server, [column("prompt", "BYTES", [PROMPT]), column("seed", "INT64", [seed]),
                          column("bars", "INT32", [bars])], version)
    (abc,) = body["outputs"]
    assert abc["shape"] == [1]
    return abc["data"][0]


def test_both_versions_answer_and_the_newest_is_the_default(platform_server):
    inputs = [column("prompt", "BYTES", [PROMPT]), column("seed", "INT64", [5]), column("bars", "INT32", [4])]
    v1, v2, default = (infer(platform_server, inputs, version) for version in ("v1", "v2", None))
    assert (v1["model_version"], v2["model_version"], default["model_version"]) == ("v1", "v2", "v2")
    assert default["outputs"] == v2["outputs"]
    assert v1["outputs"] != v2["outputs"]
    for version in ("v1", "v2"):
        meta = requests.get(f"{platform_server.http_url}/v2/models/tune-generator/versions/{version}", timeout=10)
        assert meta.status_code == 200 and meta.json()["name"] == "tune-generator"


def test_concurrent_clients_each_get_their_own_tune(platform_server):
    """Batched with others, a one-tune request gets what the library writes for it alone."""
    seeds = list(range(100, 116))
    with ThreadPoolExecutor(len(seeds)) as pool:
        together = list(pool.map(lambda s: one_tune(platform_server, s), seeds))
    generator = TuneGenerator.from_pretrained(paths.CHECKPOINTS / "tune-generator", threads=1)
    header = parse_prompt(PROMPT)
    for seed, tune in zip(seeds, together):
        alone = generator.generate([header], [seed], bars=4)[0]
        assert tune == alone, seed


def test_a_bad_request_fails_only_its_own_caller_when_batched(platform_server):
    """A merged batch refused because of one request is re-run request by request."""
    seeds = list(range(200, 208))
    good = [[column("prompt", "BYTES", [PROMPT]), column("seed", "INT64", [s]), column("bars", "INT32", [4])]
            for s in seeds]
    bad = [column("header", "BYTES", ["M:2/4\nR:polka\nK:G"]), column("seed", "INT64", [1]), column("bars", "INT32", [4])]
    sent = good[:4] + [bad] + good[4:]

    def post(inputs):
        return requests.post(f"{platform_server.http_url}/v2/models/tune-generator/versions/v1/infer",
                             json={"inputs": inputs}, timeout=300)

    with ThreadPoolExecutor(len(sent)) as pool:
        replies = list(pool.map(post, sent))
    refused = replies.pop(4)
    assert refused.status_code == 400 and "unknown rhythm 'polka'" in refused.json()["error"]
    assert all(r.status_code == 200 for r in replies), [r.text[:200] for r in replies if r.status_code != 200]
    assert [r.json()["outputs"][0]["data"][0] for r in replies] == [one_tune(platform_server, s) for s in seeds]


def test_a_multi_row_request_stays_whole_when_batching_is_on(platform_server):
    """prompt [2] with seed [1] gets two tunes back: row i uses seed + i, as without batching."""
    body = infer(platform_server, [column("prompt", "BYTES", [PROMPT, "a jig in D"]), column("seed", "INT64", [1]),
                                   column("bars", "INT32", [4])], "v1")
    (abc,) = body["outputs"]
    assert abc["shape"] == [2] and len(abc["data"]) == 2
    assert abc["data"][0] == one_tune(platform_server, 1)
    assert abc["data"][1].splitlines()[2:6] == ["M:6/8", "L:1/8", "R:jig", "K:D"]


def test_an_opening_over_rest_and_a_bad_one_is_a_400(platform_server):
    inputs = [column("prompt", "BYTES", ["a jig in D"]), column("abc_prefix", "BYTES", ["d2B A2F | D2F A2d |"]),
              column("seed", "INT64", [1]), column("bars", "INT32", [8])]
    tune = infer(platform_server, inputs, "v2")["outputs"][0]["data"][0]
    assert tune.split("K:D\n", 1)[1].startswith("d2B A2F | D2F A2d |")
    inputs[1] = column("abc_prefix", "BYTES", ["hello"])
    response = requests.post(f"{platform_server.http_url}/v2/models/tune-generator/infer", json={"inputs": inputs}, timeout=60)
    assert response.status_code == 400 and "abc_prefix" in response.json()["error"]


def test_generated_notes_reach_the_metrics_endpoint(platform_server):
    one_tune(platform_server, 7)
    text = requests.get(platform_server.metrics_url, timeout=10).text
    counts = [line for line in text.splitlines() if line.startswith("generated_notes_per_tune_count")]
    assert counts, "no generated_notes_per_tune histogram on /metrics"
    assert any('model_name="tune-generator"' in line and float(line.rsplit(" ", 1)[1]) >= 1 for line in counts)
