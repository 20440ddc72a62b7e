"""Prometheus metrics under Seldon's names and labels, so Seldon's dashboards and queries work locally.

In Seldon Core v2 two processes count requests: the pipeline gateway
(``scheduler/pkg/metrics/gateway.go``, label ``server="pipeline-gateway"``) and the agent next to each
model server replica (``scheduler/pkg/metrics/agent.go``). Locally the gateway is both, so it
keeps both families, plus one family Seldon does not have: per pipeline step, since a local pipeline
runs inside the gateway and its steps are otherwise invisible to Prometheus.

=================================================  =========  ==============================================
metric                                             type       labels
=================================================  =========  ==============================================
``seldon_pipeline_infer_api_seconds``              histogram  server, pipeline, method, code
``seldon_pipeline_infer_total``                    counter    server, pipeline, method_type, code
``seldon_pipeline_infer_seconds_total``            counter    server, pipeline, method_type, code
``seldon_pipeline_aggregate_infer_total``          counter    server, method_type
``seldon_pipeline_aggregate_infer_seconds_total``  counter    server, method_type
``seldon_model_infer_api_seconds``                 histogram  server, server_replica, method, code
``seldon_model_infer_total``                       counter    server, server_replica, model, model_internal,
                                                              method_type, code
``seldon_model_infer_seconds_total``               counter    (as above)
``seldon_model_aggregate_infer_total``             counter    server, server_replica, method_type
``seldon_model_aggregate_infer_seconds_total``     counter    server, server_replica, method_type
``seldon_pipeline_step_infer_total``               counter    server, pipeline, step, code (LOCAL)
``seldon_pipeline_step_infer_seconds_total``       counter    server, pipeline, step, code (LOCAL)
``tunesmith_replica_up``                           gauge      server_replica (LOCAL: 1 while its process runs)
``tunesmith_replica_ready``                        gauge      server_replica (LOCAL: 1 while all its models are)
``tunesmith_replica_retries_total``                counter    model, server_replica, reason (LOCAL)
``tunesmith_replica_restarts_total``               counter    server_replica (LOCAL)
``seldon_experiment_infer_api_seconds``            histogram  experiment, arm, role, code (LOCAL)
``seldon_experiment_infer_total``                  counter    experiment, arm, role, method_type, code (LOCAL)
``seldon_experiment_infer_seconds_total``          counter    (as above) (LOCAL)
``seldon_experiment_mirror_dropped_total``         counter    experiment, arm (LOCAL)
=================================================  =========  ==============================================

Seldon counts an experiment's traffic only under each arm's own model or pipeline; the
``seldon_experiment_*`` families say which experiment sent it and in which ``role``: ``candidate``
(the caller got its answer) or ``mirror`` (the shadow call, whose answer nobody sees). A mirror
call dropped because :data:`~tunesmith.gateway.experiments.MIRRORS_IN_FLIGHT` were running is
counted in ``seldon_experiment_mirror_dropped_total``.

``method_type`` is ``rest`` or ``grpc``; ``code`` is an HTTP status (``"200"``) for REST and a gRPC
code name as Go spells it (``"OK"``, ``"InvalidArgument"``) for gRPC. The model histogram's
``method`` is ``post`` for REST (promhttp's label) and ``grpc``. Pipeline steps call their models
over gRPC, as Seldon's model gateway does (``kafka/gateway/worker.go``), so each step also adds to
``seldon_model_infer_total{method_type="grpc"}``. Every pipeline call is counted with its status;
Seldon's REST pipeline gateway counts only 200s and its own 500s (``pipeline/httpserver.go: infer``),
so a dashboard of failed steps would stay empty there.

Everything lives in one :class:`prometheus_client.CollectorRegistry` per gateway, not the process
default, so several gateways in one process (tests) do not collide, and ``/metrics`` shows only
these. Go's client has no ``*_created`` series; they are switched off per registry below.

``server_replica`` is the MLServer process that answered a model call (:mod:`.replicas`; ``"0"``
with one replica). The ``tunesmith_replica_*`` families are the gateway's own (in a cluster,
Kubernetes and envoy report these): ``reason`` of a retry is ``reset`` (no answer) or ``5xx``,
and ``server_replica`` there is the replica that failed.
"""

from __future__ import annotations

import contextvars

