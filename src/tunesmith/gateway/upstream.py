"""The MLServer process behind the gateway: one keep-alive HTTP client and one gRPC channel to it.

In Seldon Core v2 a request reaches a model through envoy and the agent's reverse proxy
(``scheduler/pkg/agent/rproxy.go``, ``rproxy_grpc.go``); locally the gateway is that hop. It opens
its connections once and reuses them for every request: a new TCP connection (or a new client
session) per call would cost more than the rest of the hop together.

* REST callers of a model are forwarded by :meth:`Upstream.post` with their body untouched.
  The HTTP client is aiohttp's: measured on this hop, ``httpx.AsyncClient`` spends about 0.9 ms of
  CPU per request where aiohttp spends 0.15 ms, which is most of the gateway's own budget (a
  couple of milliseconds per hop). aiohttp comes with ``tritonclient[http]``.
* gRPC callers of a model are forwarded over :attr:`Upstream.stub` with their message untouched.
* Pipeline steps call models over gRPC (:meth:`Upstream.infer`), as Seldon's model gateway does
  (``scheduler/pkg/kafka/gateway/worker.go: grpcRequest``); a failure carries the text Seldon would
  put on its error topic, Go's ``err.Error()``: ``rpc error: code = InvalidArgument desc = ...``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
import grpc
from mlserver.grpc.dataplane_pb2_grpc import GRPCInferenceServiceStub
from mlserver.types import InferenceRequest, InferenceResponse

from tunesmith.gateway import wire
from tunesmith.gateway.metrics import grpc_code_name

STEP_TIMEOUT_S = 120.0
"""Per model call: ``MODELGATEWAY_WORKER_TIMEOUT_MS`` defaults to 120000 (``kafka/gateway/infer.go``)."""
CONNECT_TIMEOUT_S = 5.0

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
"""gRPC status -> HTTP status, the inverse of MLServer's ``mlserver/grpc/utils.py: STATUS_CODE_MAPPING``
(with the 413 and 503 that :mod:`tunesmith.serving.request_guards` adds); anything else is a 500."""


class UpstreamError(Exception):
    """A model call that did not return a response.

    Attributes:
        status: the HTTP status it amounts to (400 bad input, 404 unknown model, 503 server down...).
        message: the error text as Seldon records it for a pipeline step.
        code: the gRPC status, when the call was made over gRPC.
    """

    def __init__(self, status: int, message: str, code: grpc.StatusCode | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def grpc_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Channel and server options: one message size limit in both directions (REST's body limit)."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


@dataclass
class HttpReply:
    """An MLServer REST answer: status, headers (lower-case names) and the body's bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def content_type(self) -> str | None:
        return next((value for key, value in self.headers if key == "content-type"), None)


class Upstream:
    """Connections to one MLServer process. Create and close it inside the running event loop.

    Args:
        http_url: MLServer's REST address, e.g. ``http://127.0.0.1:23456``.
        grpc_address: MLServer's gRPC ``host:port``.
        max_message_bytes: the largest request or response either protocol carries.
        timeout_s: the longest one model call may take.
    """

    def __init__(self, http_url: str, grpc_address: str, max_message_bytes: int, timeout_s: float = STEP_TIMEOUT_S):
        self.http_url = http_url
        self.grpc_address = grpc_address
        self.timeout_s = timeout_s
        self.http = aiohttp.ClientSession(
            http_url,
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(total=timeout_s, connect=CONNECT_TIMEOUT_S),
            # MLServer gzips any response a client accepts gzipped; over loopback that is pure
            # cost, and the gateway would have to unzip it again before passing it on.
            headers={"accept-encoding": "identity"},
            auto_decompress=False,
        )
        self.channel = grpc.aio.insecure_channel(grpc_address, options=grpc_options(max_message_bytes))
        self.stub = GRPCInferenceServiceStub(self.channel)

    async def aclose(self) -> None:
        await asyncio.gather(self.http.close(), self.channel.close(), return_exceptions=True)

    # -- REST -------------------------------------------------------------------------------------
    async def request(self, method: str, path: str, *, body: bytes | None = None,
                      headers: dict[str, str] | None = None, timeout_s: float | None = None) -> HttpReply:
        """One REST call to MLServer; :class:`UpstreamError` 503 when it does not answer, 504 when too slow."""
        timeout = aiohttp.ClientTimeout(total=timeout_s, connect=CONNECT_TIMEOUT_S) if timeout_s else None
        try:
            async with self.http.request(method, path, data=body, headers=headers, timeout=timeout) as response:
                return HttpReply(
                    response.status,
                    [(key.lower(), value) for key, value in response.headers.items()],
                    await response.read(),
                )
        except asyncio.TimeoutError:
            raise UpstreamError(504, f"no answer within {timeout_s or self.timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                503, f"the model server does not answer ({type(exc).__name__}); it may still be starting"
            ) from None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> HttpReply:
        return await self.request("POST", path, body=body, headers=headers)

    async def get(self, path: str, timeout_s: float | None = None) -> HttpReply:
        return await self.request("GET", path, timeout_s=timeout_s)

    async def model_ready(self, name: str) -> bool:
        """Whether MLServer has model ``name`` loaded; ``False`` also when MLServer does not answer."""
        try:
            return (await self.get(f"/v2/models/{name}/ready", timeout_s=CONNECT_TIMEOUT_S)).status == 200
        except UpstreamError:
            return False

    async def server_ready(self) -> bool:
        """Whether MLServer reports every model loaded (``/v2/health/ready``)."""
        try:
            return (await self.get("/v2/health/ready", timeout_s=CONNECT_TIMEOUT_S)).status == 200
        except UpstreamError:
            return False

    # -- gRPC -------------------------------------------------------------------------------------
    async def infer(
        self, model: str, request: InferenceRequest, metadata: tuple[tuple[str, str], ...] = ()
    ) -> InferenceResponse:
        """Call ``model`` over gRPC with a pipeline step's request; raise :class:`UpstreamError` on failure.

        ``metadata`` carries the request's ``x-*`` headers and ``seldon-model``, as the model
        gateway sends them (``worker.go: addMetadataToOutgoingContext``).
        """
        try:
            message = wire.request_to_proto(request, model)
        except (TypeError, ValueError) as exc:  # e.g. text in an INT32 tensor: protobuf refuses it
            raise UpstreamError(400, f"the request for {model} does not fit its tensors' datatypes: {exc}") from None
        try:
            reply = await self.stub.ModelInfer(message, metadata=metadata, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            raise UpstreamError(
                HTTP_STATUS.get(code, 500), f"rpc error: code = {grpc_code_name(code)} desc = {exc.details()}", code
            ) from None
        return wire.response_from_proto(reply)
