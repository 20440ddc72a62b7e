"""Replicas on one machine: what a second copy of a model buys, and what it does not (``make bench``).

Two tables, on a gateway serving the tune generator alone (``tune-generator-v1``, the
``tune-generator`` folder) on a Server with two replicas:

* **throughput and latency** with ``replicas: 1`` and ``replicas: 2``, at 1, 4 and 16 concurrent
  REST clients, one 8-bar tune per request. Both replicas share the same cores: on a 2-core
  laptop a second copy can add at most the core one MLServer worker leaves idle;
* **failover**: with 4 clients sending, one replica's MLServer is killed (SIGKILL); the table gives
  the requests that failed (the goal is 0: the gateway retries them on the other replica), the
  retries, and the time from the kill until the gateway has the replica back in rotation.

The load helpers (:class:`Traffic`, :func:`replica_counts`, :func:`kill_replica`,
:func:`wait_until_ready`) are the ones the replica notebook and tests use. Nothing here asserts on time.
"""

from __future__ import annotations

import os
import signal
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import requests
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tunesmith.gateway.replicas import replica_pid
from tunesmith.workshop.bench_gateway import RunningGateway
from tunesmith.workshop.bench_timing import percentile

GENERATOR = "tune-generator-v1"
PROMPT = "a lively reel in D major"
BARS = 8
CLIENTS = (1, 4, 16)


@dataclass
class Outcome:
    """One request: when it started (s since the traffic began), how long it took, and how it ended."""

    start: float
    seconds: float
    ok: bool
    protocol: str
    error: str = ""


def rest_body(inputs: dict[str, object]) -> dict:
    """A V2 REST body from ``{name: value}``: text as BYTES, ints as INT32 (``seed`` as INT64)."""
    tensors = []
    for name, value in inputs.items():
        if isinstance(value, str):
            tensors.append({"name": name, "datatype": "BYTES", "shape": [1], "data": [value]})
        else:
            tensors.append({"name": name, "datatype": "INT64" if name == "seed" else "INT32", "shape": [1],
                            "data": [int(value)]})
    return {"inputs": tensors}


def grpc_message(model: str, inputs: dict[str, object]) -> pb.ModelInferRequest:
    """The same request as :func:`rest_body`, as a gRPC message for ``model``."""
    tensors = []
    for name, value in inputs.items():
        if isinstance(value, str):
            contents = pb.InferTensorContents(bytes_contents=[value.encode()])
            tensors.append(pb.ModelInferRequest.InferInputTensor(name=name, datatype="BYTES", shape=[1], contents=contents))
        elif name == "seed":
            contents = pb.InferTensorContents(int64_contents=[int(value)])
            tensors.append(pb.ModelInferRequest.InferInputTensor(name=name, datatype="INT64", shape=[1], contents=contents))
        else:
            contents = pb.InferTensorContents(int_contents=[int(value)])
            tensors.append(pb.ModelInferRequest.InferInputTensor(name=name, datatype="INT32", shape=[1], contents=contents))
    return pb.ModelInferRequest(model_name=model, inputs=tensors)