import grpc
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tunesmith.gateway.routing import MODEL_VERSION

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
"""``DefaultHistogramBuckets`` of ``scheduler/pkg/metrics/agent.go``, used by every Seldon histogram."""
PIPELINE_SERVER = "pipeline-gateway"
"""The ``server`` label of the pipeline family (``NewPrometheusPipelineMetrics``)."""
SERVER_REPLICA = "0"
"""The ``server_replica`` of a call no replica was chosen for, and of the only replica."""
SERVING_REPLICA: contextvars.ContextVar[str] = contextvars.ContextVar("server_replica", default=SERVER_REPLICA)
"""The replica the current request's model call went to, set by :class:`~tunesmith.gateway.replicas.ReplicaPool`
in the caller's context, so the front ends' :meth:`GatewayMetrics.model_infer` labels it without passing it on."""

_GO_CODE_NAMES = {grpc.StatusCode.OK: "OK", grpc.StatusCode.CANCELLED: "Canceled"}


def grpc_code_name(code: grpc.StatusCode) -> str:
    """A gRPC status as Go's ``codes.Code.String()`` prints it: ``InvalidArgument``, ``OK``, ``Canceled``."""
    return _GO_CODE_NAMES.get(code) or "".join(part.capitalize() for part in code.name.split("_"))


class _NoCreatedRegistry(CollectorRegistry):
    """A registry whose exposition leaves out the ``*_created`` samples Go's client never writes."""

    def collect(self):
        for family in super().collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


