"""A Seldon gateway for the UI tests: ``tunesmith gateway`` serving the finished platform's models and
pipelines, from the manifests stage 3's notebooks write beside the platform's models folder
(``manifests/models/*.yaml``, ``manifests/pipelines/studio.yaml``, ...).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from tunesmith import paths
from tunesmith.serving.launcher import free_port

STARTUP_S = 300


def platform_manifests(models: Path) -> Path | None:
    """The platform's own manifests (beside its models folder) when they hold the studio pipeline."""
    folder = Path(models).parent / "manifests"
    return folder if folder.is_dir() and any(folder.rglob("studio.yaml")) else None


@dataclass
class RunningGateway:
    """A gateway that runs: its REST URL and gRPC address (and, if started here, its process and log)."""

    http_url: str
    grpc_address: str | None = None
    process: subprocess.Popen | None = None
    log: Path | None = None
    name: str | None = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.name:
            for run in (paths.RUN / self.name, paths.RUN / f"{self.name}-mlserver"):
                shutil.rmtree(run, ignore_errors=True)


def start_gateway(manifests: Path, models: Path, folder: Path,
                  ready_path: str = "/v2/pipelines/studio/ready") -> RunningGateway:
    """``tunesmith gateway`` on free ports; returns once ``ready_path`` (by default the studio
    pipeline's readiness) answers 200."""
    http_port, grpc_port = free_port(), free_port()
    name = f"ui-gateway-{http_port}"
    log = folder / "gateway.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tunesmith", "gateway", "--manifests", str(manifests), "--models", str(models),
             "--name", name, "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
            stdout=out, stderr=subprocess.STDOUT, cwd=paths.REPO)
    gateway = RunningGateway(f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", process, log, name)
    deadline = time.monotonic() + STARTUP_S
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the gateway exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if requests.get(gateway.http_url + ready_path, timeout=2).status_code == 200:
                    return gateway
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ready_path} did not answer 200 within {STARTUP_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
    except BaseException:
        gateway.stop()
        raise