@dataclass
class Traffic:
    """Clients calling one model through the gateway in background threads, until :meth:`stop`.

    Args:
        http_url: the gateway's REST address.
        model: the Model to call.
        inputs: the request's inputs, ``{name: value}``.
        rest_clients, grpc_clients: how many clients of each protocol (each sends one request at a time).
        grpc_address: the gateway's gRPC ``host:port`` (needed when ``grpc_clients`` > 0).
        pipeline: call ``/v2/pipelines/<pipeline>/infer`` instead of the model (REST clients only).
        timeout_s: a request that takes longer counts as failed.
    """

    http_url: str
    model: str
    inputs: dict[str, object]
    rest_clients: int = 4
    grpc_clients: int = 0
    grpc_address: str | None = None
    pipeline: str | None = None
    timeout_s: float = 120.0
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.t0 = time.perf_counter()

    def start(self) -> "Traffic":
        self.t0 = time.perf_counter()
        targets = [self._rest] * self.rest_clients + [self._grpc] * self.grpc_clients
        self._threads = [threading.Thread(target=t, daemon=True) for t in targets]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Outcome]:
        """Stop sending, wait for the requests in flight; every outcome, in order of start."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        return sorted(self.outcomes, key=lambda o: o.start)

    def __enter__(self) -> "Traffic":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _record(self, start: float, ok: bool, protocol: str, error: str) -> None:
        with self._lock:
            self.outcomes.append(Outcome(start - self.t0, time.perf_counter() - start, ok, protocol, error))

    def _rest(self) -> None:
        session = requests.Session()
        path = f"/v2/pipelines/{self.pipeline}/infer" if self.pipeline else f"/v2/models/{self.model}/infer"
        body = rest_body(self.inputs)
        while not self._stop.is_set():
            start = time.perf_counter()
            try:
                reply = session.post(self.http_url + path, json=body, timeout=self.timeout_s)
                ok, error = reply.status_code == 200, "" if reply.status_code == 200 else f"{reply.status_code} {reply.text[:200]}"
            except requests.RequestException as exc:
                ok, error = False, repr(exc)
            self._record(start, ok, "pipeline" if self.pipeline else "rest", error)

    def _grpc(self) -> None:
        with grpc.insecure_channel(self.grpc_address) as channel:
            stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(channel)
            message = grpc_message(self.model, self.inputs)
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    stub.ModelInfer(message, timeout=self.timeout_s)
                    ok, error = True, ""
                except grpc.RpcError as exc:
                    ok, error = False, f"{exc.code().name} {exc.details()}"
                self._record(start, ok, "grpc", error)


def metric_samples(http_url: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of one metric family from the gateway's ``/metrics``: ``[(labels, value)]``."""
    text = requests.get(http_url + "/metrics", timeout=10).text
    return [(s.labels, s.value) for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name]


def replica_counts(http_url: str, model: str) -> dict[str, float]:
    """Calls of ``model`` each replica has answered so far (``seldon_model_infer_total`` by ``server_replica``)."""
    counts: dict[str, float] = {}
    for labels, value in metric_samples(http_url, "seldon_model_infer_total"):
        if labels.get("model") == model:
            counts[labels["server_replica"]] = counts.get(labels["server_replica"], 0.0) + value
    return counts


def replica_ready(http_url: str) -> dict[str, bool]:
    """Each replica's ``tunesmith_replica_ready`` gauge: is every model placed on it in rotation?"""
    return {labels["server_replica"]: value == 1 for labels, value in metric_samples(http_url, "tunesmith_replica_ready")}


def kill_replica(gateway_name: str, index: int) -> int:
    """SIGKILL replica ``index``'s MLServer, as a crash or the OOM killer would; returns its pid."""
    pid = replica_pid(gateway_name, index)
    os.kill(pid, signal.SIGKILL)
    return pid


def replica_restarts(http_url: str, index: int) -> float:
    """How often the gateway has restarted replica ``index`` (``tunesmith_replica_restarts_total``)."""
    return sum(v for labels, v in metric_samples(http_url, "tunesmith_replica_restarts_total")
               if labels.get("server_replica") == str(index))


def wait_until_ready(http_url: str, index: int, *, restarts: float | None = None, since: float | None = None,
                     timeout: float = 180.0) -> float:
    """Wait until replica ``index`` is in rotation (and, given ``restarts``, has been restarted more
    often than that: back after a kill); returns the seconds since ``since`` (a ``time.monotonic()``,
    default: the call)."""
    since = time.monotonic() if since is None else since
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        restarted = restarts is None or replica_restarts(http_url, index) > restarts
        if restarted and replica_ready(http_url).get(str(index)):
            return time.monotonic() - since
        time.sleep(0.1)
    raise TimeoutError(f"replica {index} was not back in rotation within {timeout:.0f} s")


# --- the bench tables ---------------------------------------------------------------------------

SERVER = """\
apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata:
  name: tunesmith
spec:
  serverConfig: mlserver
  replicas: 2
  capabilities: [tunesmith, mlserver, python]
"""
MODEL = """\
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata:
  name: {name}
spec:
  storageUri: gs://tunesmith-workshop/models/tune-generator
  requirements: [tunesmith]
  replicas: {replicas}
"""


def _manifests(folder: Path, replicas: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "server.yaml").write_text(SERVER)
    (folder / "generator.yaml").write_text(MODEL.format(name=GENERATOR, replicas=replicas))
    return folder


class _ReplicaGateway(RunningGateway):
    """The bench's gateway, ready once every replica has its models in rotation (it serves no pipeline)."""

    def __init__(self, manifests: Path, models: Path, replicas: int):
        super().__init__(manifests, models)
        self.replicas = replicas

    def ready(self) -> bool:
        ready = replica_ready(self.url)
        return len(ready) == self.replicas and all(ready.values())


