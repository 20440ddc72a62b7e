"""`make up` from the README: the finished platform (server + UI) composes a playable tune.

Runs the real target on free ports, drives the UI with gradio_client, then stops it with Ctrl-C
(SIGINT to the process group, as a terminal does) and checks the server went down with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import requests
import soundfile

from tunesmith import paths
from tunesmith.serving.launcher import free_port, port_in_use

EVERY_MODEL = {
    ("synthesizer", "v1"), ("tune-generator", "v1"), ("tune-generator", "v2"), ("prompt-encoder", "v1"),
    ("audio-fx", "v1"), ("transcriber", "v1"), ("style-classifier", "v1"),
}
"""(name, version) of every stage-1 and stage-2 model, all in the one server `make up` starts."""

pytestmark = [pytest.mark.server, pytest.mark.ui, pytest.mark.slow]


def wait_for(url: str, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"make up exited with {process.returncode}:\n{process.stdout.read()[-3000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def test_make_up_serves_the_platform_and_the_ui_composes(tmp_path):
    from gradio_client import Client

    ports = {name: str(free_port()) for name in ("HTTP_PORT", "GRPC_PORT", "METRICS_PORT", "UI_PORT")}
    process = subprocess.Popen(
        ["make", "--no-print-directory", "-o", ".venv/.installed", f"PY={sys.executable}", "up"],
        cwd=paths.REPO,
        env={**os.environ, **ports},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    server_url = f"http://127.0.0.1:{ports['HTTP_PORT']}"
    ui_url = f"http://127.0.0.1:{ports['UI_PORT']}/"
    try:
        wait_for(server_url + "/v2/health/ready", process)
        wait_for(ui_url, process)
        index = requests.post(server_url + "/v2/repository/index", json={}, timeout=30).json()
        served = {(m["name"], m.get("version")) for m in index if m.get("state") == "READY"}
        assert served == EVERY_MODEL, index
        client = Client(ui_url, download_files=str(tmp_path), verbose=False)
        message, abc, notation, audio, *_ = client.predict("a lively jig in D major", seed=7, api_name="/compose")
        assert "M:6/8" in abc and "K:D" in abc, message
        assert "<svg" in notation
        assert audio, message
        samples, rate = soundfile.read(audio)
        assert len(samples) > rate
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    deadline = time.monotonic() + 30
    while port_in_use(int(ports["HTTP_PORT"])) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not port_in_use(int(ports["HTTP_PORT"])), "the server outlived make up"
    assert not (paths.RUN / "platform" / "pid").exists()
