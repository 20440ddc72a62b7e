"""The gateway's REST front door: Seldon Core v2's inference paths over one Starlette app.

In Seldon, envoy receives every call, routes it by the ``seldon-model`` header (derived from the path
when absent) to a model server or to the pipeline gateway (``scheduler/pkg/kafka/pipeline/
httpserver.go``). Here one app plays both parts:

* ``POST /v2/models/{name}/infer``: routed by ``seldon-model`` (``m``, ``m.model``, ``p.pipeline``),
  else by the path (``name`` may itself be ``p.pipeline``);
* ``POST /v2/pipelines/{p}/infer``: pipeline ``p`` (a ``seldon-model`` header still wins);
* ``GET /v2/models/{name}/ready``: a model's readiness from MLServer; for a pipeline, as below;
* ``GET /v2/pipelines/{p}/ready``: 200 when every step's model is loaded, 424 if not, 404 if unknown
  (``httpserver.go: pipelineReady``, ``status/ready.go``);
* ``GET /v2/models/{name}``: a model's metadata from MLServer; for a pipeline, its description;
* ``GET /v2/pipelines``, ``GET /v2/pipelines/{p}``: LOCAL, the pipelines, their steps and readiness;
* ``GET /v2/models``: LOCAL, every Model of the manifests with its state in MLServer (``READY``,
  ``LOADING``, ``UNAVAILABLE`` and the reason), what a cluster's ``seldon model status`` tells;
* ``GET /v2/pipelines/{p}/inspect?request_id=...&expr=p.step.outputs.tensor``: LOCAL stand-in for
  ``seldon pipeline inspect`` (``operator/pkg/cli/kafka.go``), the latest request without an id;
* ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2``: MLServer's answers;
* ``GET /ready``: the gateway's own health, always 200 (``httpserver.go: healthCheck``);
* ``GET /metrics``: Prometheus text under Seldon's names (:mod:`.metrics`);
* ``GET /v2/experiments``: LOCAL, the Experiments served and their arms' shares (``seldon experiment
  status``); ``POST /v2/experiments/reload``: LOCAL, apply the manifests folder's Experiments now
  (the gateway also does by itself within a second of a change, :mod:`.experiments`).

A request for ``<experiment>.experiment`` (or for an experiment's ``default``) is answered by the
arm :meth:`Resources.route` picks; the caller's ``x-seldon-route`` keeps it on an arm. Every
inference request is written to the request log (:mod:`.requestlog`) once answered.

A model call is forwarded to MLServer as it came: the body's bytes are not parsed, so the gateway
adds little to the call. MLServer's 4xx answers pass through with their body; a 5xx becomes 502
naming the model; an MLServer that does not answer, 503. MLServer's repository API
(``/v2/repository/...``: load, unload) is not exposed: a caller could unload every model with it.

Responses carry ``x-request-id`` (the caller's, else a new XID) and ``x-seldon-route``
(``:<model>_1:``; for pipelines one per step and ``:<pipeline>.pipeline:``); pipeline responses
also ``x-pipeline-version`` and the caller's own ``x-*`` headers. Errors the gateway makes itself
have MLServer's body shape, ``{"error": "..."}``; a failed step is Seldon's plain text
``<step> : <error>``.

Before any of this, :class:`tunesmith.serving.request_guards.RequestGuard` (the guard of the
workshop's MLServer, reused) refuses bodies over the size limit (413), compressed bodies and
non-JSON POSTs (415), and browser requests from other sites (403); on a loopback address, Starlette's
``TrustedHostMiddleware`` refuses foreign ``Host`` names (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from mlserver.types import InferenceRequest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tunesmith.gateway import graph, requestlog, routing, wire
from tunesmith.gateway.experiments import ReloadRefused
from tunesmith.gateway.experiments import Route as ExperimentRoute
from tunesmith.gateway.manifests import ManifestError
from tunesmith.gateway.resources import Refused, Resources
from tunesmith.gateway.upstream import HttpReply, UpstreamError
from tunesmith.serving.request_guards import LOOPBACK_HOSTS, RequestGuard

log = logging.getLogger("tunesmith.gateway")

PASSED_BACK = ("content-type", "ce-")
"""MLServer response headers a model caller gets back: the body's type and the CloudEvents ``ce-*``."""


