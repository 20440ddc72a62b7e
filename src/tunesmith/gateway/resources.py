"""What the gateway serves, and how one request for it is answered, whichever protocol it came by.

REST (:mod:`tunesmith.gateway.app`) and gRPC (:mod:`tunesmith.gateway.grpc_service`) only translate
between their wire format and the calls here, so the two protocols cannot drift apart:

* :meth:`Resources.route` routes a request by ``seldon-model`` or its path (:mod:`.routing`), and
  through an Experiment to one of its arms (:mod:`.experiments`); :meth:`Resources.target` is the
  Model or Pipeline that answers;
* :meth:`Resources.model` checks that a model exists (the proxying itself stays in the front ends,
  which forward bytes and messages untouched);
* :meth:`Resources.run_pipeline` executes a pipeline with :func:`tunesmith.gateway.graph.execute`,
  its steps calling MLServer over gRPC, keeps the run for inspect and counts it in the metrics;
* :meth:`Resources.observe` writes each answered request to the request log (:mod:`.requestlog`)
  and counts an experiment's arms; :meth:`Resources.mirror` sends an experiment's mirror call;
* failures are raised as :class:`Refused`, which carries both an HTTP status and a gRPC code.

What Seldon answers, and what the gateway answers (paths in ``SeldonIO/seldon-core`` v2):

* a ``seldon-model`` value of no known form: REST 400 (Seldon's body is empty; here it is the
  message Seldon logs, ``Bad or missing header seldon-model X``, ``scheduler/pkg/kafka/pipeline/
  httpserver.go``), gRPC FAILED_PRECONDITION (``grpcserver.go``);
* a step's model call failed: REST 400 with the plain text ``<step> : <error text>``
  (``kafkamanager.go: createResponseErrorPayload``), gRPC UNKNOWN with the same text;
* an unknown pipeline: 404 / NOT_FOUND listing the pipelines (Seldon: 500 ``pipeline X not found``);
* no output can be produced: 504 / DEADLINE_EXCEEDED at once (LOCAL; Seldon waits for ever);
* a pipeline without ``output``: 400 ``pipeline X has no output`` (LOCAL; Seldon never replies).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import grpc
from mlserver.types import InferenceRequest, InferenceResponse

from tunesmith.gateway import graph, requestlog, routing
from tunesmith.gateway.experiments import MIRRORS_IN_FLIGHT, Experiments, NoRoute, Route
from tunesmith.gateway.manifests import DEFAULT_SERVER, Manifests, Pipeline
from tunesmith.gateway.metrics import GatewayMetrics, grpc_code_name
from tunesmith.gateway.upstream import Upstream, UpstreamError

REQUEST_TIMEOUT_S = 300.0
"""LOCAL: the longest a pipeline request may take. Seldon has no limit (envoy's route timeout is 0,
``envoy/xdscache/resource.go: DefaultRouteTimeoutSecs``), so a request whose output never comes
waits for ever there."""

GRPC_CODE = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    424: grpc.StatusCode.FAILED_PRECONDITION,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
"""HTTP status -> gRPC code for the gateway's own refusals; anything else is INTERNAL."""


class Refused(Exception):
    """A request answered with an error, in a form both front ends can render.

    Attributes:
        status: the REST status.
        message: the error text (REST body ``{"error": message}``, or the bare text when ``plain``).
        code: the gRPC status.
        headers: response headers (REST) or trailing metadata (gRPC) to send with it.
        plain: send ``message`` as the whole body, as Seldon's pipeline gateway does for a failed step.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        headers: list[tuple[str, str]] | None = None,
        plain: bool = False,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or GRPC_CODE.get(status, grpc.StatusCode.INTERNAL)
        self.headers = headers or []
        self.plain = plain


@dataclass
class PipelineReply:
    """A pipeline's response and the headers (gRPC: initial metadata) that go with it."""

    response: InferenceResponse
    headers: list[tuple[str, str]] = field(default_factory=list)


def _names(names) -> str:
    return ", ".join(sorted(names)) or "none"