class GatewayMetrics:
    """The counters and histograms of one gateway, and their text exposition for ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = _NoCreatedRegistry(auto_describe=True)
        r = self.registry
        pipeline = ["server", "pipeline", "method_type", "code"]
        self._pipeline_api = Histogram(
            "seldon_pipeline_infer_api_seconds", "A histogram of latencies for pipeline gateway",
            ["server", "pipeline", "method", "code"], buckets=BUCKETS, registry=r,
        )
        # prometheus_client appends ``_total`` to a counter's name: "seldon_pipeline_infer" is exposed
        # as seldon_pipeline_infer_total, "seldon_pipeline_infer_seconds" as ..._seconds_total.
        self._pipeline_total = Counter(
            "seldon_pipeline_infer", "A count of pipeline gateway calls", pipeline, registry=r
        )
        self._pipeline_seconds = Counter(
            "seldon_pipeline_infer_seconds", "A sum of pipeline gateway call latencies", pipeline, registry=r
        )
        self._pipeline_aggregate_total = Counter(
            "seldon_pipeline_aggregate_infer", "A count of pipeline gateway calls (aggregate)",
            ["server", "method_type"], registry=r,
        )
        self._pipeline_aggregate_seconds = Counter(
            "seldon_pipeline_aggregate_infer_seconds", "A sum of pipeline gateway call latencies (aggregate)",
            ["server", "method_type"], registry=r,
        )

        model = ["server", "server_replica", "model", "model_internal", "method_type", "code"]
        self._model_api = Histogram(
            "seldon_model_infer_api_seconds", "A histogram of latencies for inference server",
            ["server", "server_replica", "method", "code"], buckets=BUCKETS, registry=r,
        )
        self._model_total = Counter("seldon_model_infer", "A count of server inference calls", model, registry=r)
        self._model_seconds = Counter(
            "seldon_model_infer_seconds", "A sum of server inference call latencies", model, registry=r
        )
        self._model_aggregate_total = Counter(
            "seldon_model_aggregate_infer", "A count of server inference calls (aggregate)",
            ["server", "server_replica", "method_type"], registry=r,
        )
        self._model_aggregate_seconds = Counter(
            "seldon_model_aggregate_infer_seconds", "A sum of server inference call latencies (aggregate)",
            ["server", "server_replica", "method_type"], registry=r,
        )

        step = ["server", "pipeline", "step", "code"]
        self._step_total = Counter(
            "seldon_pipeline_step_infer", "A count of pipeline step model calls (local gateway)", step, registry=r
        )
        self._step_seconds = Counter(
            "seldon_pipeline_step_infer_seconds", "A sum of pipeline step model call latencies (local gateway)",
            step, registry=r,
        )

        replica = ["server_replica"]
        self._replica_up = Gauge("tunesmith_replica_up", "1 while the replica's MLServer process runs (local gateway)",
                                 replica, registry=r)
        self._replica_ready = Gauge("tunesmith_replica_ready",
                                    "1 while every model placed on the replica is ready (local gateway)", replica, registry=r)
        self._replica_retries = Counter(
            "tunesmith_replica_retries", "Model calls sent again to another replica after this one failed (local gateway)",
            ["model", "server_replica", "reason"], registry=r,
        )
        self._replica_restarts = Counter(
            "tunesmith_replica_restarts", "Restarts of the replica's MLServer process (local gateway)", replica, registry=r
        )

        arm = ["experiment", "arm", "role", "method_type", "code"]
        self._experiment_api = Histogram(
            "seldon_experiment_infer_api_seconds", "A histogram of latencies per experiment arm (local gateway)",
            ["experiment", "arm", "role", "code"], buckets=BUCKETS, registry=r,
        )
        self._experiment_total = Counter(
            "seldon_experiment_infer", "A count of calls per experiment arm (local gateway)", arm, registry=r
        )
        self._experiment_seconds = Counter(
            "seldon_experiment_infer_seconds", "A sum of call latencies per experiment arm (local gateway)", arm,
            registry=r,
        )
        self._experiment_dropped = Counter(
            "seldon_experiment_mirror_dropped", "Mirror calls not made because too many were running (local gateway)",
            ["experiment", "arm"], registry=r,
        )

    def pipeline_infer(self, pipeline: str, method_type: str, seconds: float, code: str) -> None:
        """One pipeline call (``AddPipelineInferMetrics``)."""
        self._pipeline_api.labels(PIPELINE_SERVER, pipeline, method_type, code).observe(seconds)
        self._pipeline_total.labels(PIPELINE_SERVER, pipeline, method_type, code).inc()
        self._pipeline_seconds.labels(PIPELINE_SERVER, pipeline, method_type, code).inc(seconds)
        self._pipeline_aggregate_total.labels(PIPELINE_SERVER, method_type).inc()
        self._pipeline_aggregate_seconds.labels(PIPELINE_SERVER, method_type).inc(seconds)

    def model_infer(self, server: str, model: str, method_type: str, seconds: float, code: str) -> None:
        """One model call, from a caller or a pipeline step (``AddModelInferMetrics`` and the histogram)."""
        internal = f"{model}_{MODEL_VERSION}"
        method = "post" if method_type == "rest" else "grpc"
        replica = SERVING_REPLICA.get()
        self._model_api.labels(server, replica, method, code).observe(seconds)
        self._model_total.labels(server, replica, model, internal, method_type, code).inc()
        self._model_seconds.labels(server, replica, model, internal, method_type, code).inc(seconds)
        self._model_aggregate_total.labels(server, replica, method_type).inc()
        self._model_aggregate_seconds.labels(server, replica, method_type).inc(seconds)

    def step_infer(self, pipeline: str, step: str, seconds: float, code: str) -> None:
        """One model call made by a pipeline step (LOCAL family)."""
        self._step_total.labels(PIPELINE_SERVER, pipeline, step, code).inc()
        self._step_seconds.labels(PIPELINE_SERVER, pipeline, step, code).inc(seconds)

    def replica_state(self, replica: str, up: bool, ready: bool) -> None:
        """A replica's process is running (``up``) and has every model it holds in rotation (``ready``)."""
        self._replica_up.labels(replica).set(int(up))
        self._replica_ready.labels(replica).set(int(ready))

    def replica_retry(self, model: str, replica: str, reason: str) -> None:
        """A call to ``model`` that failed on ``replica`` (``reset`` or ``5xx``) and is sent to another."""
        self._replica_retries.labels(model, replica, reason).inc()

    def replica_restart(self, replica: str) -> None:
        self._replica_restarts.labels(replica).inc()

    def experiment_infer(self, experiment: str, arm: str, role: str, method_type: str, seconds: float,
                         code: str) -> None:
        """One call routed by an experiment: ``role`` is ``candidate`` or ``mirror`` (LOCAL families)."""
        self._experiment_api.labels(experiment, arm, role, code).observe(seconds)
        self._experiment_total.labels(experiment, arm, role, method_type, code).inc()
        self._experiment_seconds.labels(experiment, arm, role, method_type, code).inc(seconds)

    def mirror_dropped(self, experiment: str, arm: str) -> None:
        self._experiment_dropped.labels(experiment, arm).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format and its content type, for ``GET /metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
