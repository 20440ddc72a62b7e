"""`make up` from the README: the finished platform served and driven through the UI, then stopped.

With stage 3's manifests (``build/platform/manifests``, which ``make up`` builds with the platform),
the gateway serves every Seldon Model and Pipeline on the public ports, MLServer inside, and the UI
talks Seldon to it. Without manifests, ``tunesmith up`` serves the models folder with MLServer alone.
Each test runs the real command on free ports, drives the UI with gradio_client, then stops it as a
terminal would (SIGINT to the process group for Ctrl-C, SIGTERM for a closed session) and checks
that nothing outlived it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests
import soundfile

from tunesmith import paths
from tunesmith.serving.launcher import free_port, port_in_use

SELDON_MODELS = {
    "synthesizer", "prompt-encoder", "tune-generator-v1", "tune-generator-v2", "audio-fx", "transcriber",
    "style-classifier", "tune-critic", "brief", "tune-critic-strict", "drift-detector",
}
"""Every Seldon Model of stage 3's manifests, all behind the one gateway `make up` starts."""
PIPELINES = {"studio", "studio-retry", "hum", "prompt-monitor"}
STAGE_2_MODELS = {
    ("synthesizer", "v1"), ("tune-generator", "v1"), ("tune-generator", "v2"), ("prompt-encoder", "v1"),
    ("audio-fx", "v1"), ("transcriber", "v1"), ("style-classifier", "v1"),
}
"""(name, version) of every stage-1 and stage-2 model, all in the one MLServer `tunesmith up` starts
without manifests."""
START_S = 300

pytestmark = [pytest.mark.server, pytest.mark.ui, pytest.mark.slow]


class Output:
    """A child's merged stdout, read in the background so the child never blocks on a full pipe."""

    def __init__(self, process: subprocess.Popen):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def index(self, pattern: str) -> int | None:
        """The number of the first line matching ``pattern``, or ``None``."""
        return next((i for i, line in enumerate(self.lines) if re.search(pattern, line)), None)


