"""Python values to V2 tensors and back, encoded as MLServer's own codecs decode them."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any, Iterable, Mapping

import numpy as np
from mlserver.codecs import Base64Codec, NumpyCodec, StringCodec
from mlserver.types import InferenceResponse, RequestInput, ResponseOutput

from tunesmith.serving.client.errors import InferenceFailed


def _one_dimensional(inp: RequestInput) -> RequestInput:
    """MLServer's codecs add a batch dimension ([N, 1]); the music contract says [N]."""
    inp.shape = [len(inp.data)]
    return inp


def encode_input(name: str, value: Any, *, binary: str = "base64") -> RequestInput:
    """Turn one Python value into a V2 request input.

    Args:
        name: the input's name, e.g. ``"prompt"``.
        value: ``str`` or a sequence of ``str`` (BYTES, UTF-8 text); ``bytes`` (BYTES, one binary
            element such as a WAV file) or a sequence of ``bytes`` (BYTES ``[N]``); ``int`` (INT64 [1]); ``float`` (FP32 [1]); a numpy array
            (its own datatype and shape); or a ready :class:`RequestInput`, passed through.
        binary: how ``bytes`` travel: ``"base64"`` for REST JSON, ``"raw"`` for gRPC.

    Returns:
        The request input, with a one-dimensional shape for lists and scalars.
    """
    if isinstance(value, RequestInput):
        return value
    if isinstance(value, str):
        value = [value]
    if isinstance(value, (bytes, bytearray)):
        value = [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (bytes, bytearray)) for v in value):
        if binary == "base64":
            return _one_dimensional(Base64Codec.encode_input(name, [bytes(v) for v in value], use_bytes=False))
        return RequestInput(name=name, datatype="BYTES", shape=[len(value)], data=[bytes(v) for v in value])
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return _one_dimensional(StringCodec.encode_input(name, list(value), use_bytes=binary == "raw"))
    if isinstance(value, bool):
        raise TypeError(f"input {name!r}: booleans are not part of the music models' contract")
    if isinstance(value, (int, np.integer)):
        value = np.asarray([value], dtype=np.int64)
    elif isinstance(value, (float, np.floating)):
        value = np.asarray([value], dtype=np.float32)
    if isinstance(value, np.ndarray):
        inp = NumpyCodec.encode_input(name, value)
        inp.shape = list(value.shape)  # the codec would add a batch dimension to 1-D arrays
        return inp
    raise TypeError(f"input {name!r}: cannot encode a {type(value).__name__} as a V2 tensor")


def encode_inputs(inputs: Mapping[str, Any] | Iterable[RequestInput], *, binary: str = "base64") -> list[RequestInput]:
    """Encode a mapping ``{name: value}`` (or pass through a list of inputs); ``None`` values are left out.

    Leaving out ``None`` lets callers write ``{"seed": seed}`` for optional inputs: the model then
    uses its own default, as the contract says.
    """
    if isinstance(inputs, Mapping):
        return [encode_input(k, v, binary=binary) for k, v in inputs.items() if v is not None]
    return list(inputs)


def decode_output(output: ResponseOutput) -> Any:
    """Turn one V2 response output into Python: ``list[str]``, ``list[bytes]`` or a numpy array.

    BYTES outputs are read by their ``content_type``: ``"base64"`` gives bytes, ``"str"`` gives text.
    Without a content type, text that arrives as a JSON string stays a string, and bytes from gRPC
    become text when they are UTF-8 and stay bytes otherwise.
    """
    content_type = output.parameters.content_type if output.parameters else None
    if output.datatype == "BYTES":
        if content_type == Base64Codec.ContentType:
            return Base64Codec.decode_output(output)
        if content_type == StringCodec.ContentType:
            return StringCodec.decode_output(output)
        values = output.data.root if isinstance(output.data.root, list) else [output.data.root]
        decoded = []
        for value in values:
            if isinstance(value, (bytes, bytearray)):
                try:
                    value = bytes(value).decode("utf-8")
                except UnicodeDecodeError:
                    value = bytes(value)
            decoded.append(value)
        return decoded
    return NumpyCodec.decode_output(output)


def decode_outputs(response: InferenceResponse) -> dict[str, Any]:
    """All outputs of a response as ``{name: decoded value}`` (see :func:`decode_output`)."""
    return {out.name: decode_output(out) for out in response.outputs}


def _as_bytes(value: Any) -> bytes:
    """A binary output element whose sender may or may not have labelled it base64."""
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return value.encode("utf-8")
    value = bytes(value)
    if not value.startswith(b"RIFF"):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            pass
    return value


def _scalar(value: Any) -> Any:
    return np.asarray(value).reshape(-1)[0].item()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else bytes(value).decode("utf-8", "replace")


def _audio_bytes(wav: Any) -> bytes:
    """The audio argument as bytes; a path or text would be sent as a (useless) string otherwise."""
    if not isinstance(wav, (bytes, bytearray, memoryview)):
        raise TypeError(f"audio must be the file's bytes, got {type(wav).__name__}")
    return bytes(wav)


def _wav_output(outputs: dict, model: str) -> tuple[bytes, int]:
    """``(wav_bytes, sample_rate)`` from a response with an ``audio`` WAV output."""
    if "audio" not in outputs or not len(outputs["audio"]):
        raise InferenceFailed(f"response has no 'audio' output (got {sorted(outputs)})", model=model)
    wav = _as_bytes(outputs["audio"][0])
    if not (wav.startswith(b"RIFF") and wav[8:12] == b"WAVE"):
        raise InferenceFailed("the 'audio' output is not a WAV file", model=model)
    if "sample_rate" in outputs:
        return wav, int(_scalar(outputs["sample_rate"]))
    import soundfile  # the WAV header knows the rate too

    return wav, soundfile.info(io.BytesIO(wav)).samplerate


def _output_labels(response: InferenceResponse | None, output: str) -> list[str]:
    """The ``labels`` parameter of one output of a response (a list, or comma-separated text), if any."""
    for out in (response.outputs if response is not None else []):
        if out.name == output and out.parameters is not None:
            labels = out.parameters.model_dump().get("labels")
            if isinstance(labels, str):
                return [v.strip() for v in labels.split(",")]
            if isinstance(labels, (list, tuple)):
                return [str(v) for v in labels]
    return []
