"""Replicas: a Model's ``replicas: N`` served by N MLServer processes, balanced, health-checked, restarted.

What Seldon Core v2 does (``SeldonIO/seldon-core``, branch v2):

* a Server's ``replicas`` are pods, each an MLServer with an agent beside it; the scheduler places a
  Model with ``replicas: k`` on k replicas of one Server, and a Server with fewer replicas cannot
  take it: ``Failed to schedule model as no matching server had enough suitable replicas``
  (``scheduler/pkg/scheduler/scheduler.go: findAndUpdateToServers``);
* envoy has one cluster per model whose endpoints are those replicas, balanced by
  ``LEAST_REQUEST`` (``scheduler/pkg/envoy/xdscache/resource.go``), and every route retries
  ``retry_on: 5xx,connect-failure``, up to 5 times, from a 0.5 s back-off;
* Kubernetes restarts a dead pod; its agent loads the models placed on it again, and envoy sends it
  traffic once they are available.

What the gateway does on one machine:

* **Replica i is one MLServer process** (``.run/<name>-mlserver`` for replica 0,
  ``.run/<name>-mlserver-<i>`` for the others), replica i of every Server at once: replica 0 serves
  every Model (with no replicas it is the only one), and replica i > 0 the Models with ``replicas`` > i. One
  process per server replica rather than per model replica, as in Seldon: the shared libraries
  (torch, librosa, music21) are loaded once per process, so a second replica of the generator costs
  one more process, not one per model. Seldon spreads single-replica Models over the replicas by
  free memory; here they all stay on replica 0, and a Server replica that would hold no Model is
  not started. Replicas after the first start once replica 0 has loaded its Models, so that on
  a small machine the first one, which serves everything, is not slowed by the others' start.
* **Choice**: among the replicas that hold the model and are ready, the one with the fewest
  requests in flight (envoy's least request; its power-of-two-choices draw is the same thing
  with two replicas); ties are broken at random.
* **Health**: each replica's repository index is read every second (4 times a second while it
  starts): a model is in rotation on a replica while that replica lists it ``READY``. A replica
  that refuses or drops a connection is taken out of rotation at once, until the next check. The
  gateway's ``/v2/health/ready`` (and gRPC ``ServerReady``) is every replica's: not ready while
  one restarts, as one MLServer is not ready while one of its models loads.
* **Retry**, as envoy's route: a REST call that got no answer (connection refused or reset) or a
  5xx, and a gRPC call that ended ``UNAVAILABLE`` (a reset; envoy's ``5xx`` sees other gRPC
  errors as HTTP 200 with a ``grpc-status`` trailer, so they are not retried there either), is
  sent again to another replica at once, never to one already tried, up to 5 retries. The failed
  replica is out of rotation, so the 0.5 s back-off envoy needs (it may pick the same host) is not
  needed. Never retried: 4xx (the request is wrong everywhere) and timeouts (a slow model may still
  be computing; a second copy would double the load). A model call here changes nothing (with the
  same seed it gives the same tune), so a call that ran on the dead replica and runs again on
  another does nothing twice that matters.
* **Restart**: a replica whose process ends on its own (SIGKILL, a crash, the kernel's OOM killer)
  is restarted on the same ports; what it left (its inference workers) is ended with its process
  group first. It loads its models at start (``load_models_at_startup``) and rejoins when the
  health check finds them ready. A replica that keeps dying before it is ready waits 1, 2, 4... up
  to 30 s between starts (Kubernetes' CrashLoopBackOff). A replica stopped on purpose
  (SIGTERM, SIGINT, SIGHUP or exit code 0: ``make stop``) stops the gateway instead.
* ``minReplicas`` and ``maxReplicas`` turn on autoscaling in Seldon (by inference lag); the gateway
  does not autoscale, so it refuses them (:data:`tunesmith.gateway.manifests.FIELDS`).

Honest numbers for a laptop: the replicas share the same CPU cores, so two replicas of a model do
not answer more requests per second than one (``make bench`` measures both); what they buy is that
a dead process costs no failed request.

:class:`ReplicaPool` offers the interface of one :class:`~tunesmith.gateway.upstream.Upstream`
(``post``, ``request``, ``get``, ``infer``, ``model_ready``, ``stub``), so the REST and gRPC front
ends and the pipeline executor call it as they called the single MLServer; each call is routed by
the model it names (the ``/v2/models/<model>/...`` path, the message's ``model_name``, a step's model).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import grpc
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.types import InferenceRequest, InferenceResponse

from tunesmith import paths
from tunesmith.gateway import storage
from tunesmith.gateway.manifests import Manifests
from tunesmith.gateway.metrics import SERVING_REPLICA, GatewayMetrics
from tunesmith.gateway.upstream import CONNECT_TIMEOUT_S, HttpReply, Upstream, UpstreamError
from tunesmith.serving.launcher import Server, ServerError

MAX_RETRIES = 5
"""``NumRetries`` of Seldon's model routes (``xdscache/resource.go``)."""
HEALTH_INTERVAL_S = 1.0
"""How often a ready replica's repository index is read."""
STARTING_INTERVAL_S = 0.25
"""How often a starting (or failed) replica is looked at: it rejoins within this of being ready."""
MAX_BACKOFF_S = 30.0
# Replicas after the first start once replica 0 has settled on its Models, or after this long
FIRST_REPLICA_WAIT_S = 120.0
"""The longest wait before restarting a replica that keeps dying before it is ready."""
STOPPED_ON_PURPOSE = {0, -signal.SIGTERM, -signal.SIGINT, -signal.SIGHUP}
"""Exit codes of an MLServer that was asked to stop (``make stop``): the gateway stops with it."""
INDEX_PATH = "/v2/repository/index"
READY_PATH = "/v2/health/ready"
_MODEL_PATH = re.compile(r"^/v2/models/([^/]+)")
_STATE_ORDER = {"READY": 0, "LOADING": 1, "UNAVAILABLE": 2}

