"""How long ``make up`` takes to be usable: from process start to the UI answering and every model READY (``make bench``).

``tunesmith up`` is started on a built platform (the models folder and the Seldon manifests beside
it, as ``make platform`` builds them) on free ports, exactly as ``make up`` starts it, and polled
every 0.1 s from the moment the process is created:

* **UI answering**: the Gradio app's page returns 200;
* **each model READY**: the gateway's model list (``GET /v2/models``, every Seldon Model with its
  state in MLServer) says so, or, for a platform without manifests, MLServer's repository index.

Where the time goes: on Linux, the CPU seconds each process of the run (launcher, gateway, MLServer,
its inference worker, UI) has used by the time everything is ready, read from ``/proc``; their sum
over the two cores is the floor for the wall time. The run is then stopped with SIGTERM, as Ctrl-C
would. Goal on 2 cores: UI answering and every model
READY within 15 s. The numbers are printed; nothing here asserts on time.

    python -m tunesmith.workshop.bench_coldstart --models build/platform/models
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tunesmith import paths
from tunesmith.serving.launcher import free_port
from tunesmith.workshop.up import manifests_folder

GOAL_S = 15.0
TIMEOUT_S = 180.0
POLL_S = 0.1


def _model_states(http_url: str, gateway: bool, session: requests.Session) -> dict[str, str]:
    """Model name -> state (``READY``, ``LOADING``...), or ``{}`` while nothing answers."""
    try:
        if gateway:
            reply = session.get(http_url + "/v2/models", timeout=2)
            return {m["name"]: m["state"] for m in reply.json()["models"]} if reply.ok else {}
        reply = session.post(http_url + "/v2/repository/index", json={}, timeout=2)
        return {m["name"]: str(m.get("state", "")).removeprefix("State.") for m in reply.json()} if reply.ok else {}
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return {}


ROLES = (  # a piece of the command line -> what the process is, first match wins
    ("spawn_main", "MLServer inference worker"),
    ("mlserver_main", "MLServer"),
    ("tunesmith gateway", "gateway"),
    ("tunesmith up", "launcher (tunesmith up)"),
    ("-m app", "UI"),
)


def process_cpu(root: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by ``root`` and its descendants, summed by role.

    Linux only (``/proc``); elsewhere ``{}``.
    """
    proc = Path("/proc")
    if not (proc / str(root)).exists():
        return {}
    tick = os.sysconf("SC_CLK_TCK")
    parents, cpu, commands = {}, {}, {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # the name in parentheses may hold spaces
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
        commands[pid] = command
    totals: dict[str, float] = {}
    for pid in cpu:
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor != root:
            continue
        role = next((name for piece, name in ROLES if piece in commands[pid]), "other")
        totals[role] = totals.get(role, 0.0) + cpu[pid]
    return totals


def _answers(url: str, session: requests.Session) -> bool:
    try:
        return session.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def cold_start(models: Path, timeout: float = TIMEOUT_S, log: Path | None = None) -> dict:
    """Start ``tunesmith up`` on ``models``, time it until the UI answers and every model is READY, stop it.

    Args:
        models: a built models folder (Seldon manifests beside it are served through the gateway,
            as ``make up`` does).
        timeout: give up after this many seconds.
        log: where the run's output goes (default: ``.run/bench-coldstart.log``).

    Returns:
        ``{"ui_s", "models_s", "ready_s": {model: seconds}, "cpu_s": {role: CPU seconds}, "timed_out":
        bool}``; a time is ``None`` when it was not reached.
    """
    host = "127.0.0.1"
    http_port, grpc_port, metrics_port, ui_port = (free_port() for _ in range(4))
    name = f"bench-coldstart-{http_port}"
    command = [sys.executable, "-m", "tunesmith", "up", "--models", str(models), "--name", name, "--host", host,
               "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
               "--ui-port", str(ui_port)]
    gateway = manifests_folder(models) is not None
    log = log or paths.RUN / "bench-coldstart.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    http_url, ui_url = f"http://{host}:{http_port}", f"http://{host}:{ui_port}/"
    result: dict = {"ui_s": None, "models_s": None, "ready_s": {}, "timed_out": False, "cpu_s": {}}
    session = requests.Session()
    with open(log, "wb") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=paths.REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while True:
                elapsed = time.perf_counter() - start
                if process.poll() is not None or elapsed > timeout:
                    result["timed_out"] = process.poll() is None
                    break
                if result["ui_s"] is None and _answers(ui_url, session):
                    result["ui_s"] = time.perf_counter() - start
                if result["models_s"] is None:
                    states = _model_states(http_url, gateway, session)
                    now = time.perf_counter() - start
                    for model, state in states.items():
                        if state == "READY":
                            result["ready_s"].setdefault(model, now)
                    if states and all(s == "READY" for s in states.values()):
                        result["models_s"] = now
                if result["ui_s"] is not None and result["models_s"] is not None:
                    result["cpu_s"] = process_cpu(process.pid)
                    break
                time.sleep(POLL_S)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
    return result


def format_result(result: dict) -> str:
    """The cold-start figures: the two milestones, then when each model became READY."""
    def seconds(value):
        return "not reached" if value is None else f"{value:.1f} s"

    usable = None if None in (result["ui_s"], result["models_s"]) else max(result["ui_s"], result["models_s"])
    lines = ["| milestone | after |", "|---|---:|",
             f"| UI answering | {seconds(result['ui_s'])} |",
             f"| every model READY | {seconds(result['models_s'])} |"]
    for model, at in sorted(result["ready_s"].items(), key=lambda item: item[1]):
        lines.append(f"| - {model} READY | {at:.1f} s |")
    if result["cpu_s"]:
        total = sum(result["cpu_s"].values())
        lines.append(f"\nCPU seconds used by then: {total:.1f} in all (at best {total / (os.cpu_count() or 1):.1f} s of wall "
                     f"time on {os.cpu_count()} cores)")
        lines += ["", "| process | CPU s |", "|---|---:|"]
        lines += [f"| {role} | {seconds:.1f} |" for role, seconds in sorted(result["cpu_s"].items(), key=lambda i: -i[1])]
    verdict = "not reached" if usable is None else f"{usable:.1f} s: {'met' if usable <= GOAL_S else 'NOT met'}"
    lines.append(f"\nGoal: UI answering and every model READY <= {GOAL_S:.0f} s after `tunesmith up` starts -> {verdict}")
    return "\n".join(lines)


def coldstart_table(models: Path, runs: int = 1) -> list[dict]:
    """Measure ``runs`` cold starts of ``tunesmith up`` on ``models`` and print each (what ``make bench`` shows)."""
    results = []
    for run in range(runs):
        result = cold_start(models)
        print(f"\nCold start of `tunesmith up` on {models} (run {run + 1} of {runs}; the first pays for a cold "
              "file cache)\n")
        print(format_result(result))
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=paths.BUILD / "platform" / "models",
                        help="a built models folder (make platform)")
    parser.add_argument("--runs", type=int, default=1, help="cold starts to time, one after the other")
    args = parser.parse_args(argv)
    if not args.models.is_dir():
        parser.error(f"no models folder at {args.models}: build it with make platform")
    coldstart_table(args.models, args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
