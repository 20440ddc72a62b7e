"""V2 input validation: every mistake becomes a BadInput (HTTP 400) that names the input."""

import pytest
from mlserver.settings import ModelParameters, ModelSettings
from mlserver.types import InferenceRequest, RequestInput

from tunesmith.serving.inputs import BadInput, limit, read_byte_items, read_bytes, read_scalar, read_strings


def request(*inputs: RequestInput) -> InferenceRequest:
    return InferenceRequest(inputs=list(inputs))


def strings(data, shape=None, datatype="BYTES", name="prompt") -> RequestInput:
    return RequestInput(name=name, datatype=datatype, shape=shape or [len(data)], data=data)


def number(name, datatype, value) -> RequestInput:
    return RequestInput(name=name, datatype=datatype, shape=[1], data=[value])


def test_reads_strings_from_json_text_and_grpc_bytes():
    assert read_strings(request(strings(["a jig", "a reel"])), "prompt", max_items=4, max_chars=20) == ["a jig", "a reel"]
    assert read_strings(request(strings([b"a jig"])), "prompt", max_items=4, max_chars=20) == ["a jig"]


def test_nested_data_is_flattened():
    assert read_strings(request(strings([["a"], ["b"]], shape=[2, 1])), "prompt", max_items=4, max_chars=5) == ["a", "b"]


@pytest.mark.parametrize(
    "inp, words",
    [
        (strings(["a", "b"], shape=[3]), ["shape", "3", "2"]),
        (strings([1, 2], datatype="INT64"), ["BYTES", "INT64"]),
        (strings(["x" * 30]), ["30 characters", "20"]),
        (strings(["a"] * 5), ["5 items", "4"]),
        (strings(["   "]), ["empty"]),
        (strings([b"\xff\xfe"]), ["UTF-8"]),
        (strings(["a"], name="other"), ["missing", "'other'"]),
    ],
)
def test_bad_strings_name_the_problem(inp, words):
    with pytest.raises(BadInput) as err:
        read_strings(request(inp), "prompt", max_items=4, max_chars=20)
    assert err.value.status_code == 400
    for word in words:
        assert word in str(err.value)


def test_optional_string_input_may_be_absent():
    assert read_strings(request(strings(["a"])), "header", max_items=1, max_chars=9, required=False) is None


def test_scalars_default_convert_and_check_range():
    req = request(number("seed", "INT64", 7), number("temperature", "FP32", 0.8))
    assert read_scalar(req, "seed", kind=int, default=None) == 7
    assert read_scalar(req, "temperature", kind=float, default=1.0, low=0, high=2, low_inclusive=False) == 0.8
    assert read_scalar(req, "bars", kind=int, default=16) == 16


@pytest.mark.parametrize(
    "inp, kwargs, words",
    [
        (number("temperature", "FP32", -1.0), dict(kind=float, low=0, high=2, low_inclusive=False), ["temperature", "range"]),
        (number("temperature", "FP32", 0.0), dict(kind=float, low=0, high=2, low_inclusive=False), ["(0"]),
        (number("temperature", "FP32", float("nan")), dict(kind=float), ["finite"]),
        (number("seed", "BYTES", "seven"), dict(kind=int), ["seed", "INT"]),
        (number("seed", "FP32", 1.5), dict(kind=int), ["INT"]),
        (RequestInput(name="seed", datatype="INT64", shape=[2], data=[1, 2]), dict(kind=int), ["exactly one"]),
    ],
)
def test_bad_scalars_name_the_problem(inp, kwargs, words):
    with pytest.raises(BadInput) as err:
        read_scalar(request(inp), inp.name, default=None, **kwargs)
    for word in words:
        assert word in str(err.value)


def test_bytes_accept_raw_and_base64():
    raw = b"RIFF\x00\x01"
    import base64

    assert read_bytes(request(strings([raw], name="audio")), "audio", max_bytes=100) == raw
    assert read_bytes(request(strings([base64.b64encode(raw).decode()], name="audio")), "audio", max_bytes=100) == raw
    with pytest.raises(BadInput, match="at most 3"):
        read_bytes(request(strings([raw], name="audio")), "audio", max_bytes=3)


def test_byte_items_give_one_file_per_row_and_name_the_bad_row():
    import base64

    files = [b"RIFF\x00\x01", b"fLaC\x00"]
    sent = [files[0], base64.b64encode(files[1]).decode()]  # gRPC bytes and REST base64 can mix
    assert read_byte_items(request(strings(sent, name="audio")), "audio", max_bytes=100, max_items=4) == files
    with pytest.raises(BadInput, match=r"'audio'\[1\] is empty"):
        read_byte_items(request(strings([files[0], b""], name="audio")), "audio", max_bytes=100, max_items=4)
    with pytest.raises(BadInput, match="at most 2 elements per request, got 3"):
        read_byte_items(request(strings(files + files[:1], name="audio")), "audio", max_bytes=100, max_items=2)
    with pytest.raises(BadInput, match="exactly one element, got 2"):
        read_bytes(request(strings(files, name="audio")), "audio", max_bytes=100)


def test_limits_come_from_model_settings():
    settings = ModelSettings(name="m", implementation="mlserver.MLModel", parameters=ModelParameters(extra={"max_prompts": 8}))
    assert limit(settings, "max_prompts", 1) == 8
    assert limit(settings, "max_bars", 32) == 32