T = TypeVar("T")


def layout(manifests: Manifests) -> list[list[str]]:
    """The Models each replica process serves: replica i holds the Models with ``replicas`` > i."""
    count = max((model.replicas for model in manifests.models.values()), default=1)
    return [sorted(name for name, model in manifests.models.items() if model.replicas > i) for i in range(count)]


def run_name(gateway_name: str, index: int) -> str:
    """The run folder under ``.run/`` of replica ``index`` of gateway ``gateway_name``."""
    return f"{gateway_name}-mlserver" + (f"-{index}" if index else "")


def replica_pid(gateway_name: str, index: int) -> int:
    """The pid of a running replica's MLServer (what ``kill`` needs to show a failover)."""
    return int((paths.RUN / run_name(gateway_name, index) / "pid").read_text())


def build_repositories(manifests: Manifests, repo: Path, *, models_dir: Path | None = None) -> list[Path]:
    """One model repository per replica: ``repo`` with every Model, ``repo-<i>`` with replica i's."""
    folders = []
    for index, names in enumerate(layout(manifests)):
        into = repo if index == 0 else repo.with_name(f"{repo.name}-{index}")
        subset = manifests if index == 0 else replace(manifests, models={n: manifests.models[n] for n in names})
        storage.build_repository(subset, into, models_dir=models_dir)
        folders.append(into)
    return folders


@dataclass(eq=False)
class Replica:
    """One MLServer process of the pool, and what the gateway knows about it.

    Attributes:
        index: 0, 1, ... (the ``server_replica`` label of the metrics).
        server: the process (started by :meth:`ReplicaPool.start` or the gateway beforehand).
        models: the Models placed on it.
        ready: the Models it listed ``READY`` at the last health check (its rotation).
        states: every Model's state and reason from that index.
        outstanding: requests in flight on it.
    """

    index: int
    server: Server
    models: frozenset[str]
    upstream: Upstream | None = None
    ready: set[str] = field(default_factory=set)
    states: dict[str, dict] = field(default_factory=dict)
    outstanding: int = 0
    restarts: int = 0
    failures_before_ready: int = 0
    died_at: float | None = None

    @property
    def label(self) -> str:
        return str(self.index)

    def running(self) -> bool:
        return self.server.process is not None and self.server.process.poll() is None


class NoReplica(Exception):
    """No replica holding the model can take the call."""


def _rest_retry(outcome: HttpReply | BaseException) -> str | None:
    """Why a REST attempt is worth another replica: ``reset`` (no answer) or ``5xx``; else None."""
    if isinstance(outcome, UpstreamError):
        return "reset" if outcome.status == 503 else None
    if isinstance(outcome, HttpReply):
        return "5xx" if outcome.status >= 500 else None
    return None


def _grpc_retry(outcome: object) -> str | None:
    """A gRPC attempt is retried only when it ended UNAVAILABLE (connection refused or reset)."""
    if isinstance(outcome, grpc.aio.AioRpcError):
        return "reset" if outcome.code() == grpc.StatusCode.UNAVAILABLE else None
    if isinstance(outcome, UpstreamError):
        return "reset" if outcome.code == grpc.StatusCode.UNAVAILABLE else None
    return None


