"""Latency and throughput of tune generation: in-process vs REST vs gRPC (``make bench``).

Serving adds a network hop, (de)serialisation and a hand-off to an inference worker process. This
benchmark measures what that costs for a full tune, with the very model folder the server loads:

* latency p50/p95 of one full tune, in-process (the library called directly, with the same torch
  thread count the runtime sets), over REST and over gRPC, each on a freshly started real server;
* throughput (tunes per second) over REST with 1 and 8 concurrent clients.

Goal on 2 cores: REST p50 within 1.10x of in-process and at most 0.5 s. The numbers are printed as a
table; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import requests
from mlserver.codecs import StringCodec
from mlserver.grpc import converters, dataplane_pb2_grpc
from mlserver.types import InferenceRequest, RequestInput

from . import paths
from .server import Server, free_port

PROMPT = "a lively reel in D major"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def timed(call, n: int, warmup: int = 2) -> list[float]:
    for i in range(warmup):
        call(10_000 + i)
    out = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        out.append(time.perf_counter() - start)
    return out


def rest_call(url: str, bars: int):
    session = requests.Session()

    def call(seed: int) -> None:
        body = {
            "inputs": [
                {"name": "prompt", "datatype": "BYTES", "shape": [1], "data": [PROMPT]},
                {"name": "seed", "datatype": "INT64", "shape": [1], "data": [seed]},
                {"name": "bars", "datatype": "INT32", "shape": [1], "data": [bars]},
            ]
        }
        response = session.post(url + "/v2/models/tune-generator/infer", json=body, timeout=60)
        response.raise_for_status()

    return call


def grpc_call(address: str, bars: int):
    channel = grpc.insecure_channel(address)
    stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(channel)

    def call(seed: int) -> None:
        prompt = StringCodec.encode_input("prompt", [PROMPT], use_bytes=True)
        prompt.shape = [1]
        request = InferenceRequest(
            inputs=[
                prompt,
                RequestInput(name="seed", datatype="INT64", shape=[1], data=[seed]),
                RequestInput(name="bars", datatype="INT32", shape=[1], data=[bars]),
            ]
        )
        message = converters.ModelInferRequestConverter.from_types(request, model_name="tune-generator", model_version=None)
        stub.ModelInfer(message, timeout=60)

    return call


def in_process_call(model_dir: Path, bars: int):
    from .generator import TuneGenerator
    from .prompt import parse_prompt

    settings = json.loads((model_dir / "model-settings.json").read_text())
    extra = settings.get("parameters", {}).get("extra", {})
    uri = settings.get("parameters", {}).get("uri", "./weights")
    generator = TuneGenerator.from_pretrained(str((model_dir / uri).resolve()), threads=extra.get("torch_threads"))
    header = parse_prompt(PROMPT)

    def call(seed: int) -> None:
        generator.generate([header], seeds=[seed], bars=bars)

    return call


def throughput(call, clients: int, requests_per_client: int) -> float:
    def worker(k: int) -> None:
        for i in range(requests_per_client):
            call(k * 1000 + i)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    return clients * requests_per_client / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30, help="timed tunes per latency row")
    parser.add_argument("--bars", type=int, default=16, help="tune length in bars")
    parser.add_argument("--models", type=Path, help="models folder (default: the finished platform, built fresh)")
    args = parser.parse_args(argv)

    models = args.models
    if models is None:
        from .stages import materialize

        models = paths.BUILD / "bench" / "models"
        materialize("solution", models, backup=False)
    model_dir = models / "tune-generator"

    rows = []
    lat = timed(in_process_call(model_dir, args.bars), args.n)
    rows.append(("in-process", lat))
    server = Server(models_dir=models, name="bench", http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())
    with server:
        rest = rest_call(server.http_url, args.bars)
        rows.append(("REST", timed(rest, args.n)))
        rows.append(("gRPC", timed(grpc_call(server.grpc_address, args.bars), args.n)))
        per_client = max(2, args.n // 4)
        tput = [(c, throughput(rest_call(server.http_url, args.bars), c, per_client)) for c in (1, 8)]

    base = statistics.median(rows[0][1])
    print(f"\nTune generation, {args.bars} bars, {args.n} tunes per row (prompt: {PROMPT!r})\n")
    print(f"| path       | p50 (s) | p95 (s) | p50 vs in-process |")
    print(f"|------------|--------:|--------:|------------------:|")
    for name, values in rows:
        p50 = statistics.median(values)
        print(f"| {name:<10} | {p50:7.3f} | {percentile(values, 95):7.3f} | {p50 / base:16.2f}x |")
    print(f"\n| REST clients | tunes/s |")
    print(f"|-------------:|--------:|")
    for clients, value in tput:
        print(f"| {clients:>12} | {value:7.2f} |")
    rest_p50 = statistics.median(rows[1][1])
    print(
        f"\nGoal: REST p50 <= 1.10x in-process and <= 0.5 s -> "
        f"{rest_p50 / base:.2f}x, {rest_p50:.3f} s: {'met' if rest_p50 <= min(1.10 * base, 0.5) else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
