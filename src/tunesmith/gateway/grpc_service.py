"""The gateway's gRPC front door: ``inference.GRPCInferenceService``, routed by ``seldon-model`` metadata.

The service is the V2 dataplane MLServer implements (``mlserver.grpc.dataplane_pb2_grpc``; Seldon's
``apis/mlops/v2_dataplane/v2_dataplane.proto`` is the same package). gRPC has no path, so the route
comes from metadata (``scheduler/pkg/kafka/pipeline/grpcserver.go: ModelInfer``):

* ``seldon-model: <m>`` or ``<m>.model`` -> the message is forwarded to MLServer's gRPC port as it
  is, except that ``model_name`` is set to ``<m>`` (the agent does the same rewrite,
  ``scheduler/pkg/agent/rproxy_grpc.go``). Without the metadata, the message's own ``model_name``
  names the model (a plain V2 client such as tritonclient sends no metadata).
* ``seldon-model: <p>.pipeline`` -> the pipeline runs (:meth:`Resources.run_pipeline`); its reply's
  initial metadata holds ``x-request-id``, ``x-pipeline-version``, ``x-seldon-route`` (one value
  per step and one for the pipeline) and the caller's ``x-*`` metadata, as in ``grpcserver.go``.
* ``seldon-model: <e>.experiment`` (or an experiment's default) -> the arm the experiment picks, as
  over REST; ``x-seldon-route`` metadata from the caller keeps it on an arm.
* ``ModelReady`` for a pipeline (``seldon-model: <p>.pipeline``, or ``name`` ``<p>.pipeline``)
  answers whether its steps' models are loaded, or NOT_FOUND ``Pipeline not found``.
* ``ServerLive``, ``ServerReady``, ``ServerMetadata``, ``ModelMetadata``: MLServer's answers.
* The repository RPCs (index, load, unload) and streaming are not offered (UNIMPLEMENTED).

Errors: a failed step is UNKNOWN with Seldon's text ``<step> : <error>``; otherwise the HTTP status
of :class:`~tunesmith.gateway.resources.Refused` maps to INVALID_ARGUMENT (400), NOT_FOUND (404),
RESOURCE_EXHAUSTED (413), UNAVAILABLE (503), DEADLINE_EXCEEDED (504); an error from MLServer keeps
its code and details. The server's message size limit is the REST body limit.
"""

from __future__ import annotations

import logging
import time
from typing import NoReturn

import grpc
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc.dataplane_pb2_grpc import GRPCInferenceServiceServicer, add_GRPCInferenceServiceServicer_to_server

from tunesmith.gateway import requestlog, routing, wire
from tunesmith.gateway.experiments import Route
from tunesmith.gateway.metrics import grpc_code_name
from tunesmith.gateway.resources import Refused, Resources
from tunesmith.gateway.upstream import HTTP_STATUS, grpc_options

log = logging.getLogger("tunesmith.gateway")

UPSTREAM_UNAVAILABLE = "the model server does not answer; it may still be starting"


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The caller's metadata, last value winning (``grpcserver.go: extractHeader``)."""
    return {key.lower(): value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)}


def _sticky(context: grpc.aio.ServicerContext) -> str | None:
    """Every ``x-seldon-route`` value the caller sent, joined (envoy matches on *contains*)."""
    values = [value for key, value in (context.invocation_metadata() or ())
              if key.lower() == routing.SELDON_ROUTE and isinstance(value, str)]
    return ",".join(values) if values else None


async def _abort(context: grpc.aio.ServicerContext, refused: Refused) -> NoReturn:
    """End the call with the refusal's code, message and metadata (``context.abort`` raises)."""
    log.warning("gRPC -> %s %s", refused.code.name, refused.message)
    await context.abort(refused.code, refused.message, trailing_metadata=tuple(refused.headers))


