"""Reading V2 inference requests safely inside MLServer runtimes.

MLServer checks that a request is well-formed JSON in the V2 shape, but not that an input's
``shape`` agrees with its data, that the datatype is the one the model expects, or that values are
in range. A runtime that trusts the request turns those mistakes into a 500 (or a hung worker).
These helpers raise :class:`BadInput`, an ``MLServerError`` with status 400 whose message names the
input and the problem; MLServer passes it back to the caller over REST and gRPC alike (also from
parallel inference workers), and the server keeps serving.

Limits (how many prompts, how long a prompt, ...) come from the model's ``model-settings.json``
under ``parameters.extra``, so they are explicit, per-model settings rather than constants hidden in
code: see :func:`limit`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.errors import MLServerError
from mlserver.settings import ModelSettings
from mlserver.types import InferenceRequest, RequestInput

INTEGER_TYPES = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
FLOAT_TYPES = {"FP16", "FP32", "FP64"}


class BadInput(MLServerError):
    """A request the model cannot serve because of what the caller sent (HTTP 400)."""

    def __init__(self, message: str):
        super().__init__(message, status_code=400)


def limit(settings: ModelSettings, key: str, default: Any) -> Any:
    """Read an explicit limit from ``parameters.extra`` in model-settings.json.

    Args:
        settings: the runtime's ``self.settings``.
        key: the name of the limit, e.g. ``"max_prompts"``.
        default: used when the model folder does not set it.
    """
    params = settings.parameters
    extra = (params.extra if params is not None else None) or {}
    return extra.get(key, default)


def find_input(request: InferenceRequest, name: str, *, required: bool = True) -> RequestInput | None:
    """Return the input called ``name``; a missing required input names the ones that were sent."""
    for inp in request.inputs:
        if inp.name == name:
            return inp
    if required:
        sent = ", ".join(repr(i.name) for i in request.inputs) or "none"
        raise BadInput(f"missing input {name!r} (inputs sent: {sent})")
    return None


def which_input(request: InferenceRequest, first: str, second: str) -> str:
    """Return which of two alternative inputs was sent (e.g. ``prompt`` text or a ready ``header``).

    A model that takes the same thing in two forms cannot guess which one the caller meant when
    both arrive, nor do anything when neither does, so both cases are refused, naming the two.
    """
    sent = [name for name in (first, second) if find_input(request, name, required=False) is not None]
    if not sent:
        raise BadInput(f"missing input {first!r} (or {second!r}): send exactly one of the two, got neither")
    if len(sent) == 2:
        raise BadInput(f"send exactly one of the inputs {first!r} or {second!r}, got {first} and {second}")
    return sent[0]


def _flat(data: Any) -> list:
    """V2 allows tensor data flattened or nested row by row; work with the flat list."""
    root = getattr(data, "root", data)
    if isinstance(root, (bytes, str)):
        return [root]
    out: list = []
    for item in root:
        if isinstance(item, (list, tuple)):
            out.extend(_flat(item))
        else:
            out.append(item)
    return out


def _check_shape(inp: RequestInput, values: Sequence) -> None:
    """The product of ``shape`` must equal the number of elements sent."""
    if any(d < 0 for d in inp.shape):
        raise BadInput(f"input {inp.name!r}: shape {inp.shape} has a negative dimension")
    expected = math.prod(inp.shape)
    if expected != len(values):
        raise BadInput(
            f"input {inp.name!r}: shape {inp.shape} says {expected} element(s) "
            f"but {len(values)} were sent"
        )


def _check_datatype(inp: RequestInput, allowed: set[str]) -> None:
    if inp.datatype not in allowed:
        want = " or ".join(sorted(allowed))
        raise BadInput(f"input {inp.name!r} must be {want}, got {inp.datatype}")


def _check_whole(name: str, value: int | float) -> None:
    """An integer input sent as a float is accepted only when no fraction would be dropped."""
    if isinstance(value, float) and not value.is_integer():
        raise BadInput(f"input {name!r} must be a whole number, got {value!r}")


def _check_integer_data(inp: RequestInput) -> None:
    """An integer tensor's values as sent must be whole numbers that fit its datatype.

    NumpyCodec decodes with the datatype's numpy type, which cuts ``3.7`` sent as INT32 down to
    ``3`` without a word, and raises ``OverflowError`` (a 500) for ``2**70`` sent as INT64.
    """
    datatype = str(inp.datatype)
    if datatype not in INTEGER_TYPES:
        return
    info = np.iinfo(datatype.lower())
    for value in _flat(inp.data):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # left to the decoding, which names what it cannot read
        _check_whole(inp.name, value)
        if not info.min <= value <= info.max:
            raise BadInput(f"input {inp.name!r} = {value!r} does not fit {datatype} ({info.min}..{info.max})")


def _check_range(name: str, value: int | float, low: float | None, high: float | None, low_inclusive: bool) -> None:
    """Refuse a value outside ``low``..``high``, with the range in the message so the caller can fix it.

    NaN compares false with everything, so it is refused explicitly rather than slipping through.
    """
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    if too_low or (high is not None and value > high) or value != value:
        lo = "" if low is None else ("[" if low_inclusive else "(") + f"{low}"
        hi = "" if high is None else f"{high}]"
        raise BadInput(f"input {name!r} = {value!r} is out of range {lo}, {hi}".replace(" ,", ","))


def read_strings(
    request: InferenceRequest,
    name: str,
    *,
    max_items: int,
    max_chars: int,
    required: bool = True,
    allow_empty: bool = False,
) -> list[str] | None:
    """Decode a BYTES input into a list of UTF-8 strings, enforcing count and length limits.

    Args:
        request: the inference request.
        name: input name, e.g. ``"prompt"``.
        max_items: most strings allowed in one request (the ``[N]`` of the contract).
        max_chars: most characters allowed in one string.
        required: raise when the input is absent (else return ``None``).
        allow_empty: accept empty strings.
    """
    found = _bytes_elements(request, name, required)
    if found is None:
        return None
    inp, values = found
    if len(values) > max_items:
        raise BadInput(f"input {name!r} has {len(values)} items; at most {max_items} per request")
    out = []
    for i, value in enumerate(values):
        if isinstance(value, (bytes, bytearray)):
            try:
                value = StringCodec.decode_input(
                    RequestInput(name=name, datatype="BYTES", shape=[1], data=[bytes(value)])
                )[0]
            except UnicodeDecodeError:
                raise BadInput(f"input {name!r}[{i}] is not UTF-8 text") from None
        if not isinstance(value, str):
            raise BadInput(f"input {name!r}[{i}] must be text, got {type(value).__name__}")
        if len(value) > max_chars:
            raise BadInput(f"input {name!r}[{i}] has {len(value)} characters; at most {max_chars}")
        if not allow_empty and not value.strip():
            raise BadInput(f"input {name!r}[{i}] is empty")
        out.append(value)
    return out


def _bytes_elements(request: InferenceRequest, name: str, required: bool) -> tuple[RequestInput, list] | None:
    """A BYTES input and its elements, flat, after the checks every reader of one makes (datatype,
    shape, at least one element); None when it is absent and not required."""
    inp = find_input(request, name, required=required)
    if inp is None:
        return None
    _check_datatype(inp, {"BYTES"})
    values = _flat(inp.data)
    _check_shape(inp, values)
    if not values:
        raise BadInput(f"input {name!r} is empty")
    return inp, values


def read_bytes(request: InferenceRequest, name: str, *, max_bytes: int, required: bool = True) -> bytes | None:
    """Decode a single-element BYTES input as raw bytes (e.g. an encoded WAV file).

    Over gRPC the bytes arrive as they are; over REST JSON a BYTES element is a string, which is
    taken as base64 when it decodes as such, so a REST client can send binary data.
    """
    files = read_byte_items(request, name, max_bytes=max_bytes, max_items=1, required=required)
    return None if files is None else files[0]


def read_byte_items(
    request: InferenceRequest, name: str, *, max_bytes: int, max_items: int, required: bool = True
) -> list[bytes] | None:
    """Decode a BYTES ``[N]`` input as a list of raw byte strings, one per row (e.g. N audio files).

    The list form is what adaptive batching needs: MLServer merges the ``[1]`` inputs of concurrent
    requests into one ``[N]`` input, and hands output row i back to the request that sent row i.

    Args:
        request: the inference request.
        name: input name, e.g. ``"audio"``.
        max_bytes: most bytes allowed in one element (checked after base64 decoding).
        max_items: most elements allowed in one request.
        required: raise when the input is absent (else return ``None``).

    Elements sent as text are taken as base64 when they decode as such; elements sent as bytes are
    raw, unless the input's ``content_type`` parameter is ``base64``.

    Raises:
        BadInput: wrong datatype or shape, no elements, too many, or an empty or oversized element
            (the message says which row).
    """
    import base64
    import binascii

    found = _bytes_elements(request, name, required)
    if found is None:
        return None
    inp, values = found
    if len(values) > max_items:
        one = "exactly one element" if max_items == 1 else f"at most {max_items} elements per request"
        raise BadInput(f"input {name!r} must hold {one}, got {len(values)}")
    base64_bytes = inp.parameters is not None and inp.parameters.content_type == "base64"
    out = []
    for i, value in enumerate(values):
        where = repr(name) if len(values) == 1 else f"{name!r}[{i}]"
        if base64_bytes and isinstance(value, (bytes, bytearray)):
            # base64 text that arrives as bytes, labelled so: a REST caller's file passed on by a
            # pipeline (Seldon's gateway turns JSON strings into bytes, and keeps the content type)
            try:
                value = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise BadInput(f"input {where} is not valid base64 (its content_type is base64)") from None
        elif isinstance(value, str):
            try:
                value = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                value = value.encode("utf-8")
        if not value:
            raise BadInput(f"input {where} is empty")
        if len(value) > max_bytes:
            raise BadInput(f"input {where} has {len(value)} bytes; at most {max_bytes}")
        out.append(bytes(value))
    return out


def read_scalar(
    request: InferenceRequest,
    name: str,
    *,
    kind: type,
    default: Any,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
) -> Any:
    """Read an optional single-number input such as ``seed`` or ``temperature``.

    Args:
        kind: ``int`` or ``float``; the V2 datatype must be an integer or float type to match.
        default: returned when the input is absent.
        low, high: the allowed range; values outside it are refused with the range in the message.
        low_inclusive: whether ``low`` itself is allowed (temperature must be > 0, tempo > 0).
    """
    inp = find_input(request, name, required=False)
    if inp is None:
        return default
    _check_datatype(inp, INTEGER_TYPES if kind is int else INTEGER_TYPES | FLOAT_TYPES)
    values = _flat(inp.data)
    _check_shape(inp, values)
    if len(values) != 1:
        raise BadInput(f"input {name!r} must hold exactly one number, got {len(values)}")
    value = values[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadInput(f"input {name!r} must be a number, got {value!r}")
    if kind is int:
        _check_whole(name, value)
        value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise BadInput(f"input {name!r} must be finite, got {value!r}")
    _check_range(name, value, low, high, low_inclusive)
    return value


def read_column(
    request: InferenceRequest,
    name: str,
    rows: int,
    *,
    kind: type,
    default: Any,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    step: int | float = 0,
) -> list:
    """Read an optional numeric input as one value per row, sent ``[1]`` (for every row) or ``[N]``.

    Adaptive batching merges concurrent requests along the first dimension, so ``seed`` ``[1]`` from
    two callers arrives as ``seed`` ``[2]``: a runtime whose rows must each keep their own seed,
    temperature or length reads such inputs with this instead of :func:`read_scalar`. Shapes
    ``[N, 1]`` count as ``[N]``. Values are decoded with the input's own datatype (an ``FP32``
    temperature is the float32 value, as the model would see it), and any numeric datatype is
    accepted as long as the value fits ``kind``.

    Args:
        request: the inference request.
        name: input name, e.g. ``"seed"``.
        rows: the number of rows in the request (e.g. how many prompts were sent).
        kind: ``int`` or ``float``; a float sent for an ``int`` must be a whole number.
        default: the value for every row when the input is absent.
        low, high: the allowed range; values outside it are refused with the range in the message.
        low_inclusive: whether ``low`` itself is allowed (temperature must be > 0).
        step: when one value stands for every row, row i gets ``value + i * step``. A seed uses 1,
            so that rows sharing one seed (or the default) still give different results. The range
            is checked on the values sent, not on the stepped ones.

    Returns:
        ``rows`` values, row i's value at index i.

    Raises:
        BadInput: BYTES data, data that does not match its shape, a count other than 1 or ``rows``,
            a fraction for an ``int``, or a value out of range.
    """
    values = [default]
    inp = find_input(request, name, required=False)
    if inp is not None:
        if inp.datatype == "BYTES":
            raise BadInput(f"input {name!r} must be a number, got BYTES")
        _check_integer_data(inp)
        try:
            values = NumpyCodec.decode_input(inp).reshape(-1).tolist()
        except (ValueError, TypeError) as exc:
            raise BadInput(f"input {name!r}: {exc}") from None
        if len(values) not in (1, rows):
            raise BadInput(
                f"input {name!r} has {len(values)} values for {rows} rows; send 1 (for all rows) or {rows} "
                "(requests merged by adaptive batching need one value per row each)"
            )
        checked = []
        for value in values:
            if kind is int:
                _check_whole(name, value)
            value = kind(value)
            _check_range(name, value, low, high, low_inclusive)
            checked.append(value)
        values = checked
    if len(values) == rows:
        return values
    return [values[0] + i * step for i in range(rows)] if step else values * rows