def wait_for(url: str, process: subprocess.Popen, output: Output, timeout: float = START_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the launcher exited with {process.returncode}:\n{output.text[-3000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s:\n{output.text[-3000:]}")


def wait_until(check, what: str, process: subprocess.Popen, output: Output, timeout: float = START_S):
    """Poll ``check()`` until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the launcher exited with {process.returncode}:\n{output.text[-3000:]}")
        try:
            value = check()
        except requests.RequestException:
            value = None
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"{what} within {timeout} s:\n{output.text[-3000:]}")


def stop(process: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the launcher's process group, as a terminal does, and wait for it to end."""
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise


def assert_all_gone(ports: dict[str, str], names: list[str]) -> None:
    deadline = time.monotonic() + 30
    busy = lambda: [key for key, port in ports.items() if port_in_use(int(port))]  # noqa: E731
    while busy() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not busy(), f"still listening after the launcher ended: {busy()}"
    for name in names:
        assert not (paths.RUN / name / "pid").exists(), f".run/{name}/pid outlived the launcher"


EXPERIMENTS = {"generators-ab", "generators-canary", "generators-shadow", "studios-ab"}
"""The Experiments notebook 3.4 writes."""


def composed(client, tmp_path, *args, **kwargs):
    message, abc, notation, audio, *_ = client.predict(*args, api_name="/compose", **kwargs)
    assert "<svg" in notation, message
    assert audio, message
    samples, rate = soundfile.read(audio)
    assert len(samples) > rate, message
    return message, abc


def test_make_up_serves_the_platform_through_the_gateway(tmp_path):
    from gradio_client import Client

    ports = {name: str(free_port()) for name in ("HTTP_PORT", "GRPC_PORT", "METRICS_PORT", "UI_PORT")}
    process = subprocess.Popen(
        ["make", "--no-print-directory", "-o", ".venv/.installed", f"PY={sys.executable}", "up"],
        cwd=paths.REPO,
        env={**os.environ, **ports, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = Output(process)
    gateway = f"http://127.0.0.1:{ports['HTTP_PORT']}"
    ui_url = f"http://127.0.0.1:{ports['UI_PORT']}/"
    try:
        wait_for(ui_url, process, output)
        if output.index(r"^Seldon manifests in ") is None:
            pytest.fail(f"make up found no Seldon manifests in build/platform/manifests:\n{output.text[-3000:]}")

        def pipelines_ready():
            listed = requests.get(gateway + "/v2/pipelines", timeout=10).json()["pipelines"]
            return listed if all(p["ready"] for p in listed) else None

        pipelines = wait_until(pipelines_ready, "the pipelines were not all ready", process, output)
        assert {p["name"] for p in pipelines} == PIPELINES, pipelines
        for name in PIPELINES:
            assert requests.get(f"{gateway}/v2/pipelines/{name}/ready", timeout=10).status_code == 200
        models = requests.get(gateway + "/v2/models", timeout=10).json()["models"]
        assert {m["name"] for m in models} == SELDON_MODELS, models
        assert all(m["ready"] for m in models), models
        assert all(requests.get(f"{gateway}/v2/models/{name}/ready", timeout=10).status_code == 200
                   for name in SELDON_MODELS)
        assert requests.post(gateway + "/v2/repository/index", json={}, timeout=10).status_code == 404  # MLServer's stays inside
        # The UI started as soon as the gateway answered, before the models were loaded (the gateway
        # says "ready:" once it has seen every model settle).
        wait_until(lambda: output.index(r"^ready: http") is not None, "the gateway never said it was ready",
                   process, output, timeout=30)
        ui_line, ready_line = output.index(r"^UI on http"), output.index(r"^ready: http")
        assert ui_line is not None and ui_line < ready_line, output.text[-3000:]

        client = Client(ui_url, download_files=str(tmp_path), verbose=False)
        status = client.predict(api_name="/status")
        assert status.startswith(f"Seldon endpoint at {gateway} is running: all {len(SELDON_MODELS)} models ready")
        message, abc = composed(client, tmp_path, "a lively jig in D major", seed=7)
        assert "M:6/8" in abc and "K:D" in abc, message
        assert message.endswith("Answered by `tune-generator-v2` (route `:tune-generator-v2_1:`)."), message
        message, _ = composed(client, tmp_path, "a reel in G", seed=7, target="v1")
        assert message.endswith("Answered by `tune-generator-v1` (route `:tune-generator-v1_1:`)."), message
        listed = requests.get(gateway + "/v2/experiments", timeout=10).json()["experiments"]
        assert {e["name"] for e in listed} == EXPERIMENTS, listed  # notebook 3.4's, served with the rest
        message, _ = composed(client, tmp_path, "a reel in G", seed=7, target="experiment:generators-ab")
        assert re.search(r"Through experiment `generators-ab`: Answered by `tune-generator-v[12]` "
                         r"\(route `:tune-generator-v[12]_1:`\)\.$", message), message

        message, abc, notation, audio, scores, report = client.predict("a lively jig in D", 7, 8, api_name="/studio")
        assert message.startswith("The critic chose **"), message
        assert "`:studio.pipeline:`" in message and "`:tune-critic_1:`" in message
        assert "K:D" in abc and "<svg" in notation
        assert soundfile.info(audio).duration > 1
        table = dict(zip(scores["columns"], zip(*scores["data"])))
        assert len(table["candidate"]) >= 2 and table["result"].count("winner") == 1, scores
        assert report.strip(), message
    finally:
        stop(process, signal.SIGINT)  # Ctrl-C
    assert_all_gone(ports, ["platform", "platform-gateway", "platform-gateway-mlserver"])


def test_tunesmith_up_without_manifests_serves_mlserver(platform_models, tmp_path):
    """No manifests beside the models: one MLServer on the public ports, the UI once every model is loaded."""
    from gradio_client import Client

    ports = {name: str(free_port()) for name in ("HTTP_PORT", "GRPC_PORT", "METRICS_PORT", "UI_PORT")}
    name = f"up-test-{ports['HTTP_PORT']}"
    no_manifests = tmp_path / "no-manifests"
    no_manifests.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "tunesmith", "up", "--models", str(platform_models), "--manifests", str(no_manifests),
         "--name", name, "--http-port", ports["HTTP_PORT"], "--grpc-port", ports["GRPC_PORT"],
         "--metrics-port", ports["METRICS_PORT"], "--ui-port", ports["UI_PORT"]],
        cwd=paths.REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = Output(process)
    server_url = f"http://127.0.0.1:{ports['HTTP_PORT']}"
    ui_url = f"http://127.0.0.1:{ports['UI_PORT']}/"
    try:
        wait_for(ui_url, process, output)
        assert output.index(r"^mlserver starting on ") is not None, output.text
        index = requests.post(server_url + "/v2/repository/index", json={}, timeout=30).json()
        served = {(m["name"], m.get("version")) for m in index if m.get("state") == "READY"}
        assert STAGE_2_MODELS <= served, index
        client = Client(ui_url, download_files=str(tmp_path), verbose=False)
        message, abc = composed(client, tmp_path, "a lively jig in D major", seed=7)
        assert "M:6/8" in abc and "K:D" in abc, message
        assert message.endswith("Answered by `tune-generator` v2."), message
        studio = client.predict("a lively jig in D", api_name="/studio")[0]
        assert studio.startswith(f"The studio is not available: Pipeline 'studio' is not served at {server_url}"), studio
    finally:
        stop(process, signal.SIGTERM)
    assert_all_gone(ports, [name])
    shutil.rmtree(paths.RUN / name, ignore_errors=True)  # this run's settings and log
