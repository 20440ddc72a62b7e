"""What the gateway costs, and what a pipeline saves (``make bench``, stage 3).

Two tables, on the finished platform's own manifests and model folders:

* **per hop**: the same call made to MLServer directly and through the gateway, which adds one
  HTTP hop (parse the ``Seldon-Model`` header, forward the bytes, copy the answer back): a model's
  metadata (almost no work, so the hop is most of it) and a small inference (the prompt encoder).
  Goal: at most 2 ms added at p50.
* **prompt to audio**: the ``studio`` pipeline (the brief, both generator versions, the critic, the
  synthesizer) called once, against a client that calls the same models one by one through the
  gateway and passes the tensors along itself. The pipeline runs the two generators at the same time
  and moves tensors inside the gateway, so the goal is that it is not slower than the client's sum.

Timings are whole calls as a client sees them (``time.perf_counter`` around a keep-alive HTTP request).
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

from tunesmith import paths
from tunesmith.serving.launcher import free_port
from tunesmith.workshop.bench_timing import percentile, timed_in_turns

STUDIO_PROMPT = "a lively jig in D major"


class RunningGateway:
    """``tunesmith gateway`` in a child process on free ports, for as long as the ``with`` block."""

    def __init__(self, manifests: Path, models: Path):
        self.name = f"bench-gateway-{free_port()}"
        self.http_port = free_port()
        self.command = [sys.executable, "-m", "tunesmith", "gateway", "--manifests", str(manifests),
                        "--models", str(models), "--name", self.name, "--http-port", str(self.http_port),
                        "--grpc-port", str(free_port()), "--metrics-port", str(free_port())]
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "RunningGateway":
        self.process = subprocess.Popen(self.command, cwd=paths.REPO, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited with {self.process.returncode}: {' '.join(self.command)}")
            try:
                if self.ready():
                    return self
            except (requests.RequestException, ValueError, AttributeError, TypeError):
                pass
            time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"the gateway was not ready within 300 s: {' '.join(self.command)}")

    def ready(self) -> bool:
        """Whether the bench can start: here, every pipeline ready (a bench of other things overrides it)."""
        pipelines = requests.get(self.url + "/v2/pipelines", timeout=2).json()
        names = [p["name"] if isinstance(p, dict) else p for p in pipelines.get("pipelines", pipelines)]
        return bool(names) and all(requests.get(f"{self.url}/v2/pipelines/{n}/ready", timeout=2).status_code == 200
                                   for n in names)

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)

    def mlserver_url(self) -> str:
        """The internal MLServer's address, from the settings the gateway wrote for it."""
        for settings in sorted(paths.RUN.glob(f"{self.name}*/settings.json")):
            data = json.loads(settings.read_text())
            if "http_port" in data:
                return f"http://{data.get('host', '127.0.0.1')}:{data['http_port']}"
        raise RuntimeError(f"no MLServer settings under {paths.RUN}/{self.name}*")


def _bytes_input(name: str, values: list[str]) -> dict:
    return {"name": name, "datatype": "BYTES", "shape": [len(values)], "data": values}


def _outputs(response: requests.Response) -> dict[str, dict]:
    response.raise_for_status()
    return {out["name"]: out for out in response.json()["outputs"]}


def _seed_and_bars(seed: int, bars: int = 16) -> list[dict]:
    return [{"name": "seed", "datatype": "INT64", "shape": [1], "data": [seed]},
            {"name": "bars", "datatype": "INT32", "shape": [1], "data": [bars]}]


def hop_table(gateway: RunningGateway, n: int) -> list[tuple[str, float, float]]:
    direct, through = requests.Session(), requests.Session()
    mlserver = gateway.mlserver_url()
    small = {"inputs": [_bytes_input("prompt", ["a slow air in G"])]}
    rows = []
    for label, method, path, body in (
        ("metadata (synthesizer)", "get", "/v2/models/synthesizer", None),
        ("inference (prompt-encoder)", "post", "/v2/models/prompt-encoder/infer", small),
    ):
        def call(session, base):
            return lambda _seed: getattr(session, method)(base + path, json=body, timeout=60).raise_for_status()

        times = timed_in_turns({"direct": call(direct, mlserver), "through": call(through, gateway.url)}, n, warmup=3)
        rows.append((label, statistics.median(times["direct"]), statistics.median(times["through"])))
    return rows


