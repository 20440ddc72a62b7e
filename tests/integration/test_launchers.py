"""Every launcher ends what it started: Ctrl-C, SIGTERM, SIGHUP, even SIGKILL leave no server behind.

The real ``tunesmith serve`` / ``tunesmith up`` commands run as a learner runs them, on a models folder
holding only the synthesizer (it loads in a second or two), and are signalled from outside. A server
that outlived its launcher would keep its ports: that is what every test checks.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tunesmith import paths
from tunesmith.serving.launcher import free_port, port_in_use, stop_pid_file
from tunesmith.serving.lifetime import command_line

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def synth_only(platform_models, tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("synth-only") / "models"
    shutil.copytree(platform_models / "synthesizer", models / "synthesizer")
    return models


def ports() -> dict[str, int]:
    return {"http": free_port(), "grpc": free_port(), "metrics": free_port()}


def launch(command: str, models: Path, port: dict[str, int], name: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tunesmith", command, "--models", str(models), "--name", name,
         "--http-port", str(port["http"]), "--grpc-port", str(port["grpc"]), "--metrics-port", str(port["metrics"]), *extra],
        cwd=paths.REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} not ready in {timeout} s")


def server_pid(name: str) -> int:
    return int((paths.RUN / name / "pid").read_text())


def gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def ports_free(port: dict[str, int], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(port_in_use(p) for p in port.values()):
            return True
        time.sleep(0.3)
    return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL],
                         ids=["ctrl-c", "sigterm", "sighup", "sigkill"])
def test_serve_ends_its_server_on_every_signal(synth_only, signum):
    port = ports()
    name = f"signal-{port['http']}"
    launcher = launch("serve", synth_only, port, name)
    try:
        wait_ready(f"http://127.0.0.1:{port['http']}/v2/health/ready", launcher)
        mlserver = server_pid(name)
        launcher.send_signal(signum)
        launcher.wait(timeout=60)
        assert gone(mlserver), f"mlserver {mlserver} outlived its launcher ({signum.name})"
        assert ports_free(port), f"ports still taken after {signum.name}"
    finally:
        if launcher.poll() is None:
            launcher.kill()
        stop_pid_file(paths.RUN / name / "pid")


def test_two_launchers_at_the_same_instant_one_wins_the_other_says_why(synth_only):
    port = ports()
    first = launch("serve", synth_only, port, f"race-a-{port['http']}")
    second = launch("serve", synth_only, port, f"race-b-{port['http']}")
    try:
        loser = None
        deadline = time.monotonic() + 120
        while loser is None and time.monotonic() < deadline:
            loser = next((p for p in (first, second) if p.poll() is not None), None)
            time.sleep(0.2)
        assert loser is not None and loser.returncode != 0
        winner = second if loser is first else first
        said = loser.stdout.read()
        assert "another workshop server" in said or "already in use" in said, said
        wait_ready(f"http://127.0.0.1:{port['http']}/v2/health/ready", winner)
        from tunesmith.serving.client import GrpcMusicClient

        with GrpcMusicClient(f"127.0.0.1:{port['grpc']}", timeout=5) as grpc:
            assert all(grpc.live() for _ in range(12)), "a gRPC call went to a server that is not serving"
    finally:
        for p in (first, second):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=60)
    assert ports_free(port)


def test_a_stale_pid_file_never_signals_an_unrelated_process(tmp_path):
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        run = paths.RUN / f"stale-{free_port()}"
        run.mkdir(parents=True)
        (run / "pid").write_text(str(bystander.pid))
        assert not stop_pid_file(run / "pid")
        assert bystander.poll() is None, "an unrelated process was signalled"
        assert not (run / "pid").exists()
        shutil.rmtree(run)
    finally:
        bystander.kill()
        bystander.wait()


def test_up_ends_the_server_and_the_ui_on_sighup(synth_only):
    port = ports()
    ui_port = free_port()
    name = f"up-{port['http']}"
    launcher = launch("up", synth_only, port, name, "--ui-port", str(ui_port))
    try:
        wait_ready(f"http://127.0.0.1:{port['http']}/v2/health/ready", launcher)
        wait_ready(f"http://127.0.0.1:{ui_port}/", launcher, timeout=180)
        mlserver = server_pid(name)
        launcher.send_signal(signal.SIGHUP)
        launcher.wait(timeout=60)
        assert gone(mlserver)
        assert ports_free({**port, "ui": ui_port})
    finally:
        if launcher.poll() is None:
            launcher.kill()
        stop_pid_file(paths.RUN / name / "pid")


def test_command_line_reads_a_live_process():
    assert "python" in command_line(os.getpid()).lower()
    assert command_line(2**22 + 12345) == ""