class GatewayServicer(GRPCInferenceServiceServicer):
    """The V2 gRPC service of one gateway, bound to the shared :class:`Resources`."""

    def __init__(self, resources: Resources):
        self.resources = resources
        self.stub = resources.upstream.stub
        self.timeout_s = resources.upstream.timeout_s

    def _route(self, metadata: dict[str, str], name: str, sticky: str | None = None) -> Route:
        header = metadata.get(routing.SELDON_MODEL)
        if header is None and not name:
            raise Refused(
                400, f"failed to find valid header {routing.SELDON_MODEL}, found ",
                code=grpc.StatusCode.FAILED_PRECONDITION,
            )
        return self.resources.route(header, name, sticky=sticky)

    def _target(self, metadata: dict[str, str], name: str) -> routing.Target:
        return self._route(metadata, name).target

    # -- inference --------------------------------------------------------------------------------
    async def ModelInfer(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        metadata = _metadata(context)
        request_id = metadata.get(routing.REQUEST_ID) or routing.new_request_id()
        try:
            route = self._route(metadata, request.model_name, _sticky(context))
            if route.target.kind == "pipeline":
                return await self._infer_pipeline(request, route, request_id, metadata, context)
            self.resources.model(route.target.name)
        except Refused as refused:
            await _abort(context, refused)
        return await self._infer_model(request, route, request_id, metadata, context)

    async def _infer_model(
        self, request: pb.ModelInferRequest, route: Route, request_id: str, metadata: dict[str, str], context
    ) -> pb.ModelInferResponse:
        """Forward the message to MLServer's gRPC port, count and log it, send back its reply and code."""
        model = route.target.name
        if request.model_name != model:
            request.model_name = model
        outgoing = tuple(routing.external_headers(metadata.items()).items()) + ((routing.REQUEST_ID, request_id),)
        started, start, code, reply, details = time.time(), time.perf_counter(), grpc.StatusCode.OK, None, "cancelled"
        try:
            reply = await self.stub.ModelInfer(request, metadata=outgoing, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            details = UPSTREAM_UNAVAILABLE if code == grpc.StatusCode.UNAVAILABLE else exc.details()
            await context.abort(code, details, trailing_metadata=((routing.REQUEST_ID, request_id),))
        finally:
            seconds = time.perf_counter() - start
            self.resources.metrics.model_infer(
                self.resources.server_of(model), model, "grpc", seconds, grpc_code_name(code)
            )
            if reply is not None:
                outputs = lambda: requestlog.summarize(wire.response_from_proto(reply).outputs)  # noqa: E731
            else:
                outputs = lambda: {"error": details}  # noqa: E731
            status = 200 if code == grpc.StatusCode.OK else HTTP_STATUS.get(code, 500)
            self.resources.observe(
                route, request_id=request_id, method_type="grpc", started=started, seconds=seconds, status=status,
                code=grpc_code_name(code), inputs=lambda: requestlog.summarize(wire.request_from_proto(request).inputs),
                outputs=outputs,
            )
        self.resources.mirror(route, lambda: wire.request_from_proto(request), request_id=request_id,
                              headers=routing.external_headers(metadata.items()))
        await context.send_initial_metadata(
            ((routing.REQUEST_ID, request_id), (routing.SELDON_ROUTE, routing.model_route(model)))
        )
        return reply

    async def _infer_pipeline(
        self, request: pb.ModelInferRequest, route: Route, request_id: str, metadata: dict[str, str], context
    ) -> pb.ModelInferResponse:
        payload = wire.request_from_proto(request)
        headers = routing.external_headers(metadata.items())
        reply = await self.resources.run_pipeline(
            route.target.name, payload, request_id=request_id, headers=headers, method_type="grpc", route=route,
        )
        self.resources.mirror(route, lambda: payload, request_id=request_id, headers=headers)
        await context.send_initial_metadata(tuple(reply.headers))
        return wire.response_to_proto(reply.response)

    # -- readiness and metadata --------------------------------------------------------------------
    async def ModelReady(self, request: pb.ModelReadyRequest, context) -> pb.ModelReadyResponse:
        try:
            target = self._target(_metadata(context), request.name)
            if target.kind == "pipeline":
                try:
                    return pb.ModelReadyResponse(ready=await self.resources.pipeline_ready(target.name))
                except Refused:
                    raise Refused(404, "Pipeline not found") from None
            request.name = self.resources.model(target.name)
        except Refused as refused:
            await _abort(context, refused)
        return await self._pass(self.stub.ModelReady, request, context)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context) -> pb.ModelMetadataResponse:
        try:
            target = self._target(_metadata(context), request.name)
            if target.kind == "pipeline":
                raise Refused(
                    501, f"pipeline {target.name} has no V2 metadata; GET /v2/pipelines/{target.name} describes it",
                    code=grpc.StatusCode.UNIMPLEMENTED,
                )
            request.name = self.resources.model(target.name)
        except Refused as refused:
            await _abort(context, refused)
        return await self._pass(self.stub.ModelMetadata, request, context)

    async def ServerLive(self, request: pb.ServerLiveRequest, context) -> pb.ServerLiveResponse:
        return await self._pass(self.stub.ServerLive, request, context)

    async def ServerReady(self, request: pb.ServerReadyRequest, context) -> pb.ServerReadyResponse:
        return await self._pass(self.stub.ServerReady, request, context)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context) -> pb.ServerMetadataResponse:
        return await self._pass(self.stub.ServerMetadata, request, context)

    async def _pass(self, method, request, context):
        """One call to MLServer, its error (code and details) handed to the caller as it is."""
        try:
            return await method(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            details = UPSTREAM_UNAVAILABLE if exc.code() == grpc.StatusCode.UNAVAILABLE else exc.details()
            await context.abort(exc.code(), details)


def create_server(resources: Resources, address: str, *, max_message_bytes: int) -> grpc.aio.Server:
    """A ``grpc.aio`` server with the gateway's service on ``address`` (``host:port``), not yet started.

    ``grpc.so_reuseport`` is off: with it (gRPC's default on Linux) a second gateway could bind the
    same port and take half of the connections.
    """
    server = grpc.aio.server(options=grpc_options(max_message_bytes) + [("grpc.so_reuseport", 0)])
    add_GRPCInferenceServiceServicer_to_server(GatewayServicer(resources), server)
    server.add_insecure_port(address)
    return server

