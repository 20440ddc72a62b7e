"""What a shadow costs the caller (``make bench``, stage 3): generator v2 mirrored behind v1 at 100 %.

Two Experiments on one gateway, both answered by ``tune-generator-v1``: ``plain`` (v1 alone) and
``shadow`` (v1, with every request mirrored to ``tune-generator-v2``). A client calls each and the
table compares its p50. The gateway sends the mirror once v1's answer is ready and never waits for
it, so the caller's own call is not slowed by it; but on one machine the mirror's work shares the
CPU (and, with ``parallel_workers: 1``, MLServer's one worker) with the next request. Two clients
show both sides:

* **a listener**: one request, then a pause (:data:`THINK_S`) before the next, as someone pressing
  Compose and listening: the mirror runs in the pause. Its requests alternate between ``plain``
  and ``shadow``, so a machine that slows down midway slows both alike. Goal: p50 with the mirror
  at most 1.10x without.
* **back to back**: the next request as soon as the answer arrives. The mirror then competes with
  it, and the table shows what 100 % shadow traffic costs a saturated machine (no goal: that cost
  is the capacity the shadow uses, which a cluster gives the mirror model's own replicas).

Timings are whole calls as a client sees them (``time.perf_counter`` around a keep-alive request).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import requests

from tunesmith.workshop.bench_gateway import RunningGateway
from tunesmith.workshop.bench_timing import percentile

THINK_S = 2.0
"""The listener's pause between two requests (a two-bar phrase of a reel lasts about as long)."""
MODELS = {"tune-generator-v1": "tune-generator", "tune-generator-v2": "tune-generator-v2"}
EXPERIMENTS = """\
apiVersion: mlops.seldon.io/v1alpha1
kind: Experiment
metadata:
  name: plain
spec:
  candidates:
    - name: tune-generator-v1
      weight: 100
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Experiment
metadata:
  name: shadow
spec:
  candidates:
    - name: tune-generator-v1
      weight: 100
  mirror:
    name: tune-generator-v2
    percent: 100
"""


def _manifests(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "models.yaml").write_text("---\n".join(
        f"apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n  name: {name}\n"
        f"spec:\n  storageUri: gs://tunesmith-workshop/models/{model_folder}\n"
        for name, model_folder in MODELS.items()))
    (folder / "experiments.yaml").write_text(EXPERIMENTS)
    return folder


class _ShadowGateway(RunningGateway):
    """The bench's gateway on its own manifests and request log, ready once both generators are."""

    def __init__(self, manifests: Path, models: Path, request_log: Path):
        super().__init__(manifests, models)
        self.command += ["--request-log", str(request_log)]

    def ready(self) -> bool:
        return all(requests.get(f"{self.url}/v2/models/{m}/ready", timeout=2).status_code == 200 for m in MODELS)


def _client(url: str, experiments: tuple[str, ...], n: int, bars: int, think_s: float) -> dict[str, list[float]]:
    """``n`` timed calls per experiment, taken in turn (``plain``, ``shadow``, ``plain``, ...)."""
    session = requests.Session()

    def call(experiment: str, seed: int) -> None:
        body = {"inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [1], "data": ["a reel in G"]},
                           {"name": "seed", "datatype": "INT64", "shape": [1], "data": [seed]},
                           {"name": "bars", "datatype": "INT32", "shape": [1], "data": [bars]}]}
        reply = session.post(f"{url}/v2/models/{experiment}/infer", json=body, timeout=300,
                             headers={"Seldon-Model": f"{experiment}.experiment"})
        reply.raise_for_status()

    for experiment in experiments:  # warm-up
        call(experiment, 10_000)
    time.sleep(think_s + 3)  # nothing of the warm-up still running
    times: dict[str, list[float]] = {experiment: [] for experiment in experiments}
    for seed in range(n):
        for experiment in experiments:
            start = time.perf_counter()
            call(experiment, seed)
            times[experiment].append(time.perf_counter() - start)
            time.sleep(think_s)
    time.sleep(3)  # the last mirror ends before the next client starts
    return times


def mirror_table(models: Path, n: int = 20, bars: int = 8) -> None:
    """Print the p50 and p95 of each client with and without the mirror, and the goal."""
    with tempfile.TemporaryDirectory() as scratch:
        manifests = _manifests(Path(scratch) / "manifests")
        with _ShadowGateway(manifests, models, Path(scratch) / "requests.sqlite") as gateway:
            listener = f"a listener ({THINK_S:g} s pause)"
            rows = {(listener, e): t for e, t in _client(gateway.url, ("plain", "shadow"), n, bars, THINK_S).items()}
            for experiment in ("plain", "shadow"):  # back to back: one block each, or one's mirrors would slow the other
                rows[("back to back", experiment)] = _client(gateway.url, (experiment,), n, bars, 0.0)[experiment]
            metrics = requests.get(f"{gateway.url}/metrics", timeout=10).text
    mirrored = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                   if line.startswith("seldon_experiment_infer_total") and 'role="mirror"' in line)
    dropped = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                  if line.startswith("seldon_experiment_mirror_dropped_total"))
    print(f"\nShadow: generator v2 mirrored behind v1 at 100 %, {n} requests of {bars} bars per row, client p50\n")
    print("| client | without mirror p50 (s) | with mirror p50 (s) | ratio | with mirror p95 (s) |")
    print("|---|---:|---:|---:|---:|")
    ratios = {}
    for client in dict.fromkeys(c for c, _ in rows):
        plain, shadow = statistics.median(rows[(client, "plain")]), statistics.median(rows[(client, "shadow")])
        ratios[client] = shadow / plain
        print(f"| {client} | {plain:.3f} | {shadow:.3f} | {ratios[client]:.2f}x | {percentile(rows[(client, 'shadow')], 95):.3f} |")
    print(f"\nMirror calls made: {mirrored:.0f}, dropped (more than the gateway runs at once): {dropped:.0f}")
    ratio = ratios[listener]
    print(f"Goal: a listener's p50 with the mirror at most 1.10x without -> {ratio:.2f}x: "
          f"{'met' if ratio <= 1.10 else 'NOT met'}; back to back, the mirror's work shares the machine "
          f"({ratios['back to back']:.2f}x)")
