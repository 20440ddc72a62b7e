"""The prompt-encoder runtime from notebook 2.1: N prompts in, N headers, tempos and confidences out."""

from __future__ import annotations

import asyncio
import copy
import json

import pytest
import torch
from mlserver.settings import ModelSettings
from runtime_helpers import output, predict, sample_request

from tunesmith.serving.inputs import BadInput

SAMPLE = sample_request("prompt-encoder")
CONFIDENCES = ["meter_confidence", "key_confidence", "rhythm_confidence", "tempo_confidence"]


def prompts(data, shape=None, datatype="BYTES"):
    return {"inputs": [{"name": "prompt", "datatype": datatype, "shape": shape or [len(data)], "data": data}]}


def test_sample_request_gives_one_row_per_prompt_in_every_output(prompt_encoder):
    response = predict(prompt_encoder, SAMPLE)
    assert response.model_name == "prompt-encoder"
    n = len(SAMPLE["inputs"][0]["data"])
    expected = {"header": "BYTES", "tempo": "INT32", **{name: "FP32" for name in CONFIDENCES}}
    assert {o.name: o.datatype for o in response.outputs} == expected
    for o in response.outputs:
        assert o.shape == [n], o.name
        assert len(o.data.root) == n, o.name


def test_stated_facts_are_kept_with_full_confidence(prompt_encoder):
    response = predict(prompt_encoder, SAMPLE)
    reel = output(response, "header").data.root[0]
    reel = reel.decode() if isinstance(reel, bytes) else reel
    assert "R:reel" in reel and "K:G" in reel and "M:2/2" in reel
    assert output(response, "key_confidence").data.root[0] == pytest.approx(1.0)
    assert output(response, "rhythm_confidence").data.root[0] == pytest.approx(1.0)
    assert output(response, "tempo").data.root[2] == 60
    assert output(response, "tempo_confidence").data.root[2] == pytest.approx(1.0)


def test_meaning_is_read_where_no_keyword_says_it(prompt_encoder):
    """A lullaby is slow and (here) minor, though the text names no tempo or key."""
    response = predict(prompt_encoder, SAMPLE)
    header = output(response, "header").data.root[1]
    header = header.decode() if isinstance(header, bytes) else header
    assert "K:" in header and output(response, "tempo").data.root[1] < 100
    for name in CONFIDENCES:
        assert 0.0 <= output(response, name).data.root[1] <= 1.0


def test_one_torch_thread_as_configured(prompt_encoder, platform_models):
    extra = json.loads((platform_models / "prompt-encoder" / "model-settings.json").read_text())["parameters"]["extra"]
    assert extra["torch_threads"] == 1
    assert torch.get_num_threads() == 1


def test_limits_come_from_the_settings(prompt_encoder):
    assert prompt_encoder.max_prompts == 16 and prompt_encoder.max_prompt_chars == 500
    assert prompt_encoder.candidates == 1


def load_with(platform_models, **extra):
    """The runtime with ``parameters.extra`` changed as a Seldon Model's ``parameters`` change it: as strings."""
    settings = ModelSettings.parse_file(str(platform_models / "prompt-encoder" / "model-settings.json"))
    settings.parameters.extra.update(extra)
    runtime = settings.implementation(settings)
    asyncio.run(runtime.load())
    return runtime


def test_candidates_repeat_each_prompts_row(platform_models, prompt_encoder):
    """Stage 3's `brief` Model: the same folder with candidates "3", one header row per tune to write."""
    brief = load_with(platform_models, candidates="3")
    one, three = predict(prompt_encoder, SAMPLE), predict(brief, SAMPLE)
    n = len(SAMPLE["inputs"][0]["data"])
    for o in three.outputs:
        assert o.shape == [3 * n], o.name
        assert list(o.data.root) == [v for v in output(one, o.name).data.root for _ in range(3)], o.name


@pytest.mark.parametrize("value", ["0", "17", "three"])
def test_a_bad_candidates_setting_fails_the_load(platform_models, value):
    with pytest.raises(ValueError):
        load_with(platform_models, candidates=value)


BAD = {
    "missing prompt": ({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a jig"]}]}, ["prompt", "missing"]),
    "prompt as numbers": (prompts([1, 2], datatype="INT32"), ["prompt", "BYTES"]),
    "empty prompt": (prompts(["   "]), ["prompt", "empty"]),
    "too many prompts": (prompts(["a jig"] * 17), ["prompt", "at most 16"]),
    "too long a prompt": (prompts(["jig " * 200]), ["prompt", "characters"]),
    "shape disagrees with data": (prompts(["a jig"], shape=[4]), ["prompt", "shape"]),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_a_400_naming_the_problem(prompt_encoder, case):
    payload, words = BAD[case]
    with pytest.raises(BadInput) as caught:
        predict(prompt_encoder, copy.deepcopy(payload))
    assert caught.value.status_code == 400
    for word in words:
        assert word.lower() in str(caught.value).lower(), str(caught.value)
