"""The tune-critic runtime from notebook 3.2, in-process: candidates from several tensors in, the winner,
the scores, the report and exactly one of accept / retry out; on_reject and min_score from the settings."""

from __future__ import annotations

import asyncio
import copy

import pytest
from mlserver.settings import ModelSettings
from runtime_helpers import output, predict, sample_request

from tunesmith.generator.critic import RUN_LENGTH
from tunesmith.music.abc import dance_tempo
from tunesmith.music.corpus import read_split
from tunesmith.serving.inputs import BadInput

SAMPLE = sample_request("tune-critic")  # header [2]; candidates [1] twice: an off-key tune, then The Kesh
HEADER = SAMPLE["inputs"][0]["data"][0]
OFF_KEY, KESH = SAMPLE["inputs"][1]["data"][0], SAMPLE["inputs"][2]["data"][0]


def text(response, name) -> str:
    value = output(response, name).data.root[0]
    return value.decode() if isinstance(value, bytes) else value


def names(response) -> list[str]:
    return [o.name for o in response.outputs]


def load_with(platform_models, **extra):
    """The runtime with ``parameters.extra`` changed as a Seldon Model's ``parameters`` change it: as strings."""
    settings = ModelSettings.parse_file(str(platform_models / "tune-critic" / "model-settings.json"))
    settings.parameters.extra.update(extra)
    runtime = settings.implementation(settings)
    assert asyncio.run(runtime.load()) is True
    return runtime


def request(header, *tensors):
    inputs = [{"name": "header", "datatype": "BYTES", "shape": [1], "data": [header]}]
    inputs += [{"name": "candidates", "datatype": "BYTES", "shape": [len(t)], "data": list(t)} for t in tensors]
    return {"inputs": inputs}


@pytest.fixture(scope="module")
def strict(platform_models):
    return load_with(platform_models, on_reject="retry", min_score="0.97")


def test_every_candidates_tensor_is_read_in_order_and_the_best_wins(critic):
    response = predict(critic, SAMPLE)
    assert response.model_name == "tune-critic"
    assert names(response) == ["abc", "tempo", "scores", "report", "accept"]
    assert text(response, "abc") == KESH
    assert output(response, "tempo").data.root == [dance_tempo(KESH)]
    scores = output(response, "scores")
    assert scores.datatype == "FP32" and scores.shape == [2]
    assert scores.data.root[1] > scores.data.root[0]  # input order: the off-key tune first
    report = text(response, "report")
    assert "winner B" in report and "A lost" in report and "key fit" in report
    assert output(response, "accept").data.root == [True] and output(response, "accept").datatype == "BOOL"


def test_a_copy_of_a_corpus_tune_never_wins(critic):
    copied = next(t for t in read_split("test") if "R:jig" in t and "K:G" in t)
    response = predict(critic, request(HEADER, [copied, KESH]))
    assert text(response, "abc") == KESH
    assert "A lost: shares a" in text(response, "report")
    alone = predict(critic, request(HEADER, [copied]))  # nothing qualifies: no tune, retry
    assert names(alone) == ["scores", "report", "retry"]
    assert f"run of {RUN_LENGTH} notes" in text(alone, "report")


def test_settings_arrive_as_strings_and_set_the_strict_critic(critic, strict):
    assert (critic.service.on_reject, critic.service.min_score) == ("best", 0.0)
    assert (strict.service.on_reject, strict.service.min_score) == ("retry", 0.97)


def test_the_strict_critic_gives_no_tune_unless_accepted(critic, strict):
    best_total = max(output(predict(critic, SAMPLE), "scores").data.root)
    assert best_total < 0.97  # so the strict critic's min_score rejects this request
    response = predict(strict, SAMPLE)
    assert names(response) == ["scores", "report", "retry"]
    assert "-> retry (its total is below min_score 0.97)" in text(response, "report")
    lenient = copy.copy(strict)  # the same corpus index (seconds to build), without the min_score
    lenient.service = copy.copy(strict.service)
    lenient.service.min_score = 0.0
    assert names(predict(lenient, SAMPLE)) == ["abc", "tempo", "scores", "report", "accept"]


BAD = {
    "no candidates": ({"inputs": [{"name": "header", "datatype": "BYTES", "shape": [1], "data": [HEADER]}]},
                      ["missing input 'candidates'"]),
    "header without K:": (request("X:1\nM:6/8", [KESH]), ["header", "K:"]),
    "too many candidates": (request(HEADER, [KESH] * 20, [KESH] * 20), ["40 tunes", "at most 32"]),
    "candidates as numbers": ({"inputs": [{"name": "header", "datatype": "BYTES", "shape": [1], "data": [HEADER]},
                                          {"name": "candidates", "datatype": "INT32", "shape": [1], "data": [1]}]},
                              ["candidates", "BYTES"]),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_a_400_naming_the_problem(critic, case):
    payload, words = BAD[case]
    with pytest.raises(BadInput) as caught:
        predict(critic, copy.deepcopy(payload))
    assert caught.value.status_code == 400
    for word in words:
        assert word.lower() in str(caught.value).lower(), str(caught.value)


def test_an_unknown_on_reject_fails_the_load(platform_models):
    with pytest.raises(ValueError, match="on_reject"):
        load_with(platform_models, on_reject="sometimes")
