"""The tune-generator runtime from notebook 1.3: N prompts in, N tunes out, bad input refused as 400."""

from __future__ import annotations

import asyncio
import copy

import pytest
import torch
from mlserver.codecs import StringCodec
from runtime_helpers import output, predict, sample_request

from tunesmith.generator.quality import bar_checks_of
from tunesmith.serving.inputs import BadInput, limit

SAMPLE = sample_request("tune-generator")


def prompts(*texts, shape=None, datatype="BYTES"):
    return {"name": "prompt", "datatype": datatype, "shape": list(shape or [len(texts)]), "data": list(texts)}


def scalar(name, datatype, value):
    return {"name": name, "datatype": datatype, "shape": [1], "data": [value]}


def tunes_of(response) -> list[str]:
    abc = output(response, "abc")
    assert abc.datatype == "BYTES" and abc.shape == [len(abc.data.root)]
    return StringCodec.decode_output(abc)


def field(tune: str, name: str) -> str:
    return next(line[2:].strip() for line in tune.splitlines() if line.startswith(name + ":"))


def compose(generator, *texts, seed=7, bars=4, **extra) -> list[str]:
    inputs = [prompts(*texts), scalar("seed", "INT64", seed), scalar("bars", "INT32", bars)]
    inputs += [scalar(k, "FP32", v) for k, v in extra.items()]
    return tunes_of(predict(generator, {"inputs": inputs}))


def test_load_sets_torch_threads_from_the_settings(generator):
    torch.set_num_threads(1 if int(limit(generator.settings, "torch_threads", 1)) != 1 else 2)
    assert asyncio.run(generator.load()) is True
    assert torch.get_num_threads() == int(limit(generator.settings, "torch_threads", None))


def test_sample_request_gives_one_complete_tune_per_prompt(generator):
    response = predict(generator, SAMPLE)
    assert response.model_name == "tune-generator" and response.model_version == "v1"
    jig, waltz = tunes_of(response)
    for tune in (jig, waltz):
        for name in ("X", "T", "M", "L", "K"):
            assert field(tune, name)
    assert (field(jig, "M"), field(jig, "K")) == ("6/8", "D")
    assert (field(waltz, "M"), field(waltz, "K")) == ("3/4", "Am")


def test_same_prompt_and_seed_give_the_same_tune(generator):
    assert compose(generator, "a reel in G", seed=3) == compose(generator, "a reel in G", seed=3)
    assert compose(generator, "a reel in G", seed=3) != compose(generator, "a reel in G", seed=4)


def test_row_i_uses_seed_plus_i(generator):
    pair = compose(generator, "a reel in G", "a reel in G", seed=10)
    assert pair[1] == compose(generator, "a reel in G", seed=11)[0]
    assert pair[0] != pair[1]


def test_bars_controls_the_length(generator):
    short = compose(generator, "a polka in A", bars=2)[0]
    long = compose(generator, "a polka in A", bars=12)[0]
    assert len(bar_checks_of(short)) < len(bar_checks_of(long))


def test_seed_temperature_and_bars_are_optional(generator):
    response = predict(generator, {"inputs": [prompts("a jig")]})
    assert field(tunes_of(response)[0], "M") == "6/8"


def test_a_batch_dimension_is_accepted(generator):
    """StringCodec.encode_input sends [N, 1]; the element count is what matters."""
    request = {"inputs": [prompts("a jig in D", "a reel in G", shape=[2, 1]), scalar("bars", "INT32", 2)]}
    assert len(tunes_of(predict(generator, request))) == 2


@pytest.mark.parametrize("key", ["max_prompts", "max_prompt_chars", "max_bars", "default_bars", "max_temperature", "torch_threads"])
def test_limits_are_explicit_in_model_settings(generator, key):
    assert key in generator.settings.parameters.extra


def test_the_prompt_limit_is_where_the_settings_say(generator):
    most = int(limit(generator.settings, "max_prompts", None))
    at_limit = {"inputs": [prompts(*["a jig"] * most), scalar("bars", "INT32", 1)]}
    assert len(tunes_of(predict(generator, at_limit))) == most
    with pytest.raises(BadInput, match=f"at most {most}"):
        predict(generator, {"inputs": [prompts(*["a jig"] * (most + 1)), scalar("bars", "INT32", 1)]})


# (inputs, words the 400 message must contain)
BAD = {
    "missing prompt": ([scalar("seed", "INT64", 1)], ["prompt", "missing"]),
    "prompt sent as numbers": ([prompts(1, 2, datatype="INT64")], ["prompt", "BYTES"]),
    "empty prompt": ([prompts("  ")], ["prompt", "empty"]),
    "no prompts at all": ([prompts(shape=[0])], ["prompt", "empty"]),
    "oversized prompt": ([prompts("jig " * 5000)], ["prompt", "characters"]),
    "thousands of prompts": ([prompts(*["a jig"] * 5000)], ["prompt", "5000"]),
    "shape disagrees with data": ([prompts("a jig", "a reel", shape=[5])], ["prompt", "shape"]),
    "negative temperature": ([prompts("a jig"), scalar("temperature", "FP32", -1.0)], ["temperature", "range"]),
    "zero temperature": ([prompts("a jig"), scalar("temperature", "FP32", 0.0)], ["temperature"]),
    "huge temperature": ([prompts("a jig"), scalar("temperature", "FP32", 1e6)], ["temperature"]),
    "temperature as text": ([prompts("a jig"), scalar("temperature", "BYTES", "hot")], ["temperature"]),
    "zero bars": ([prompts("a jig"), scalar("bars", "INT32", 0)], ["bars"]),
    "too many bars": ([prompts("a jig"), scalar("bars", "INT32", 10_000)], ["bars"]),
    "negative seed": ([prompts("a jig"), scalar("seed", "INT64", -1)], ["seed"]),
    "seed as text": ([prompts("a jig"), scalar("seed", "BYTES", "seven")], ["seed"]),
    "two seeds": ([prompts("a jig"), {"name": "seed", "datatype": "INT64", "shape": [2], "data": [1, 2]}], ["seed"]),
    "fractional seed": ([prompts("a jig"), scalar("seed", "FP64", 1.5)], ["seed"]),
    "a key the model never saw": ([prompts("a reel in G# locrian")], ["prompt", "key"]),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_a_400_naming_the_problem(generator, case):
    inputs, words = BAD[case]
    with pytest.raises(BadInput) as caught:
        predict(generator, {"inputs": inputs})
    assert caught.value.status_code == 400
    for word in words:
        assert word.lower() in str(caught.value).lower(), str(caught.value)


def test_still_serving_after_bad_input(generator):
    for inputs, _ in BAD.values():
        with pytest.raises(BadInput):
            predict(generator, {"inputs": inputs})
    request = copy.deepcopy(SAMPLE)
    request["inputs"][3]["data"] = [2]
    assert len(tunes_of(predict(generator, request))) == 2
