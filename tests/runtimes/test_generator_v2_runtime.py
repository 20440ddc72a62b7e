"""The stage-2 tune-generator runtime from notebook 2.5, in-process: prompt or header, openings,
per-row parameters, and both version folders."""

from __future__ import annotations

import json

import pytest
from mlserver.codecs import StringCodec
from runtime_helpers import load_runtime, output, predict

from tunesmith.music.abc import Header, read_tune
from tunesmith.serving.inputs import BadInput

JIG_HEADER = Header(meter="6/8", key="D", rhythm="jig").to_abc()


@pytest.fixture(scope="module")
def v2(platform_models):
    return load_runtime(platform_models, "tune-generator-v2")


def column(name, datatype, values):
    return {"name": name, "datatype": datatype, "shape": [len(values)], "data": list(values)}


def tunes(runtime, *inputs) -> list[str]:
    abc = output(predict(runtime, {"inputs": list(inputs)}), "abc")
    assert abc.datatype == "BYTES" and abc.shape == [len(abc.data.root)]
    return StringCodec.decode_output(abc)


def refused(runtime, *inputs) -> str:
    with pytest.raises(BadInput) as info:
        predict(runtime, {"inputs": list(inputs)})
    assert info.value.status_code == 400
    return str(info.value)


def test_both_folders_serve_the_same_name_as_two_versions(platform_models):
    v1 = json.loads((platform_models / "tune-generator" / "model-settings.json").read_text())
    v2 = json.loads((platform_models / "tune-generator-v2" / "model-settings.json").read_text())
    assert v1["name"] == v2["name"] == "tune-generator"
    assert (v1["parameters"]["version"], v2["parameters"]["version"]) == ("v1", "v2")
    assert v1["max_batch_size"] > 1 and v1["max_batch_time"] > 0
    assert v1["parameters"]["extra"]["max_prompts"] >= v1["max_batch_size"]
    assert (platform_models / "tune-generator-v2" / "weights" / "model.safetensors").exists()


def test_a_header_gives_the_same_tune_as_the_prompt_it_came_from(generator):
    by_prompt = tunes(generator, column("prompt", "BYTES", ["a jig in D"]), column("seed", "INT64", [7]),
                      column("bars", "INT32", [4]))
    by_header = tunes(generator, column("header", "BYTES", [JIG_HEADER]), column("seed", "INT64", [7]),
                      column("bars", "INT32", [4]))
    assert by_header == by_prompt


@pytest.mark.parametrize("inputs, words", [
    ([column("prompt", "BYTES", ["a jig"]), column("header", "BYTES", [JIG_HEADER])], ["exactly one", "prompt and header"]),
    ([column("seed", "INT64", [1])], ["exactly one", "neither"]),
    ([column("header", "BYTES", ["M:6/8"])], ["header", "K:"]),
    ([column("header", "BYTES", ["M:6/8\nK:H"])], ["header", "key"]),
    ([column("header", "BYTES", ["M:2/4\nR:polka\nK:G"])], ["header", "unknown rhythm 'polka'", "reel"]),
])
def test_exactly_one_of_prompt_or_header(generator, inputs, words):
    message = refused(generator, *inputs)
    for word in words:
        assert word in message


def test_one_value_applies_to_every_row_and_n_values_to_one_row_each(generator):
    texts = ["a jig in D", "a reel in G"]
    shared = tunes(generator, column("prompt", "BYTES", texts), column("seed", "INT64", [7]),
                   column("temperature", "FP32", [0.8]), column("bars", "INT32", [4]))
    per_row = tunes(generator, column("prompt", "BYTES", texts), column("seed", "INT64", [7, 8]),
                    column("temperature", "FP32", [0.8, 0.8]), column("bars", "INT32", [4, 4]))
    assert shared == per_row  # one seed: row i uses seed + i
    mixed = tunes(generator, column("prompt", "BYTES", texts), column("seed", "INT64", [7, 8]),
                  column("bars", "INT32", [4, 6]))
    alone = tunes(generator, column("prompt", "BYTES", texts[1:]), column("seed", "INT64", [8]),
                  column("bars", "INT32", [6]))
    assert mixed[1] == alone[0]
    assert "3 values for 2 rows" in refused(generator, column("prompt", "BYTES", texts), column("seed", "INT64", [1, 2, 3]))


def test_shape_n_by_1_is_read_like_n(generator):
    flat = tunes(generator, column("prompt", "BYTES", ["a jig in D"]), column("seed", "INT64", [3]), column("bars", "INT32", [4]))
    nested = tunes(generator, column("prompt", "BYTES", ["a jig in D"]),
                   {"name": "seed", "datatype": "INT64", "shape": [1, 1], "data": [[3]]},
                   {"name": "bars", "datatype": "INT32", "shape": [1, 1], "data": [[4]]})
    assert nested == flat


def test_an_opening_is_continued_and_a_bad_one_is_a_400(v2):
    (tune,) = tunes(v2, column("prompt", "BYTES", ["a jig in D"]), column("abc_prefix", "BYTES", ["d2B A2F | D2F A2d |"]),
                    column("seed", "INT64", [1]), column("bars", "INT32", [8]))
    assert read_tune(tune)[1][:10] == ["d2", "B", "A2", "F", "|", "D2", "F", "A2", "d", "|"]
    empty = tunes(v2, column("prompt", "BYTES", ["a jig in D"]), column("abc_prefix", "BYTES", [""]),
                  column("seed", "INT64", [1]), column("bars", "INT32", [4]))
    none = tunes(v2, column("prompt", "BYTES", ["a jig in D"]), column("seed", "INT64", [1]), column("bars", "INT32", [4]))
    assert empty == none
    for bad, word in [("hello", "'h'"), ("A2B c2d e2 | f", "does not fit"), ("d2B|" * 40, "bars")]:
        message = refused(v2, column("prompt", "BYTES", ["a jig in D"]), column("abc_prefix", "BYTES", [bad]),
                          column("bars", "INT32", [8]))
        assert "abc_prefix" in message and word in message
    assert "2 values for 1 rows" in refused(v2, column("prompt", "BYTES", ["a jig"]), column("abc_prefix", "BYTES", ["A", "B"]))


def test_the_versions_are_different_models(generator, v2):
    inputs = [column("prompt", "BYTES", ["a reel in G"]), column("seed", "INT64", [5]), column("bars", "INT32", [8])]
    assert tunes(generator, *inputs) != tunes(v2, *inputs)
    assert v2.version == "v2" and generator.version == "v1"


def test_the_v2_folder_is_the_v1_folder_with_another_version_and_weights(platform_models):
    v1, v2 = platform_models / "tune-generator", platform_models / "tune-generator-v2"
    assert (v2 / "generator_runtime.py").read_bytes() == (v1 / "generator_runtime.py").read_bytes()
    settings = json.loads((v2 / "model-settings.json").read_text())
    assert settings["parameters"].pop("version") == "v2"
    expected = json.loads((v1 / "model-settings.json").read_text())
    expected["parameters"].pop("version")
    assert settings == expected