class Resources:
    """The models and pipelines of the manifests, served through one MLServer process.

    Args:
        manifests: the loaded manifests (:func:`tunesmith.gateway.manifests.load`).
        upstream: the connections to MLServer.
        metrics: where calls are counted.
        request_timeout_s: the longest a pipeline request may take before it is answered 504.
        runs: where pipeline runs are kept for inspect.
        request_log: where every request is recorded (none: not recorded).
    """

    def __init__(
        self,
        manifests: Manifests,
        upstream: Upstream,
        metrics: GatewayMetrics,
        *,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        runs: graph.RunStore | None = None,
        request_log: requestlog.RequestLog | None = None,
    ):
        self.manifests = manifests
        self.models = manifests.models
        self.pipelines = manifests.pipelines
        self.upstream = upstream
        self.metrics = metrics
        self.request_timeout_s = request_timeout_s
        self.runs = runs if runs is not None else graph.RunStore()
        self.experiments = Experiments(manifests)
        self.request_log = request_log
        self._mirrors: set[asyncio.Task] = set()

    # -- routing ----------------------------------------------------------------------------------
    def route(
        self, header: str | None, path_name: str, path_kind: routing.Kind = "model", sticky: str | None = None
    ) -> Route:
        """Where a request goes (header first, then path; an experiment picks its arm), or :class:`Refused`.

        ``sticky`` is the caller's ``x-seldon-route`` (every value, joined), which keeps a caller on
        the arm that answered it before.
        """
        try:
            target = routing.resolve(header, path_name, path_kind)
        except routing.BadHeader as exc:
            raise Refused(400, str(exc), code=grpc.StatusCode.FAILED_PRECONDITION) from None
        try:
            return self.experiments.route(target, sticky)
        except NoRoute as exc:
            raise Refused(404, str(exc)) from None

    def target(self, header: str | None, path_name: str, path_kind: routing.Kind = "model") -> routing.Target:
        """The Model or Pipeline that answers a request (an experiment's arm for an experiment), or :class:`Refused`."""
        return self.route(header, path_name, path_kind).target

    def model(self, name: str) -> str:
        """``name`` if a Model manifest defines it, else :class:`Refused` 404 listing the models."""
        if name not in self.models:
            raise Refused(404, f"Model {name} not found; the manifests define: {_names(self.models)}")
        return name

    def server_of(self, model: str) -> str:
        """The Server a model is placed on (``Manifests.placement``), the ``server`` label of its metrics."""
        return self.manifests.placement.get(model, DEFAULT_SERVER)

    def pipeline(self, name: str) -> Pipeline:
        """The Pipeline manifest called ``name``, else :class:`Refused` 404 listing the pipelines."""
        try:
            return self.pipelines[name]
        except KeyError:
            raise Refused(404, f"pipeline {name} not found; the manifests define: {_names(self.pipelines)}") from None

    # -- readiness --------------------------------------------------------------------------------
    async def pipeline_ready(self, name: str) -> bool:
        """Whether every step's model is loaded (``scheduler/pkg/kafka/pipeline/status/ready.go``)."""
        pipeline = self.pipeline(name)
        ready = await asyncio.gather(*(self.upstream.model_ready(step.name) for step in pipeline.steps))
        return all(ready)

    async def describe(self, name: str) -> dict:
        """A pipeline's name, version, steps and readiness, for ``GET /v2/pipelines/{name}`` (LOCAL)."""
        pipeline = self.pipeline(name)
        return {
            "name": name,
            "version": routing.PIPELINE_VERSION_VALUE,
            "steps": list(pipeline.step_names),
            "ready": await self.pipeline_ready(name),
        }

    async def describe_pipelines(self) -> list[dict]:
        """Every pipeline, described, for ``GET /v2/pipelines``."""
        return list(await asyncio.gather(*(self.describe(name) for name in sorted(self.pipelines))))

    # -- the request log, experiment metrics and mirrors -------------------------------------------
    def observe(
        self, route: Route, *, request_id: str, method_type: str, started: float, seconds: float, status: int,
        code: str, inputs: Callable[[], dict], outputs: Callable[[], dict], mirror: bool = False,
    ) -> None:
        """Count a request under its experiment arm and write it to the request log.

        ``inputs`` and ``outputs`` make the tensors' summaries (:func:`requestlog.summarize`); they
        run on the log's writer thread, so parsing a body never holds up the event loop.
        """
        if route.experiment:
            arm = route.target.name
            self.metrics.experiment_infer(route.experiment, arm, "mirror" if mirror else "candidate", method_type,
                                          seconds, code)
        if self.request_log is None:
            return

        def record() -> requestlog.Record:
            return requestlog.Record(
                ts=started, request_id=request_id, kind=route.target.kind, target=route.target.name,
                experiment=route.experiment, arm=route.arm, mirror=mirror, status=status,
                latency_ms=round(seconds * 1000, 3), inputs=inputs(), outputs=outputs(),
            )

        self.request_log.submit(record)

    def mirror(
        self, route: Route, request: Callable[[], InferenceRequest], *, request_id: str, headers: Mapping[str, str]
    ) -> None:
        """Send the request to the experiment's mirror, if this one was picked for it; never awaited by the caller.

        ``request`` makes the V2 request (a REST body is parsed only here, off the caller's path).
        The mirror is a Model called over gRPC, as a pipeline step is, or a Pipeline run as any other.
        """
        if route.mirror is None:
            return
        if len(self._mirrors) >= MIRRORS_IN_FLIGHT:
            self.metrics.mirror_dropped(route.experiment, route.mirror.name)
            return
        task = asyncio.create_task(self._mirror(route, request, request_id, dict(headers)))
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

    async def _mirror(self, route: Route, make: Callable[[], InferenceRequest], request_id: str,
                      headers: dict[str, str]) -> None:
        shadow = Route(route.mirror, route.experiment)
        started, start = time.time(), time.perf_counter()
        try:
            request = await asyncio.to_thread(make)
        except Exception as exc:  # noqa: BLE001 - the caller's body was not a V2 request: the mirror gets nothing
            problem = {"error": str(exc)}
            self.observe(shadow, request_id=request_id, method_type="grpc", started=started, seconds=0.0, status=400,
                         code="InvalidArgument", inputs=dict, outputs=lambda: problem, mirror=True)
            return
        if shadow.target.kind == "pipeline":
            try:
                await self.run_pipeline(shadow.target.name, request, request_id=request_id, headers=headers,
                                        method_type="grpc", route=shadow, mirror=True)
            except Refused:
                pass  # logged and counted by run_pipeline
            return
        model = shadow.target.name
        status, code, outputs = 200, grpc.StatusCode.OK, None
        metadata = tuple(headers.items()) + ((routing.REQUEST_ID, request_id), (routing.SELDON_MODEL, model))
        try:
            response = await self.upstream.infer(model, request, metadata)
            outputs = lambda: requestlog.summarize(response.outputs)  # noqa: E731
        except UpstreamError as exc:
            status, code, problem = exc.status, exc.code or grpc.StatusCode.UNKNOWN, {"error": exc.message}
            outputs = lambda: problem  # noqa: E731
        finally:
            seconds = time.perf_counter() - start
            self.metrics.model_infer(self.server_of(model), model, "grpc", seconds, grpc_code_name(code))
            self.observe(shadow, request_id=request_id, method_type="grpc", started=started, seconds=seconds,
                         status=status, code=grpc_code_name(code), inputs=lambda: requestlog.summarize(request.inputs),
                         outputs=outputs or (lambda: {"error": "cancelled"}), mirror=True)

    async def aclose(self) -> None:
        """Let running mirror calls end (briefly) and commit the request log."""
        if self._mirrors:
            await asyncio.wait(list(self._mirrors), timeout=5)
        if self.request_log is not None:
            await asyncio.to_thread(self.request_log.close)

    # -- pipelines --------------------------------------------------------------------------------
    def _keep(self, run: graph.Run | None) -> None:
        """Keep a run for inspect, failed ones too: their records show where a request stopped."""
        if run is not None:
            self.runs.add(run)

    def _call_for(self, pipeline: str, headers: Mapping[str, str]):
        """The ``call`` the executor uses for each step: MLServer over gRPC, counted per step and model."""
        metadata = tuple(
            (key, value) for key, value in headers.items() if key != routing.SELDON_ROUTE
        )  # ``worker.go`` never forwards x-seldon-route: it would confuse the router

        async def call(model: str, request: InferenceRequest) -> InferenceResponse:
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return await self.upstream.infer(model, request, metadata + ((routing.SELDON_MODEL, model),))
            except UpstreamError as exc:
                code = exc.code or grpc.StatusCode.UNKNOWN
                raise
            except asyncio.CancelledError:  # the request was given up (timeout) while the step ran
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                seconds = time.perf_counter() - start
                self.metrics.model_infer(self.server_of(model), model, "grpc", seconds, grpc_code_name(code))
                self.metrics.step_infer(pipeline, model, seconds, grpc_code_name(code))

        return call

    async def run_pipeline(
        self, name: str, request: InferenceRequest, *, request_id: str, headers: Mapping[str, str], method_type: str,
        route: Route | None = None, mirror: bool = False,
    ) -> PipelineReply:
        """Execute pipeline ``name`` on ``request``; the reply, or :class:`Refused`.

        Args:
            request_id: the caller's ``x-request-id``, else a new one.
            headers: the caller's ``x-*`` headers (:func:`routing.external_headers`); they travel with
                the data to every step and come back on the response, as in Seldon.
            method_type: ``rest`` or ``grpc``, for the metrics.
            route: how the request got here (an experiment's arm), for the metrics and the request log.
            mirror: this is an experiment's mirror call.
        """
        pipeline = self.pipeline(name)  # before counting: a label per mistyped name would grow without end
        route = route or Route(routing.Target(name, "pipeline"))
        started, start = time.time(), time.perf_counter()
        status, response, error = 200, None, "cancelled"
        reply_headers = [(routing.REQUEST_ID, request_id), *headers.items()]
        outcome = "200" if method_type == "rest" else "OK"
        try:
            travelling = {**headers, routing.REQUEST_ID: request_id}
            execution = graph.execute(
                pipeline, request, self._call_for(name, travelling), request_id=request_id, headers=travelling
            )
            try:
                response, run = await asyncio.wait_for(execution, self.request_timeout_s)
            except graph.StepFailed as exc:
                self._keep(exc.run)
                raise Refused(
                    400, exc.message, code=grpc.StatusCode.UNKNOWN, plain=True,
                    headers=reply_headers + [(routing.STEP_STATUS, str(exc.status))],
                ) from None
            except graph.NoOutput as exc:
                self._keep(exc.run)
                raise Refused(504, str(exc), headers=reply_headers) from None
            except graph.NoOutputDefined as exc:
                self._keep(exc.run)
                raise Refused(400, str(exc), headers=reply_headers) from None
            except asyncio.TimeoutError:
                raise Refused(
                    504, f"pipeline {name}: no output within {self.request_timeout_s:g} s", headers=reply_headers
                ) from None
            self._keep(run)
            reply_headers.append((routing.PIPELINE_VERSION, str(run.version)))
            reply_headers += [(routing.SELDON_ROUTE, entry) for entry in (*run.route, routing.pipeline_route(name))]
            return PipelineReply(response, reply_headers)
        except Refused as exc:
            outcome = str(exc.status) if method_type == "rest" else grpc_code_name(exc.code)
            status, error = exc.status, exc.message
            raise
        finally:
            seconds = time.perf_counter() - start
            self.metrics.pipeline_infer(name, method_type, seconds, outcome)
            if response is not None:
                outputs = lambda: requestlog.summarize(response.outputs)  # noqa: E731
            else:
                outputs = lambda: {"error": error}  # noqa: E731
            self.observe(route, request_id=request_id, method_type=method_type, started=started, seconds=seconds,
                         status=status, code=outcome, inputs=lambda: requestlog.summarize(request.inputs),
                         outputs=outputs, mirror=mirror)