class ReplicaPool:
    """The MLServer processes behind one gateway, used as one upstream. Create it inside the event loop.

    Args:
        replicas: the processes, replica 0 first (it holds every Model).
        max_message_bytes: the message size limit of the connections.
        metrics: where replica state, retries and restarts are counted.
        on_stopped: called when a replica was stopped on purpose (the gateway then stops).
    """

    def __init__(self, replicas: list[Replica], max_message_bytes: int, metrics: GatewayMetrics,
                 on_stopped: Callable[[Replica], None] | None = None):
        self.replicas = replicas
        self.max_message_bytes = max_message_bytes
        self.metrics = metrics
        self.on_stopped = on_stopped
        for replica in replicas:
            replica.upstream = self._connect(replica)
        self.timeout_s = replicas[0].upstream.timeout_s
        self.stub = _RoutingStub(self)
        self._tasks: list[asyncio.Task] = []

    def _connect(self, replica: Replica) -> Upstream:
        return Upstream(replica.server.http_url, replica.server.grpc_address, self.max_message_bytes)

    def start(self) -> None:
        """Begin the health checks; replica 0's process is already started, the others start later
        (see :meth:`_first_start`)."""
        self._tasks = [asyncio.create_task(self._watch(r), name=f"replica-{r.index}") for r in self.replicas]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(r.upstream.aclose() for r in self.replicas if r.upstream), return_exceptions=True)

    # -- choosing a replica ---------------------------------------------------------------------
    def holders(self, model: str) -> list[Replica]:
        return [r for r in self.replicas if model in r.models]

    def _choose(self, model: str, tried: set[int]) -> Replica | None:
        """The ready replica of ``model`` with the fewest requests in flight, not yet tried.

        With none ready on the first attempt, a running one that holds the model (so the caller gets
        MLServer's own answer while a model loads or failed to load); else None.
        """
        ready = [r for r in self.holders(model) if model in r.ready and r.index not in tried]
        if ready:
            least = min(r.outstanding for r in ready)
            return random.choice([r for r in ready if r.outstanding == least])
        if not tried:
            running = [r for r in self.holders(model) if r.running()]
            if running:
                return min(running, key=lambda r: r.outstanding)
        return None

    async def _call(self, model: str, attempt: Callable[[Replica], Awaitable[T]],
                    retry_on: Callable[[object], str | None]) -> T:
        """Run ``attempt`` on a replica of ``model``; on a retryable failure, on another one."""
        tried: set[int] = set()
        while True:
            replica = self._choose(model, tried)
            if replica is None:
                holders = self.holders(model)
                up = sum(r.running() for r in holders)
                raise NoReplica(f"no replica of model {model} can take the call ({up} of {len(holders)} running, "
                                f"{len(tried)} tried); a restarted replica rejoins once its models are loaded")
            tried.add(replica.index)
            SERVING_REPLICA.set(replica.label)
            replica.outstanding += 1
            try:
                outcome = await attempt(replica)
            except Exception as exc:  # noqa: BLE001 - classified below, re-raised unless retried
                outcome = exc
            finally:
                replica.outstanding -= 1
            reason = retry_on(outcome)
            if reason == "reset":
                replica.ready.clear()  # out of rotation until the health check finds it ready again
                self.metrics.replica_state(replica.label, replica.running(), False)
            if reason is None or len(tried) > MAX_RETRIES or self._choose(model, tried) is None:
                if isinstance(outcome, BaseException):
                    raise outcome
                return outcome
            self.metrics.replica_retry(model, replica.label, reason)

    # -- the Upstream interface -----------------------------------------------------------------
    def primary(self) -> Replica:
        """Replica 0 while it runs, else the first running one (server-wide calls: health, metadata)."""
        return next((r for r in self.replicas if r.running()), self.replicas[0])

    async def request(self, method: str, path: str, *, body: bytes | None = None,
                      headers: dict[str, str] | None = None, timeout_s: float | None = None) -> HttpReply:
        """One REST call: ``/v2/models/<m>/...`` to a replica of ``m`` (retried as the module says),
        the repository index merged over the replicas, readiness asked of every replica (ready when
        all are), anything else to :meth:`primary`."""
        if path == INDEX_PATH:
            return self._merged_index()
        if path == READY_PATH:
            if not all(r.running() for r in self.replicas):  # one is restarting: not ready, as MLServer says it (400)
                return HttpReply(400, [], b"")
            replies = await asyncio.gather(*(r.upstream.request(method, path, timeout_s=timeout_s) for r in self.replicas))
            return next((reply for reply in replies if reply.status != 200), replies[0])
        match = _MODEL_PATH.match(path)
        if match is None or not self.holders(match.group(1)):  # not a Model of the manifests: MLServer's own answer
            return await self.primary().upstream.request(method, path, body=body, headers=headers, timeout_s=timeout_s)
        try:
            return await self._call(
                match.group(1),
                lambda r: r.upstream.request(method, path, body=body, headers=headers, timeout_s=timeout_s),
                _rest_retry,
            )
        except NoReplica as exc:
            raise UpstreamError(503, str(exc)) from None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> HttpReply:
        return await self.request("POST", path, body=body, headers=headers)

    async def get(self, path: str, timeout_s: float | None = None) -> HttpReply:
        return await self.request("GET", path, timeout_s=timeout_s)

    async def model_ready(self, name: str) -> bool:
        """Whether some replica has ``name`` in rotation (from the health checks: no call is made)."""
        return any(name in r.ready for r in self.holders(name))

    async def infer(self, model: str, request: InferenceRequest,
                    metadata: tuple[tuple[str, str], ...] = ()) -> InferenceResponse:
        """A pipeline step's call (:meth:`Upstream.infer`) on a replica of ``model``."""
        try:
            return await self._call(model, lambda r: r.upstream.infer(model, request, metadata), _grpc_retry)
        except NoReplica as exc:
            raise UpstreamError(503, f"rpc error: code = Unavailable desc = {exc}", grpc.StatusCode.UNAVAILABLE) from None

    def _merged_index(self) -> HttpReply:
        """MLServer's repository index for the whole pool: each Model at its best state over its replicas."""
        merged = []
        for name in sorted({m for r in self.replicas for m in r.models}):
            entries = [r.states[name] for r in self.holders(name) if name in r.states]
            if entries:
                best = min(entries, key=lambda e: _STATE_ORDER.get(str(e.get("state")).removeprefix("State."), 3))
                merged.append({**best, "name": name})
        return HttpReply(200, [("content-type", "application/json")], json.dumps(merged).encode())

    # -- state ----------------------------------------------------------------------------------
    def settled(self) -> bool:
        """Whether every replica has said of each of its Models READY or UNAVAILABLE (not loading)."""
        return all(_settled(r) for r in self.replicas)

    def status(self) -> list[dict]:
        """Per replica: index, pid, running, models ready, requests in flight, restarts."""
        return [{
            "replica": r.index,
            "pid": r.server.process.pid if r.running() else None,
            "running": r.running(),
            "ready": sorted(r.ready),
            "models": sorted(r.models),
            "outstanding": r.outstanding,
            "restarts": r.restarts,
        } for r in self.replicas]

    # -- health checks and restarts -------------------------------------------------------------
    async def _watch(self, replica: Replica) -> None:
        if replica.server.process is None:
            await self._first_start(replica)
        while True:
            if not replica.running():
                if not await self._restart(replica):
                    return
                continue
            await self._check(replica)
            complete = replica.ready == replica.models
            await asyncio.sleep(HEALTH_INTERVAL_S if complete else STARTING_INTERVAL_S)

    async def _first_start(self, replica: Replica) -> None:
        """Start a replica after the first once replica 0 has settled on its Models.

        Replica 0 holds every Model, so the platform serves everything as soon as it is up; a
        second MLServer starting at the same time would take half of a 2-core machine from it.
        """
        first = self.replicas[0]
        deadline = time.monotonic() + FIRST_REPLICA_WAIT_S
        while time.monotonic() < deadline and not _settled(first):
            await asyncio.sleep(STARTING_INTERVAL_S)
        _start(replica)

    async def _check(self, replica: Replica) -> None:
        """Read the replica's index: its rotation is the Models it lists READY."""
        try:
            reply = await replica.upstream.request("POST", INDEX_PATH, body=b"{}",
                                                   headers={"content-type": "application/json"},
                                                   timeout_s=CONNECT_TIMEOUT_S)
            index = json.loads(reply.body) if reply.status == 200 else []
            states = {m["name"]: m for m in index if isinstance(m, dict) and m.get("name") in replica.models}
        except (UpstreamError, ValueError, TypeError, KeyError):
            states = {}
        replica.states = states
        replica.ready = {name for name, m in states.items() if str(m.get("state")).removeprefix("State.") == "READY"}
        if replica.ready == replica.models and replica.died_at is not None:
            print(f"MLServer replica {replica.index} is back: {len(replica.ready)} model(s) ready "
                  f"{time.monotonic() - replica.died_at:.1f} s after it died", file=sys.stderr, flush=True)
            replica.died_at = None
            replica.failures_before_ready = 0
        self.metrics.replica_state(replica.label, replica.running(), replica.ready == replica.models)

    async def _restart(self, replica: Replica) -> bool:
        """Start a replica whose process ended; False when it was stopped on purpose (the gateway stops)."""
        process = replica.server.process
        code = process.returncode if process is not None else None
        replica.ready.clear()
        replica.states = {}
        self.metrics.replica_state(replica.label, False, False)
        if code in STOPPED_ON_PURPOSE:
            print(f"MLServer replica {replica.index} exited with code {code} (stopped); stopping the gateway.",
                  file=sys.stderr, flush=True)
            if self.on_stopped is not None:
                self.on_stopped(replica)
            return False
        if replica.died_at is None:
            replica.died_at = time.monotonic()
        if process is not None:
            print(f"MLServer replica {replica.index} exited with code {code}; restarting it.\n"
                  f"{replica.server.log_tail(10)}", file=sys.stderr, flush=True)
            replica.server.stop(timeout=5)  # its inference workers, if any outlived it (process group)
        await replica.upstream.aclose()
        delay = 0.0 if replica.failures_before_ready == 0 else min(MAX_BACKOFF_S, 2.0 ** (replica.failures_before_ready - 1))
        replica.failures_before_ready += 1
        await asyncio.sleep(delay)
        _start(replica)
        replica.upstream = self._connect(replica)
        replica.restarts += 1
        self.metrics.replica_restart(replica.label)
        return True


