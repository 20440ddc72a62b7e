"""The music client over V2 gRPC (:class:`GrpcMusicClient`), with MLServer's generated stubs."""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from mlserver.types import InferenceRequest, InferenceResponse, RequestInput

from tunesmith.serving.client.api import _MusicApi
from tunesmith.serving.client.errors import (
    BadRequest,
    ClientError,
    InferenceFailed,
    ModelNotReady,
    PipelineNotReady,
    ServerUnavailable,
)
from tunesmith.serving.client.protocol import (
    CONNECT_TIMEOUT,
    DEFAULT_GRPC_ADDRESS,
    DEFAULT_TIMEOUT,
    GRPC_ENV,
    GRPC_MAX_MESSAGE,
    _NOT_READY,
    PIPELINE_VERSION,
    REQUEST_ID,
    SELDON_MODEL,
    SELDON_ROUTE,
    seldon_from_env,
    server_message,
)
from tunesmith.serving.client.replies import Reply
from tunesmith.serving.client.tensors import decode_outputs, encode_inputs


class GrpcMusicClient(_MusicApi):
    """The same calls as :class:`MusicClient` over V2 gRPC, with MLServer's generated stubs.

    Args:
        address: ``host:port`` of the gRPC endpoint; defaults to ``$TUNESMITH_GRPC_ADDRESS``, else
            ``127.0.0.1:8081``.
        timeout: seconds to wait for an answer.
        seldon: talk to a Seldon endpoint, as in :class:`MusicClient`: the ``seldon-model`` metadata
            names the Model (``<model>-<version>``) or ``<pipeline>.pipeline``.

    gRPC sends tensors as protobuf (binary, no base64, no JSON parsing), which is what the REST vs
    gRPC benchmark measures.
    """

    def __init__(self, address: str | None = None, timeout: float = DEFAULT_TIMEOUT, seldon: bool | None = None):
        import grpc
        from mlserver.grpc import dataplane_pb2_grpc, model_repository_pb2_grpc

        self.address = address or os.environ.get(GRPC_ENV) or DEFAULT_GRPC_ADDRESS
        self.target = f"grpc://{self.address}"
        self.timeout = timeout
        self.seldon = seldon_from_env() if seldon is None else bool(seldon)
        self.last_reply = None
        self._grpc = grpc
        self.channel = grpc.insecure_channel(
            self.address,
            options=[
                ("grpc.max_send_message_length", GRPC_MAX_MESSAGE),
                ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE),
            ],
        )
        self.stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self.repository = model_repository_pb2_grpc.ModelRepositoryServiceStub(self.channel)

    def __repr__(self) -> str:
        return f"GrpcMusicClient({self.address!r}{', seldon=True' if self.seldon else ''})"

    def close(self) -> None:
        self.channel.close()

    def _seldon_metadata(self, name: str) -> tuple[tuple[str, str], ...]:
        return ((SELDON_MODEL, name),) if self.seldon else ()

    def _call(self, method, message, model: str | None = None, timeout: float | None = None,
              metadata: tuple[tuple[str, str], ...] = (), pipeline: str | None = None):
        """One unary call; returns ``(answer, call)`` (the call holds the reply's initial metadata)."""
        grpc = self._grpc
        timeout = self.timeout if timeout is None else timeout
        try:
            return method.with_call(message, timeout=timeout, metadata=metadata or None)
        except grpc.RpcError as exc:
            code, text = exc.code(), server_message(exc.details() or "")
            if code == grpc.StatusCode.UNAVAILABLE and model is not None and "still be starting" in text:
                raise ModelNotReady(model, self.target, text, loading=True) from exc  # a gateway's MLServer starts
            if code == grpc.StatusCode.UNAVAILABLE:
                raise ServerUnavailable(self.target, seldon=self.seldon) from exc
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ServerUnavailable(self.target, f"did not answer within {timeout:g} s") from exc
            if pipeline is not None:
                self._raise_pipeline(exc, code, text, pipeline)
            if model is not None and "is not ready" in text:
                raise ModelNotReady(model, self.target, text, loading=True) from exc
            if model is not None and (code == grpc.StatusCode.NOT_FOUND or _NOT_READY.search(text)):
                raise ModelNotReady(model, self.target, text) from exc
            if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                status = {grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.FAILED_PRECONDITION: 422}.get(code, 400)
                raise BadRequest(text, status, model) from exc
            raise InferenceFailed(text or code.name, 500, model) from exc

    def _raise_pipeline(self, exc, code, text: str, name: str) -> None:
        """A pipeline's refusal over gRPC, as :meth:`MusicClient._raise_for_pipeline` reads REST's.

        A failed step is UNKNOWN with Seldon's text ``<step> : <error>``; the gateway adds the step's
        HTTP status as ``x-seldon-step-status`` trailing metadata.
        """
        grpc = self._grpc
        if code == grpc.StatusCode.NOT_FOUND:
            raise PipelineNotReady(name, self.target, text) from exc
        if code == grpc.StatusCode.FAILED_PRECONDITION or _NOT_READY.search(text) or "code = Unavailable" in text:
            raise PipelineNotReady(name, self.target, text, loading=True) from exc
        trailing = dict((k, v) for k, v in (exc.trailing_metadata() or ()) if isinstance(v, str))
        status = int(trailing.get("x-seldon-step-status", "0") or 0)
        if code == grpc.StatusCode.INVALID_ARGUMENT or 400 <= status < 500:
            raise BadRequest(text, status or 400, name) from exc
        raise InferenceFailed(text or code.name, status or 500, name) from exc

    @staticmethod
    def _route(call) -> tuple[tuple[str, ...], str | None, str | None]:
        metadata = [(k, v) for k, v in (call.initial_metadata() or ()) if isinstance(v, str)]
        route = tuple(v for k, v in metadata if k == SELDON_ROUTE)
        first = lambda key: next((v for k, v in metadata if k == key), None)  # noqa: E731
        return route, first(REQUEST_ID), first(PIPELINE_VERSION)

    def live(self) -> bool:
        """Whether the server answers ``ServerLive``; ``False`` when nothing runs at the address."""
        from mlserver.grpc import dataplane_pb2 as pb

        try:
            return self._call(self.stub.ServerLive, pb.ServerLiveRequest(), timeout=CONNECT_TIMEOUT)[0].live
        except ServerUnavailable:
            return False

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Whether model ``name`` is loaded; raises :class:`ServerUnavailable` when the server is down."""
        from mlserver.grpc import dataplane_pb2 as pb

        target = self.model_name(name, version)
        message = pb.ModelReadyRequest(name=target, version="" if self.seldon else version or "")
        try:
            answer, _ = self._call(self.stub.ModelReady, message, model=target, timeout=CONNECT_TIMEOUT,
                                   metadata=self._seldon_metadata(target))
        except (ModelNotReady, BadRequest):
            return False
        return answer.ready

    def pipeline_ready(self, name: str) -> bool:
        """Whether pipeline ``name`` is served and its steps' models loaded (``ModelReady`` of ``<name>.pipeline``)."""
        from mlserver.grpc import dataplane_pb2 as pb

        try:
            answer, _ = self._call(self.stub.ModelReady, pb.ModelReadyRequest(name=f"{name}.pipeline"),
                                   model=name, timeout=CONNECT_TIMEOUT, metadata=((SELDON_MODEL, f"{name}.pipeline"),))
        except (ModelNotReady, BadRequest):
            return False
        return answer.ready

    def models(self) -> list[dict]:
        """The server's model repository, as :meth:`MusicClient.models` returns it.

        Raises:
            ClientError: talking Seldon, which keeps the repository service inside (the gateway
                lists its models over REST, ``GET /v2/models``).
        """
        from mlserver.grpc import model_repository_pb2 as mr_pb

        if self.seldon:
            raise ClientError(f"{self.target} lists no models over gRPC: Seldon keeps the repository service "
                              f"inside; ask the REST endpoint (GET /v2/models on tunesmith gateway)")
        answer, _ = self._call(self.repository.RepositoryIndex, mr_pb.RepositoryIndexRequest())
        # Read by hand: MLServer 1.7.1's RepositoryIndexResponseConverter.to_types is not
        # implemented, and its server writes states as "State.READY" rather than "READY".
        return [
            {
                "name": m.name,
                "version": m.version or None,
                "state": m.state.removeprefix("State."),
                "reason": m.reason,
            }
            for m in answer.models
        ]

    def metadata(self, name: str) -> dict:
        """Model metadata (declared inputs and outputs), as :meth:`MusicClient.metadata` returns it."""
        from mlserver.grpc import dataplane_pb2 as pb
        from mlserver.grpc.converters import ModelMetadataResponseConverter

        target = self.model_name(name)
        answer, _ = self._call(self.stub.ModelMetadata, pb.ModelMetadataRequest(name=target), model=target,
                               metadata=self._seldon_metadata(target))
        return ModelMetadataResponseConverter.to_types(answer).model_dump(mode="json", exclude_none=True)

    def _infer(self, model: str, request: InferenceRequest, version: str | None):
        from mlserver.grpc.converters import ModelInferRequestConverter, ModelInferResponseConverter

        name = self.model_name(model, version)
        message = ModelInferRequestConverter.from_types(
            request, model_name=name, model_version="" if self.seldon else version or ""
        )
        answer, call = self._call(self.stub.ModelInfer, message, model=name, metadata=self._seldon_metadata(name))
        return name, ModelInferResponseConverter.to_types(answer), call

    def infer_request(self, model: str, request: InferenceRequest, version: str | None = None) -> InferenceResponse:
        """Send a ready-made :class:`InferenceRequest` over gRPC and return the decoded response type."""
        return self._infer(model, request, version)[1]

    def call(self, model: str, inputs: Mapping[str, Any] | Iterable[RequestInput], version: str | None = None) -> Reply:
        """Run any model over gRPC; arguments, result and errors as in :meth:`MusicClient.call`."""
        request = InferenceRequest(inputs=encode_inputs(inputs, binary="raw"))
        name, answer, call = self._infer(model, request, version)
        route, request_id, _ = self._route(call)
        self.last_reply = Reply(name, decode_outputs(answer), route, request_id, answer.model_version or None,
                                response=answer)
        return self.last_reply

    def pipeline(self, name: str, /, **inputs: Any) -> Reply:
        """Run a Seldon pipeline over gRPC (``seldon-model: <name>.pipeline``); as :meth:`MusicClient.pipeline`."""
        from mlserver.grpc.converters import ModelInferRequestConverter, ModelInferResponseConverter

        request = InferenceRequest(inputs=encode_inputs(inputs, binary="raw"))
        message = ModelInferRequestConverter.from_types(request, model_name=f"{name}.pipeline", model_version="")
        answer, call = self._call(self.stub.ModelInfer, message, metadata=((SELDON_MODEL, f"{name}.pipeline"),),
                                  pipeline=name)
        response = ModelInferResponseConverter.to_types(answer)
        route, request_id, version = self._route(call)
        self.last_reply = Reply(name, decode_outputs(response), route, request_id, None, version, "pipeline",
                                response=response)
        return self.last_reply


def grpc_infer(address: str, model: str, inputs: Mapping[str, Any], version: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """One gRPC inference call without keeping a client around (opens and closes a channel).

    Args:
        address: ``host:port`` of the server's gRPC endpoint.
        model, inputs, version: as in :meth:`MusicClient.infer`.
        timeout: seconds to wait for an answer.
    """
    with GrpcMusicClient(address, timeout=timeout) as client:
        return client.infer(model, inputs, version)
