"""V2 input validation: every mistake becomes a BadInput (HTTP 400) that names the input."""

import pytest
from mlserver.settings import ModelParameters, ModelSettings
from mlserver.types import InferenceRequest, RequestInput

from tunesmith.serving.inputs import (
    BadInput,
    limit,
    read_byte_items,
    read_bytes,
    read_column,
    read_scalar,
    read_strings,
    which_input,
)


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


def test_byte_items_labelled_base64_are_decoded_also_when_they_arrive_as_bytes():
    """A REST caller's base64 file reaches a pipeline step over gRPC as the bytes of its text."""
    import base64

    labelled = RequestInput(name="audio", datatype="BYTES", shape=[1], data=[base64.b64encode(b"RIFF\x00")],
                            parameters={"content_type": "base64"})
    assert read_bytes(request(labelled), "audio", max_bytes=100) == b"RIFF\x00"
    labelled.data = [b"RIFF\x00"]
    with pytest.raises(BadInput, match="'audio' is not valid base64"):
        read_bytes(request(labelled), "audio", max_bytes=100)


def test_limits_come_from_model_settings():
    settings = ModelSettings(name="m", implementation="mlserver.MLModel", parameters=ModelParameters(extra={"max_prompts": 8}))
    assert limit(settings, "max_prompts", 1) == 8
    assert limit(settings, "max_bars", 32) == 32


def column(name, datatype, values, shape=None) -> RequestInput:
    return RequestInput(name=name, datatype=datatype, shape=shape or [len(values)], data=values)


def test_a_column_gives_one_value_per_row_from_one_value_or_one_per_row():
    req = request(column("bars", "INT32", [4]), column("temperature", "FP32", [0.5, 1.5, 1.0]))
    assert read_column(req, "bars", 3, kind=int, default=16) == [4, 4, 4]
    assert read_column(req, "temperature", 3, kind=float, default=1.0) == [0.5, 1.5, 1.0]
    assert read_column(req, "seed", 3, kind=int, default=None) == [None, None, None]
    nested = request(column("bars", "INT64", [[2], [3]], shape=[2, 1]))
    assert read_column(nested, "bars", 2, kind=int, default=16) == [2, 3]
    (two,) = read_column(request(column("bars", "FP64", [2.0])), "bars", 1, kind=int, default=16)
    assert two == 2 and isinstance(two, int)


def test_a_column_steps_one_shared_value_across_the_rows():
    """One seed for three prompts gives seeds s, s+1, s+2; seeds sent per row are kept as sent."""
    assert read_column(request(column("seed", "INT64", [10])), "seed", 3, kind=int, default=0, step=1) == [10, 11, 12]
    assert read_column(request(column("seed", "INT64", [5, 5])), "seed", 2, kind=int, default=0, step=1) == [5, 5]
    assert read_column(request(), "seed", 2, kind=int, default=7, step=1) == [7, 8]


def test_a_column_is_range_checked_with_the_same_message_as_a_scalar():
    for value, kwargs in [(-1, dict(low=0, high=9)), (0.0, dict(low=0.0, high=2.0, low_inclusive=False)), (10, dict(high=9))]:
        datatype = "FP64" if isinstance(value, float) else "INT64"
        kind = float if isinstance(value, float) else int
        req = request(number("x", datatype, value))
        with pytest.raises(BadInput) as scalar:
            read_scalar(req, "x", kind=kind, default=None, **kwargs)
        with pytest.raises(BadInput) as per_row:
            read_column(req, "x", 1, kind=kind, default=None, **kwargs)
        assert str(per_row.value) == str(scalar.value)
    assert str(per_row.value) == "input 'x' = 10 is out of range, 9]"


@pytest.mark.parametrize(
    "inp, kwargs, message",
    [
        (column("seed", "INT64", [1, 2, 3]), dict(kind=int), "input 'seed' has 3 values for 2 rows; send 1 (for all rows) or 2 "
         "(requests merged by adaptive batching need one value per row each)"),
        (column("seed", "BYTES", ["seven"]), dict(kind=int), "input 'seed' must be a number, got BYTES"),
        (column("seed", "FP64", [1.5]), dict(kind=int), "input 'seed' must be a whole number, got 1.5"),
        (column("seed", "FP64", [float("nan")]), dict(kind=int), "input 'seed' must be a whole number, got nan"),
        (column("seed", "INT64", [1, 2], shape=[5]), dict(kind=int), "input 'seed': cannot reshape array of size 2 into shape (5,)"),
        (column("seed", "INT64", [3, -1]), dict(kind=int, low=0, high=9), "input 'seed' = -1 is out of range [0, 9]"),
        (column("t", "FP64", [float("nan")]), dict(kind=float, low=0.0, high=2.0, low_inclusive=False),
         "input 't' = nan is out of range (0.0, 2.0]"),
        (column("t", "FP32", [2.1]), dict(kind=float, low=0.0, high=2.0), "input 't' = 2.0999999046325684 is out of range [0.0, 2.0]"),
    ],
)
def test_bad_columns_name_the_problem(inp, kwargs, message):
    with pytest.raises(BadInput) as err:
        read_column(request(inp), inp.name, 2, default=None, **kwargs)
    assert err.value.status_code == 400
    assert str(err.value) == message


def test_exactly_one_of_two_alternative_inputs():
    assert which_input(request(strings(["a jig"])), "prompt", "header") == "prompt"
    assert which_input(request(strings(["M:6/8\nK:D"], name="header")), "prompt", "header") == "header"
    with pytest.raises(BadInput, match=r"^missing input 'prompt' \(or 'header'\): send exactly one of the two, got neither$"):
        which_input(request(number("seed", "INT64", 1)), "prompt", "header")
    with pytest.raises(BadInput, match="^send exactly one of the inputs 'prompt' or 'header', got prompt and header$"):
        which_input(request(strings(["a"]), strings(["M:6/8\nK:D"], name="header")), "prompt", "header")