def _load(url: str, clients: int, per_client: int) -> tuple[float, list[float], int]:
    """``clients`` threads, ``per_client`` requests each: (tunes/s, latencies, failed)."""
    inputs = {"prompt": PROMPT, "bars": BARS}
    latencies: list[float] = []
    failed = 0
    lock = threading.Lock()

    def client(k: int) -> None:
        nonlocal failed
        session = requests.Session()
        for i in range(per_client):
            body = rest_body({**inputs, "seed": 1000 * k + i})
            start = time.perf_counter()
            ok = session.post(f"{url}/v2/models/{GENERATOR}/infer", json=body, timeout=300).status_code == 200
            with lock:
                latencies.append(time.perf_counter() - start)
                failed += not ok

    for k in range(2):  # warm-up: both replicas have answered once
        requests.post(f"{url}/v2/models/{GENERATOR}/infer", json=rest_body({**inputs, "seed": k}), timeout=300)
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.perf_counter() - start), latencies, failed


def replica_tables(models: Path, *, per_client: int = 4, failover_seconds: float = 8.0) -> None:
    """Print the throughput table (1 vs 2 replicas at 1, 4, 16 clients) and the failover table."""
    rows = []
    failover = None
    with tempfile.TemporaryDirectory() as scratch:
        for replicas in (1, 2):
            manifests = _manifests(Path(scratch) / f"manifests-{replicas}", replicas)
            with _ReplicaGateway(manifests, models, replicas) as gateway:
                for clients in CLIENTS:
                    tput, latencies, failed = _load(gateway.url, clients, per_client)
                    rows.append((replicas, clients, tput, statistics.median(latencies), percentile(latencies, 95), failed))
                if replicas == 2:
                    failover = _failover(gateway, failover_seconds)
    print(f"\nReplicas of {GENERATOR} on one machine ({os.cpu_count()} cores), REST through the gateway, one "
          f"{BARS}-bar tune per request, {per_client} requests per client\n")
    print("| replicas | clients | tunes/s | p50 (s) | p95 (s) | failed |")
    print("|---:|---:|---:|---:|---:|---:|")
    for replicas, clients, tput, p50, p95, failed in rows:
        print(f"| {replicas} | {clients} | {tput:.2f} | {p50:.3f} | {p95:.3f} | {failed} |")
    by = {(r, c): t for r, c, t, *_ in rows}
    print(f"\n2 replicas vs 1 at 16 clients: {by[(2, 16)] / by[(1, 16)]:.2f}x the throughput. Both share the same "
          "cores: what a second process can add is the core that one MLServer worker leaves idle, and no more; "
          "what it always buys is surviving a dead process")
    if failover is not None:
        sent, failed, retries, back = failover
        print(f"\nFailover: replica 1 killed (SIGKILL) with 4 clients sending, over {failover_seconds:.0f} s of traffic\n")
        print("| requests | failed | retried on the other replica | death to back in rotation (s) |")
        print("|---:|---:|---:|---:|")
        print(f"| {sent} | {failed} | {retries:.0f} | {back:.1f} |")
        print(f"\nGoal: 0 failed requests across the kill -> {failed}: {'met' if failed == 0 else 'NOT met'}")


def _failover(gateway: RunningGateway, seconds: float) -> tuple[int, int, float, float]:
    """Kill replica 1 under load: (requests, failed, retries, seconds from the kill to its return)."""
    returned: list[float] = []
    with Traffic(gateway.url, GENERATOR, {"prompt": PROMPT, "seed": 1, "bars": BARS}, rest_clients=4) as traffic:
        time.sleep(seconds / 2)
        restarts, killed_at = replica_restarts(gateway.url, 1), time.monotonic()
        kill_replica(gateway.name, 1)
        watcher = threading.Thread(target=lambda: returned.append(
            wait_until_ready(gateway.url, 1, restarts=restarts, since=killed_at)))
        watcher.start()
        time.sleep(seconds / 2)
    outcomes = traffic.outcomes
    watcher.join()
    back = returned[0] if returned else float("nan")
    retries = sum(v for _, v in metric_samples(gateway.url, "tunesmith_replica_retries_total"))
    return len(outcomes), sum(not o.ok for o in outcomes), retries, back