def _start(replica: Replica) -> None:
    """Start the replica's MLServer without waiting; a failure to start is printed, and the watch retries."""
    try:
        # On the event loop's thread: the process is tied to the thread that starts it.
        replica.server.start(wait=False)
    except ServerError as exc:
        print(f"MLServer replica {replica.index} did not start: {exc}", file=sys.stderr, flush=True)


def _settled(replica: Replica) -> bool:
    """Whether the replica has said of each of its Models READY or UNAVAILABLE (not loading)."""
    return all(str(replica.states.get(m, {}).get("state")).removeprefix("State.") in ("READY", "UNAVAILABLE")
               for m in replica.models)


class _RoutingStub:
    """The gRPC stub of the pool: the V2 service's calls, each routed as :meth:`ReplicaPool.request` routes REST.

    ``ModelInfer`` goes to a replica of ``model_name`` (and is retried on ``UNAVAILABLE``),
    ``ModelReady``/``ModelMetadata`` to a replica of ``name``, the server-wide calls to the primary.
    """

    def __init__(self, pool: ReplicaPool):
        self.pool = pool

    async def _routed(self, model: str, method: str, request, metadata, timeout):
        try:
            return await self.pool._call(
                model, lambda r: getattr(r.upstream.stub, method)(request, metadata=metadata, timeout=timeout),
                _grpc_retry,
            )
        except NoReplica as exc:
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                       details=str(exc)) from None

    async def ModelInfer(self, request, metadata=None, timeout=None):
        return await self._routed(request.model_name, "ModelInfer", request, metadata, timeout)

    async def ModelReady(self, request, metadata=None, timeout=None):
        return await self._routed(request.name, "ModelReady", request, metadata, timeout)

    async def ModelMetadata(self, request, metadata=None, timeout=None):
        return await self._routed(request.name, "ModelMetadata", request, metadata, timeout)

    async def ServerLive(self, request, metadata=None, timeout=None):
        return await self.pool.primary().upstream.stub.ServerLive(request, metadata=metadata, timeout=timeout)

    async def ServerReady(self, request, metadata=None, timeout=None):
        """Ready when every replica is (one that is restarting is not)."""
        if not all(r.running() for r in self.pool.replicas):
            return pb.ServerReadyResponse(ready=False)
        replies = await asyncio.gather(*(r.upstream.stub.ServerReady(request, metadata=metadata, timeout=timeout)
                                         for r in self.pool.replicas))
        return next((reply for reply in replies if not reply.ready), replies[0])

    async def ServerMetadata(self, request, metadata=None, timeout=None):
        return await self.pool.primary().upstream.stub.ServerMetadata(request, metadata=metadata, timeout=timeout)
