"""Latency and throughput of the served models: in-process vs REST vs gRPC, batching, workers (``make bench``).

Serving adds a network hop, (de)serialisation and a hand-off to an inference worker process. This
benchmark measures what that costs for a full tune, with the very model folder the server loads:

* latency p50/p95 of one full tune, in-process (the library called directly, with the same torch
  thread count the runtime sets), over REST and over gRPC on a freshly started server of the
  generator alone with batching off (the cost of serving itself), and over REST on the whole
  platform as served (batching on, so a lone request also waits for company);
* throughput (tunes per second) over REST with 1, 4 and 16 concurrent clients, each sending one
  prompt per request, with adaptive batching off (``max_batch_size`` 1) and on (the model folder's
  own ``max_batch_size``/``max_batch_time``), each on a server of its own;
* the same with ``parallel_workers`` 1 and 2 (one torch thread per worker, batching on);
* the style classifier's throughput (recordings per second, one 10 s recording per request) with
  batching off and on;
* from stage 3, the gateway: what its hop adds to a call, and the ``studio`` pipeline against a
  client calling the same models one by one (:mod:`tunesmith.workshop.bench_gateway`);
* the generator with 1 and 2 replicas behind the gateway, and a replica killed under load
  (:mod:`tunesmith.workshop.bench_replicas`);
* a shadow: a client's p50 with and without generator v2 mirrored behind v1 at 100 %
  (:mod:`tunesmith.workshop.bench_experiments`);
* the generator's decode loop: the fast loop against the transformers loop per tune at batch 1
  and 16, and the share of decode time in the model's matrix products
  (:mod:`tunesmith.workshop.bench_decode`);
* cold start: ``tunesmith up`` on the platform timed to the UI answering and every model READY
  (:mod:`tunesmith.workshop.bench_coldstart`).

Goals on 2 cores: REST p50 within 1.10x of in-process and at most 0.5 s; batching on at least 2.5x
the throughput of batching off at 16 clients; the fast decode loop at least 3x faster per tune
than the transformers loop at batch 1, with at least half its time in matrix products; the
platform usable (UI answering, every model READY) within 15 s of ``tunesmith up``. The numbers
are printed as tables; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tunesmith import paths
from tunesmith.serving.client import GrpcMusicClient, MusicClient
from tunesmith.serving.launcher import Server, free_port
from tunesmith.workshop.bench_timing import percentile, timed, timed_in_turns

PROMPT = "a lively reel in D major"


def _generator_call(client, bars: int, version: str | None = None):
    """A function ``call(seed) -> tune`` asking ``client`` (REST or gRPC) for one tune."""

    def call(seed: int) -> str:
        inputs = {
            "prompt": [PROMPT],
            "seed": np.asarray([seed], dtype=np.int64),
            "bars": np.asarray([bars], dtype=np.int32),
        }
        tune = client.infer("tune-generator", inputs, version)["abc"][0]
        return tune if isinstance(tune, str) else bytes(tune).decode()

    return call


def rest_call(url: str, bars: int, version: str | None = None):
    """One tune per call over REST, through the same client the UI uses."""
    return _generator_call(MusicClient(url, timeout=300), bars, version)


def grpc_call(address: str, bars: int, version: str | None = None):
    """One tune per call over gRPC (MLServer's generated stubs)."""
    return _generator_call(GrpcMusicClient(address, timeout=300), bars, version)


def in_process_call(model_dir: Path, bars: int):
    from tunesmith.generator.model import TuneGenerator
    from tunesmith.generator.prompt import parse_prompt

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


def model_variant(models: Path, into: Path, *, batching: bool, folder: str = "tune-generator") -> Path:
    """Copy one model folder of ``models`` into ``into``, with adaptive batching on or off.

    Each measured configuration gets a server of its own on a models folder holding only that
    model, so the other models neither load nor compete for the two cores.

    Args:
        models: a materialised models folder.
        into: the new models folder (replaced).
        batching: keep the folder's ``max_batch_size``/``max_batch_time``, or set
            ``max_batch_size`` to 1 (MLServer's "no batching").
        folder: the model folder to copy (``tune-generator`` is the generator's v1).

    Returns:
        ``into``.
    """
    into = Path(into)
    if into.exists():
        shutil.rmtree(into)
    shutil.copytree(models / folder, into / folder, ignore=shutil.ignore_patterns("__pycache__"))
    settings_path = into / folder / "model-settings.json"
    settings = json.loads(settings_path.read_text())
    if not batching:
        settings["max_batch_size"] = 1
        settings.pop("max_batch_time", None)
    settings_path.write_text(json.dumps(settings, indent=2) + "\n")
    return into


@contextmanager
def model_server(models: Path, *, batching: bool = True, overrides: dict | None = None, folder: str = "tune-generator"):
    """A server of its own, on free ports, serving only one model folder of ``models``.

    Args:
        models: a materialised models folder.
        batching: see :func:`model_variant`.
        overrides: server settings, e.g. ``{"parallel_workers": 2}``.
        folder: the model folder to serve.

    Yields:
        The running :class:`~tunesmith.serving.launcher.Server`; it stops and its folder is removed after.
    """
    with tempfile.TemporaryDirectory(prefix="tunesmith-bench-") as scratch:
        only = model_variant(models, Path(scratch) / "models", batching=batching, folder=folder)
        server = Server(models_dir=only, name=f"bench-{free_port()}", http_port=free_port(), grpc_port=free_port(),
                        metrics_port=free_port(), overrides=overrides)
        with server:
            yield server


def classifier_call(url: str, seconds: float = 10.0):
    """A function ``call(i) -> label`` asking ``style-classifier`` about one recording over REST.

    The recording is a reel rendered by :mod:`tunesmith.audio.synth` at dance tempo, ``seconds`` long
    (one crop of the model's features), as a WAV file.
    """
    from tunesmith.audio.io import encode_wav
    from tunesmith.audio.synth import render

    reel = "X:1\nM:2/2\nL:1/8\nR:reel\nK:Edor\n|:E2BE dEBE|E2BE AFDF|E2BE dEBE|BABc dAFD:|\n"
    samples = render(reel, tempo=220, instrument="flute", sample_rate=22050)[: int(seconds * 22050)]
    wav = encode_wav(samples, 22050)
    client = MusicClient(url, timeout=300)

    def call(_: int) -> str:
        probabilities = client.classify(wav)
        return next(iter(probabilities))

    return call


def throughput_table(models: Path, configs: dict[str, dict], make_call, clients=(1, 4, 16),
                     requests_per_client: int = 4, folder: str = "tune-generator") -> dict[str, dict[int, float]]:
    """Requests per second over REST for each configuration and number of concurrent clients.

    Args:
        models: a materialised models folder.
        configs: name -> ``{"batching": bool, "overrides": {...server settings...}}``.
        make_call: server URL -> a ``call(i)`` that sends one request (:func:`rest_call`,
            :func:`classifier_call`).
        clients: concurrent client counts.
        requests_per_client: requests each client sends, one after the other.
        folder: the model folder served.

    Returns:
        ``{config name: {clients: requests per second}}``.
    """
    results: dict[str, dict[int, float]] = {}
    for name, config in configs.items():
        with model_server(models, batching=config.get("batching", True), overrides=config.get("overrides"),
                          folder=folder) as server:
            call = make_call(server.http_url)
            call(0)  # warm-up
            results[name] = {c: throughput(call, c, requests_per_client) for c in clients}
    return results


def format_throughput(results: dict[str, dict[int, float]]) -> str:
    """Markdown table: one row per client count, one column per configuration."""
    names = list(results)
    clients = sorted({c for row in results.values() for c in row})
    lines = ["| clients | " + " | ".join(names) + " |", "|--------:|" + "".join("-" * (len(n) + 1) + ":|" for n in names)]
    for c in clients:
        lines.append(f"| {c:>7} | " + " | ".join(f"{results[n][c]:{len(n)}.2f}" for n in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30, help="timed tunes per latency row")
    parser.add_argument("--bars", type=int, default=16, help="tune length in bars")
    parser.add_argument("--models", type=Path, help="models folder (default: the finished platform, built fresh)")
    parser.add_argument("--per-client", type=int, default=4, help="requests per client in the throughput tables")
    parser.add_argument("--skip-latency", action="store_true", help="only the batching and workers tables")
    parser.add_argument("--skip-gateway", action="store_true", help="leave out the gateway's hop, pipeline, replica and mirror tables")
    parser.add_argument("--skip-decode", action="store_true", help="leave out the fast-vs-transformers decode table")
    parser.add_argument("--skip-coldstart", action="store_true", help="leave out the cold start of tunesmith up")
    args = parser.parse_args(argv)

    models = args.models
    if models is None:
        from tunesmith.workshop.stages import materialize

        models = paths.BUILD / "bench" / "models"
        materialize("solution", models, backup=False)
    model_dir = models / "tune-generator"

    if not args.skip_decode:
        from tunesmith.workshop.bench_decode import decode_table

        decode_table(model_dir, bars=args.bars)

    if not args.skip_coldstart:
        from tunesmith.workshop.bench_coldstart import coldstart_table

        coldstart_table(models)

    if not args.skip_gateway:
        from tunesmith.workshop.bench_gateway import gateway_tables

        gateway_tables(models, models.parent / "manifests")
        from tunesmith.workshop.bench_replicas import replica_tables

        replica_tables(models)
        from tunesmith.workshop.bench_experiments import mirror_table

        mirror_table(models)

    if not args.skip_latency:
        latency_tables(models, model_dir, args)

    print(f"\nThroughput, tunes/s over REST, one {args.bars}-bar tune per request, {args.per_client} requests per client,"
          " a server per column (tune-generator v1 only)\n")
    on_off = {"batching off": {"batching": False}, "batching on": {"batching": True}}
    tune_call = functools.partial(rest_call, bars=args.bars)
    batching = throughput_table(models, on_off, tune_call, requests_per_client=args.per_client)
    print(format_throughput(batching))
    gain = batching["batching on"][16] / batching["batching off"][16]
    print(f"\nGoal: batching on >= 2.5x batching off at 16 clients -> {gain:.2f}x: {'met' if gain >= 2.5 else 'NOT met'}")

    print("\nParallel workers (batching on, 1 torch thread per worker)\n")
    workers = throughput_table(
        models,
        {"1 worker": {"overrides": {"parallel_workers": 1}}, "2 workers": {"overrides": {"parallel_workers": 2}}},
        tune_call, clients=(1, 16), requests_per_client=args.per_client,
    )
    print(format_throughput(workers))

    print(f"\nStyle classifier, recordings/s over REST, one 10 s recording per request, {args.per_client} requests"
          " per client, a server per column\n")
    classifier = throughput_table(models, on_off, classifier_call, requests_per_client=args.per_client,
                                  folder="style-classifier")
    print(format_throughput(classifier))
    gain = classifier["batching on"][16] / classifier["batching off"][16]
    print(f"\nBatching on vs off at 16 clients: {gain:.2f}x (the per-file feature extraction, not the network, is"
          " most of the cost)")
    return 0


def latency_tables(models: Path, model_dir: Path, args) -> None:
    """The in-process / REST / gRPC latency table and the 1- and 8-client REST throughput.

    REST and gRPC are timed on a server of the generator alone with adaptive batching off, so the
    table shows what serving itself costs; the platform as served (every model, batching on) is
    timed too: there a lone request also waits up to ``max_batch_time`` for company.
    """
    in_process = in_process_call(model_dir, args.bars)
    with model_server(models, batching=False) as alone:
        calls = {"in-process": in_process, "REST": rest_call(alone.http_url, args.bars),
                  "gRPC": grpc_call(alone.grpc_address, args.bars)}
        rows = list(timed_in_turns(calls, args.n).items())
    server = Server(models_dir=models, name=f"bench-{free_port()}", http_port=free_port(), grpc_port=free_port(),
                    metrics_port=free_port())
    with server:
        rest = rest_call(server.http_url, args.bars)
        rows.append(("REST, the platform (batching on)", timed(rest, args.n)))
        per_client = max(2, args.n // 4)
        tput = [(c, throughput(rest, c, per_client)) for c in (1, 8)]

    base = statistics.median(rows[0][1])
    width = max(len(name) for name, _ in rows)
    print(f"\nTune generation, {args.bars} bars, {args.n} tunes per row (prompt: {PROMPT!r}); REST and gRPC on a "
          "server of the generator alone, batching off; the first three rows take turns, call by call\n")
    print(f"| {'path':<{width}} | p50 (s) | p95 (s) | p50 vs in-process |")
    print(f"|{'-' * (width + 2)}|--------:|--------:|------------------:|")
    for name, values in rows:
        p50 = statistics.median(values)
        print(f"| {name:<{width}} | {p50:7.3f} | {percentile(values, 95):7.3f} | {p50 / base:16.2f}x |")
    print("\n| REST clients, the platform | tunes/s |")
    print("|---------------------------:|--------:|")
    for clients, value in tput:
        print(f"| {clients:>26} | {value:7.2f} |")
    rest_p50 = statistics.median(rows[1][1])
    print(
        f"\nGoal: REST p50 <= 1.10x in-process and <= 0.5 s -> "
        f"{rest_p50 / base:.2f}x, {rest_p50:.3f} s: {'met' if rest_p50 <= min(1.10 * base, 0.5) else 'NOT met'}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
