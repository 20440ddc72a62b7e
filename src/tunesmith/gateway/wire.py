"""V2 requests and responses between REST JSON, MLServer's pydantic types and gRPC protobuf.

The pipeline executor works on :mod:`mlserver.types` objects; pipeline steps call their models over
gRPC, as Seldon's model gateway does (``scheduler/pkg/kafka/gateway/worker.go: grpcRequest``); and
callers may use either protocol. MLServer's converters (``mlserver/grpc/converters.py``) do most of
the work, but they were written for MLServer's own outputs, whose data are already flat and whose
``BYTES`` elements are already ``bytes``. A REST caller sends ``BYTES`` as JSON strings and may
nest ``data`` row by row. Seldon's pipeline gateway accepts both and answers with flat data
(``scheduler/pkg/kafka/pipeline/v2.go``: ``ConvertRequestToV2Bytes`` and
``ConvertV2ResponseBytesToJson``, where a ``BYTES`` element becomes a Go ``string``, invalid UTF-8
replaced), so the same is done here before and after the converters.

Models called directly are never converted: their bodies and messages are forwarded as they are.
"""

from __future__ import annotations

from typing import Any, Iterable, TypeVar

from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc.converters import ModelInferRequestConverter, ModelInferResponseConverter
from mlserver.types import InferenceRequest, InferenceResponse, RequestInput, ResponseOutput, TensorData

Tensor = TypeVar("Tensor", RequestInput, ResponseOutput)


def _flat(data: Any) -> list:
    root = getattr(data, "root", data)
    if root is None:
        return []
    if isinstance(root, (str, bytes)) or not isinstance(root, Iterable):
        return [root]
    out: list = []
    for item in root:
        out.extend(_flat(item) if isinstance(item, (list, tuple)) else [item])
    return out


def _as_bytes(value: Any) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _as_text(value: Any) -> Any:
    return value.decode("utf-8", errors="replace") if isinstance(value, (bytes, bytearray)) else value


def _protobuf_ready(tensor: Tensor) -> Tensor:
    """A copy whose data is flat and, for ``BYTES``, made of ``bytes``: what the converters expect."""
    values = _flat(tensor.data)
    if str(getattr(tensor.datatype, "value", tensor.datatype)) == "BYTES":
        values = [_as_bytes(v) for v in values]
    return tensor.model_copy(update={"data": TensorData(root=values)})


def _json_ready(tensor: Tensor) -> Tensor:
    """A copy whose ``BYTES`` elements are text, as Seldon's pipeline gateway writes them."""
    if str(getattr(tensor.datatype, "value", tensor.datatype)) != "BYTES":
        return tensor
    return tensor.model_copy(update={"data": TensorData(root=[_as_text(v) for v in _flat(tensor.data)])})


def request_to_proto(request: InferenceRequest, model_name: str) -> pb.ModelInferRequest:
    """A step's request as the ``ModelInferRequest`` sent to model ``model_name``."""
    ready = request.model_copy(update={"inputs": [_protobuf_ready(t) for t in request.inputs]})
    return ModelInferRequestConverter.from_types(ready, model_name=model_name, model_version="")


def request_from_proto(message: pb.ModelInferRequest) -> InferenceRequest:
    """A gRPC caller's request, ``raw_input_contents`` unpacked into ``data``; no ``id`` unless it has one."""
    request = ModelInferRequestConverter.to_types(message)
    request.id = request.id or None  # protobuf cannot tell an unset string from ""
    return request


def response_from_proto(message: pb.ModelInferResponse) -> InferenceResponse:
    """A model's gRPC reply, ``raw_output_contents`` unpacked into ``data``; no ``id`` unless it has one."""
    response = ModelInferResponseConverter.to_types(message)
    response.id = response.id or None
    return response


def response_to_proto(response: InferenceResponse) -> pb.ModelInferResponse:
    """A pipeline's response for a gRPC caller."""
    ready = response.model_copy(update={"outputs": [_protobuf_ready(t) for t in response.outputs]})
    return ModelInferResponseConverter.from_types(ready)


def response_to_json(response: InferenceResponse) -> bytes:
    """A pipeline's response for a REST caller: flat data, text for ``BYTES``, ``model_name`` kept even if ""."""
    ready = response.model_copy(update={"outputs": [_json_ready(t) for t in response.outputs]})
    return ready.model_dump_json(exclude_none=True).encode("utf-8")