def _error(status: int, message: str, headers: list[tuple[str, str]] = ()) -> Response:
    response = JSONResponse({"error": message}, status_code=status)
    for key, value in headers:
        response.headers.append(key, value)
    return response


def _upstream_text(reply: HttpReply) -> str:
    """MLServer's error message (``{"error": ...}``), or the body as text."""
    try:
        body = json.loads(reply.body)
    except ValueError:
        return reply.body.decode("utf-8", errors="replace").strip()
    return str(body.get("error") or body.get("detail") or body) if isinstance(body, dict) else str(body)


class RestGateway:
    """The endpoints, bound to the shared :class:`Resources`."""

    def __init__(self, resources: Resources):
        self.resources = resources
        self.upstream = resources.upstream

    # -- inference --------------------------------------------------------------------------------
    async def infer_model_path(self, request: Request) -> Response:
        return await self._infer(request, "model")

    async def infer_pipeline_path(self, request: Request) -> Response:
        return await self._infer(request, "pipeline")

    async def _infer(self, request: Request, path_kind: routing.Kind) -> Response:
        sticky = request.headers.getlist(routing.SELDON_ROUTE)
        route = self.resources.route(
            request.headers.get(routing.SELDON_MODEL), request.path_params["name"], path_kind,
            sticky=",".join(sticky) if sticky else None,
        )
        request_id = request.headers.get(routing.REQUEST_ID) or routing.new_request_id()
        if route.target.kind == "pipeline":
            return await self._infer_pipeline(request, route, request_id)
        self.resources.model(route.target.name)
        return await self._infer_model(request, route, request_id)

    async def _infer_model(self, request: Request, route: ExperimentRoute, request_id: str) -> Response:
        """Forward the body to MLServer untouched (``scheduler/pkg/agent/rproxy.go``); count and log the call."""
        model = route.target.name
        body = await request.body()
        headers = routing.external_headers(request.headers.items())
        headers["content-type"] = request.headers.get("content-type", "application/json")
        headers[routing.REQUEST_ID] = request_id
        started, start, status, upstream, error = time.time(), time.perf_counter(), 500, None, "cancelled"
        try:
            upstream = await self.upstream.post(f"/v2/models/{model}/infer", body, headers)
            status = upstream.status
            if status >= 500:
                status = 502
                text = _upstream_text(upstream)
                raise Refused(502, f"model {model} failed on its server ({upstream.status}): {text}")
        except UpstreamError as exc:
            status = exc.status
            raise Refused(exc.status, f"model {model}: {exc.message}") from None
        except Refused as exc:
            error = exc.message
            raise
        finally:
            seconds = time.perf_counter() - start
            self.resources.metrics.model_infer(self.resources.server_of(model), model, "rest", seconds, str(status))
            reply = upstream.body if upstream is not None else b""
            if status == 200:
                outputs = lambda: requestlog.summarize_json(reply, "outputs")  # noqa: E731
            else:
                outputs = lambda: {"error": requestlog.error_text(reply) if reply else error}  # noqa: E731
            self.resources.observe(route, request_id=request_id, method_type="rest", started=started, seconds=seconds,
                                   status=status, code=str(status), inputs=lambda: requestlog.summarize_json(body, "inputs"),
                                   outputs=outputs)
        self.resources.mirror(route, lambda: InferenceRequest.model_validate_json(body), request_id=request_id,
                              headers=routing.external_headers(request.headers.items()))
        response = Response(upstream.body, status_code=status)
        for key, value in upstream.headers:
            if key.startswith(PASSED_BACK):
                response.headers.append(key, value)
        response.headers.append(routing.REQUEST_ID, request_id)
        response.headers.append(routing.SELDON_ROUTE, routing.model_route(model))
        return response

    async def _infer_pipeline(self, request: Request, route: ExperimentRoute, request_id: str) -> Response:
        """Parse the body (pipelines need the tensors), execute, answer with flat V2 JSON."""
        pipeline = route.target.name
        self.resources.pipeline(pipeline)  # 404 before the body is parsed
        headers = routing.external_headers(request.headers.items())
        try:
            payload = InferenceRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"]
            raise Refused(400, f"pipeline {pipeline}: the body is not a V2 inference request: {problem}",
                          headers=[(routing.REQUEST_ID, request_id)]) from None
        reply = await self.resources.run_pipeline(
            pipeline, payload, request_id=request_id, headers=headers, method_type="rest", route=route
        )
        self.resources.mirror(route, lambda: payload, request_id=request_id, headers=headers)
        response = Response(wire.response_to_json(reply.response), media_type="application/json")
        for key, value in reply.headers:
            response.headers.append(key, value)
        return response

    # -- readiness and metadata --------------------------------------------------------------------
    async def ready_model_path(self, request: Request) -> Response:
        target = self.resources.target(request.headers.get(routing.SELDON_MODEL), request.path_params["name"])
        if target.kind == "pipeline":
            return await self._pipeline_ready(target.name)
        return await self._proxy_get(f"/v2/models/{self.resources.model(target.name)}/ready")

    async def ready_pipeline_path(self, request: Request) -> Response:
        return await self._pipeline_ready(request.path_params["name"])

    async def _pipeline_ready(self, name: str) -> Response:
        """200 ready, 424 Failed Dependency while a step's model is not loaded (``httpserver.go``)."""
        return Response(status_code=200 if await self.resources.pipeline_ready(name) else 424)

    async def metadata_model_path(self, request: Request) -> Response:
        target = self.resources.target(request.headers.get(routing.SELDON_MODEL), request.path_params["name"])
        if target.kind == "pipeline":
            return await self._describe(target.name)
        return await self._proxy_get(f"/v2/models/{self.resources.model(target.name)}")

    async def pipeline(self, request: Request) -> Response:
        return await self._describe(request.path_params["name"])

    async def _describe(self, name: str) -> Response:
        return JSONResponse(await self.resources.describe(name))

    async def pipelines(self, request: Request) -> Response:
        return JSONResponse({"pipelines": await self.resources.describe_pipelines()})

    async def models(self, request: Request) -> Response:
        """LOCAL: every Model of the manifests with its state in MLServer's repository index.

        MLServer's repository API stays internal (it can unload models); this reads it and answers
        ``{"models": [{"name", "server", "state", "ready", "reason"}]}``. A Model MLServer does not
        list yet, or every Model while MLServer does not answer, is ``LOADING``.
        """
        states: dict[str, dict] = {}
        starting = ""
        try:
            reply = await self.upstream.request("POST", "/v2/repository/index", body=b"{}",
                                                headers={"content-type": "application/json"}, timeout_s=5)
            index = json.loads(reply.body) if reply.status == 200 else []
            states = {m["name"]: m for m in index if isinstance(m, dict) and isinstance(m.get("name"), str)}
        except UpstreamError as exc:
            starting = exc.message
        except ValueError:
            starting = "the model server's index is unreadable"
        models = []
        for name in sorted(self.resources.models):
            entry = states.get(name) or {}
            state = str(entry.get("state") or "LOADING").removeprefix("State.")
            reason = entry.get("reason") or ("" if entry else starting or "not listed by the model server yet")
            models.append({"name": name, "server": self.resources.server_of(name), "state": state,
                           "ready": state == "READY", "reason": reason})
        return JSONResponse({"models": models})

    async def inspect(self, request: Request) -> Response:
        """The recorded messages of one request (default: the latest), as ``seldon pipeline inspect`` shows them."""
        name = request.path_params["name"]
        self.resources.pipeline(name)
        request_id = request.query_params.get("request_id")
        run = self.resources.runs.get(name, request_id)
        if run is None:
            which = f"request {request_id}" if request_id else "any request"
            kept = self.resources.runs.limit
            raise Refused(404, f"pipeline {name}: no run recorded for {which} (the last {kept} are kept)")
        try:
            return JSONResponse(graph.inspect(run, request.query_params.get("expr") or name))
        except graph.InspectError as exc:
            raise Refused(400, str(exc)) from None

    # -- experiments ------------------------------------------------------------------------------
    async def experiments(self, request: Request) -> Response:
        """LOCAL: the Experiments served, with each arm's weight and share, as ``seldon experiment status`` lists them."""
        return JSONResponse({"experiments": self.resources.experiments.describe()})

    async def reload_experiments(self, request: Request) -> Response:
        """LOCAL: read the manifests folder and serve its Experiments now; 400 (invalid) or 409 (more than
        Experiments changed) keep what is served."""
        try:
            changes = await asyncio.to_thread(self.resources.experiments.reload)
        except ManifestError as exc:
            raise Refused(400, f"not reloaded: {exc}") from None
        except ReloadRefused as exc:
            raise Refused(409, f"not reloaded: {exc}") from None
        for line in changes:
            print(f"reload: {line}", flush=True)
        return JSONResponse({"changes": changes, "experiments": self.resources.experiments.describe()})

    # -- health, metrics --------------------------------------------------------------------------
    async def live(self, request: Request) -> Response:
        return await self._proxy_get("/v2/health/live")

    async def ready(self, request: Request) -> Response:
        return await self._proxy_get("/v2/health/ready")

    async def server_metadata(self, request: Request) -> Response:
        return await self._proxy_get("/v2")

    async def gateway_health(self, request: Request) -> Response:
        return Response(status_code=200)

    async def metrics(self, request: Request) -> Response:
        body, content_type = self.resources.metrics.exposition()
        return Response(body, headers={"content-type": content_type})

    async def _proxy_get(self, path: str) -> Response:
        try:
            upstream = await self.upstream.get(path)
        except UpstreamError as exc:
            raise Refused(exc.status, exc.message) from None
        return Response(upstream.body, status_code=upstream.status, media_type=upstream.content_type)