def studio_table(gateway: RunningGateway, n: int) -> dict[str, list[float]]:
    session = requests.Session()
    url = gateway.url

    def pipeline(seed: int):
        body = {"inputs": [_bytes_input("prompt", [STUDIO_PROMPT]), *_seed_and_bars(seed)]}
        outs = _outputs(session.post(f"{url}/v2/pipelines/studio/infer", json=body, timeout=300))
        assert "audio" in outs and "abc" in outs

    def model(name: str, inputs: list[dict]) -> list[dict]:
        response = session.post(f"{url}/v2/models/{name}/infer", json={"inputs": inputs},
                                headers={"Seldon-Model": name}, timeout=300)
        response.raise_for_status()
        return response.json()["outputs"]

    def one_by_one(seed: int):
        brief = {o["name"]: o for o in model("brief", [_bytes_input("prompt", [STUDIO_PROMPT])])}
        header = brief["header"]
        candidates = []
        seed_and_bars = _seed_and_bars(seed)
        for version in ("tune-generator-v1", "tune-generator-v2"):
            abc = {o["name"]: o for o in model(version, [_bytes_input("header", header["data"]), *seed_and_bars])}["abc"]
            candidates.append(_bytes_input("candidates", abc["data"]))
        critic = {o["name"]: o for o in model("tune-critic", [_bytes_input("header", header["data"]), *candidates])}
        synth_inputs = [_bytes_input("abc", critic["abc"]["data"])]
        if "tempo" in critic:
            synth_inputs.append({"name": "tempo", "datatype": "INT32", "shape": [1], "data": critic["tempo"]["data"]})
        model("synthesizer", synth_inputs)

    # The same seeds for both paths, taken in turn: the same tunes are written, judged and played either way
    return timed_in_turns({"studio pipeline": pipeline, "client, model by model": one_by_one}, n)


def gateway_tables(models: Path, manifests: Path, n: int = 200, n_pipeline: int = 10) -> None:
    """Print both tables; skip with a note when the platform has no manifests (before stage 3)."""
    if not any(Path(manifests).glob("**/*.yaml")):
        print(f"\nGateway: no manifests in {manifests}, skipped")
        return
    with RunningGateway(manifests, models) as gateway:
        hops = hop_table(gateway, n)
        studio = studio_table(gateway, n_pipeline)
    print(f"\nThe gateway's hop: the same call to MLServer directly and through the gateway, {n} calls each, p50\n")
    print("| call | direct (ms) | through the gateway (ms) | added (ms) |")
    print("|---|---:|---:|---:|")
    for label, a, b in hops:
        print(f"| {label} | {a * 1e3:.2f} | {b * 1e3:.2f} | {(b - a) * 1e3:+.2f} |")
    worst = max(b - a for _, a, b in hops) * 1e3
    print(f"\nGoal: at most 2 ms added at p50 -> {worst:.2f} ms: {'met' if worst <= 2 else 'NOT met'}")
    print(f"\nPrompt to audio, {n_pipeline} calls each ({STUDIO_PROMPT!r}; 3 candidates per generator version)\n")
    print("| path | p50 (s) | p95 (s) |")
    print("|---|---:|---:|")
    for label, values in studio.items():
        print(f"| {label} | {statistics.median(values):.3f} | {percentile(values, 95):.3f} |")
    ratio = statistics.median(studio["studio pipeline"]) / statistics.median(studio["client, model by model"])
    print(f"\nGoal: the pipeline not slower than the client's sum -> {ratio:.2f}x: {'met' if ratio <= 1.0 else 'NOT met'}")