async def _refused(request: Request, exc: Refused) -> Response:
    """A refusal as MLServer logs and answers its own (``{"error": ...}``); a failed step as Seldon's text."""
    log.warning("%s %s -> %d %s", request.method, request.url.path, exc.status, exc.message)
    if exc.plain:
        response = PlainTextResponse(exc.message, status_code=exc.status)
        for key, value in exc.headers:
            response.headers.append(key, value)
        return response
    return _error(exc.status, exc.message, exc.headers)


async def _no_route(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    problem = "no such endpoint" if status == 404 else "method not allowed"
    return _error(status, f"{request.method} {request.url.path}: {problem}")


def create_app(resources: Resources, *, max_body_bytes: int, limit_source: str, host: str) -> Starlette:
    """The ASGI app of one gateway.

    Args:
        resources: what is served.
        max_body_bytes: the request body limit (the same number MLServer and gRPC use).
        limit_source: where that number comes from, for the 413 message.
        host: the address the app is served on; a loopback address turns on the ``Host`` check.
    """
    rest = RestGateway(resources)
    routes = [
        Route("/v2/models/{name}/infer", rest.infer_model_path, methods=["POST"]),
        Route("/v2/pipelines/{name}/infer", rest.infer_pipeline_path, methods=["POST"]),
        Route("/v2/models/{name}/ready", rest.ready_model_path, methods=["GET"]),
        Route("/v2/pipelines/{name}/ready", rest.ready_pipeline_path, methods=["GET"]),
        Route("/v2/pipelines/{name}/inspect", rest.inspect, methods=["GET"]),
        Route("/v2/pipelines/{name}", rest.pipeline, methods=["GET"]),
        Route("/v2/pipelines", rest.pipelines, methods=["GET"]),
        Route("/v2/models/{name}", rest.metadata_model_path, methods=["GET"]),
        Route("/v2/models", rest.models, methods=["GET"]),
        Route("/v2/health/live", rest.live, methods=["GET"]),
        Route("/v2/health/ready", rest.ready, methods=["GET"]),
        Route("/v2", rest.server_metadata, methods=["GET"]),
        Route("/v2/experiments", rest.experiments, methods=["GET"]),
        Route("/v2/experiments/reload", rest.reload_experiments, methods=["POST"]),
        Route("/ready", rest.gateway_health, methods=["GET"]),
        Route("/metrics", rest.metrics, methods=["GET"]),
    ]
    middleware = [Middleware(RequestGuard, max_body_bytes=max_body_bytes, limit_source=limit_source)]
    if host in LOOPBACK_HOSTS:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS))
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={Refused: _refused, 404: _no_route, 405: _no_route},
    )
