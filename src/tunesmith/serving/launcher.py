"""Start and stop a real ``mlserver start`` process on a folder of models.

``mlserver start FOLDER`` reads ``FOLDER/settings.json`` and serves every ``model-settings.json``
below FOLDER. The workshop keeps server settings in ``settings/settings.json`` (one place, not one
copy per models folder) and lets ports be changed per run, because ports clash on laptops. So the
launcher writes a run folder ``.run/<name>/`` holding the merged ``settings.json`` and a link
``models -> <the models folder>``, then runs ``mlserver start`` on it. The models folder itself is
never written to.

Used by ``make serve`` / ``make up``, by the notebooks (start and stop the server from a cell) and by
the tests (a real server on free ports)::

    with Server(models_dir="models", http_port=free_port()) as server:
        requests.post(server.http_url + "/v2/models/tune-generator/infer", json=...)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from tunesmith import offline, paths
from tunesmith.serving.lifetime import PortTaken, Stopped, command_line, end_with_parent, lock_ports, stop_on_signals
from tunesmith.serving import mlserver_main

DEFAULT_SETTINGS = paths.SETTINGS / "settings.json"


FREE_PORT_RANGE = (20000, 32000)
"""Where :func:`free_port` looks: below Linux's ephemeral range (32768-60999 by default), from which
the kernel also gives ports to outgoing connections. A port the kernel picked from that range can
be taken by a client connection (a benchmark opens thousands) before the server binds it."""
_handed_out: set[int] = set()
_random = random.SystemRandom()  # not the seedable module generator: two seeded processes would agree


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing uses right now and this process has not handed out before.

    For tests and side-by-side servers: the caller binds it soon after. Ports come from
    :data:`FREE_PORT_RANGE`; if none there is free, the kernel chooses one.
    """
    for _ in range(100):
        port = _random.randint(*FREE_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class ServerError(RuntimeError):
    """The server did not come up; the message carries the end of its log."""


class Server:
    """A ``mlserver start`` child process with merged settings.

    Args:
        models_dir: folder of model folders (each with a ``model-settings.json``).
        settings_file: server settings to start from (``settings/settings.json``).
        name: run-folder name under ``.run/`` (one per concurrently running server).
        host, http_port, grpc_port, metrics_port: override the settings file when given.
        overrides: any other server setting, e.g. ``{"parallel_workers": 0}``.
        env: extra environment variables for the server process.
        bound_to_parent: end the server when this process ends, even when it is killed outright.
            True for launchers that own their server (``make serve``, ``make up``, tests, the
            benchmark); False where the server must outlive its launcher (``tunesmith start``, a
            notebook's server that the next notebook reuses). On Linux the tie is to the *thread*
            that calls :meth:`start`: call it from a thread that lives as long as the server.
    """

    def __init__(
        self,
        models_dir: str | Path = paths.MODELS,
        settings_file: str | Path = DEFAULT_SETTINGS,
        name: str | None = None,
        host: str | None = None,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        overrides: dict | None = None,
        env: dict | None = None,
        bound_to_parent: bool = True,
    ):
        self.models_dir = Path(models_dir).resolve()
        settings = json.loads(Path(settings_file).read_text())
        for key, value in (
            ("host", host),
            ("http_port", http_port),
            ("grpc_port", grpc_port),
            ("metrics_port", metrics_port),
        ):
            if value is not None:
                settings[key] = value
        settings.update(overrides or {})
        try:
            settings = mlserver_main.settings_for_run(settings, settings_file)
        except ValueError as exc:
            raise ServerError(str(exc)) from None
        self.settings = settings
        self.name = name or f"mlserver-{settings['http_port']}"
        self.run_dir = paths.RUN / self.name
        # MLServer's multiprocess metrics default to ./.metrics in whatever folder it was started
        # from; keep them with this server's run folder instead.
        settings.setdefault("metrics_dir", str(self.run_dir / "metrics"))
        self.log_path = self.run_dir / "mlserver.log"
        self.env = env or {}
        self.bound_to_parent = bound_to_parent
        self.process: subprocess.Popen | None = None

    # -- addresses -----------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return self.settings["host"]

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.settings['http_port']}"

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.settings['grpc_port']}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.settings['metrics_port']}/metrics"

    # -- life cycle ----------------------------------------------------------------------------
    def prepare(self) -> Path:
        """Write the run folder: merged settings.json and a link to the models folder."""
        if not self.models_dir.is_dir():
            raise ServerError(f"no models folder at {self.models_dir}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "settings.json").write_text(json.dumps(self.settings, indent=2) + "\n")
        link = self.run_dir / "models"
        if link.is_symlink() or link.exists():
            link.unlink() if link.is_symlink() else shutil.rmtree(link)
        link.symlink_to(self.models_dir, target_is_directory=True)
        return self.run_dir

    def start(self, wait: bool = True, timeout: float = 120.0) -> "Server":
        """Start ``mlserver start`` in the background; by default wait until it is ready."""
        port_keys = ("http_port", "grpc_port", "metrics_port")
        try:
            locks = lock_ports([self.settings[key] for key in port_keys])
        except PortTaken as exc:
            raise ServerError(str(exc)) from None
        try:
            for key in port_keys:
                if port_in_use(self.settings[key], self.host):
                    raise ServerError(
                        f"port {self.settings[key]} ({key}) is already in use: stop the other server "
                        f"(`make stop`) or choose another port, e.g. `make serve HTTP_PORT=9080 "
                        f"GRPC_PORT=9081 METRICS_PORT=9082`"
                    )
            self._spawn(locks)
        finally:
            for fd in locks:  # the server holds its own copies of the locks from here on
                os.close(fd)
        if wait:
            try:
                self.wait_ready(timeout)
            except BaseException:  # not ready in time, or interrupted: never leave a half-started server behind
                self.stop()
                raise
        return self

    def _spawn(self, locks: list[int]) -> None:
        self.prepare()
        env = offline.enforce({**os.environ, **self.env})  # the runtimes never reach for a hub
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tunesmith.serving.mlserver_main", "start", str(self.run_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # so stop() can end the server and its workers together
            pass_fds=locks,
            preexec_fn=end_with_parent if self.bound_to_parent else None,
        )
        log.close()  # the child has its own copy
        (self.run_dir / "pid").write_text(str(self.process.pid))

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Poll ``/v2/health/ready`` until every model is loaded; raise with the log if it dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(f"mlserver exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.http_url + "/v2/health/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise ServerError(f"mlserver not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def models(self) -> list[dict]:
        """Every model the server knows, from ``POST /v2/repository/index``: name, version, state, reason.

        A model whose folder is broken (bad JSON, a runtime that fails to import or to load) is
        listed as ``UNAVAILABLE`` with the reason, while every other model keeps serving.
        """
        response = requests.post(self.http_url + "/v2/repository/index", json={}, timeout=10)
        response.raise_for_status()
        return sorted(response.json(), key=lambda m: (m.get("name", ""), m.get("version") or ""))

    def report(self) -> str:
        """One line per model: which serve, and why any other does not."""
        lines = []
        for model in self.models():
            label = model["name"] + (f" ({model['version']})" if model.get("version") else "")
            if model.get("state") == "READY":
                lines.append(f"  ready      {label}")
            else:
                reason = model.get("reason") or "no reason given"
                lines.append(f"  NOT READY  {label}: {model.get('state')}: {reason}")
        return "\n".join(lines) or "  (no models)"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server and its inference workers (SIGTERM, then SIGKILL)."""
        if self.process is None:
            stop_pid_file(self.run_dir / "pid", timeout)
            return
        _stop_group(self.process.pid, timeout, self.process)
        self.process = None
        (self.run_dir / "pid").unlink(missing_ok=True)

    def __enter__(self) -> "Server":
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _stop_group(pid: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            if process.poll() is not None:
                break
        else:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if process is not None:
        process.wait()


def stop_pid_file(pid_file: Path, timeout: float = 20.0) -> bool:
    """Stop a server started earlier (e.g. by ``make serve`` in another terminal).

    The pid is checked first: only a process whose command line names this run folder is signalled.
    A pid file left by a server that died (its pid possibly reused by an unrelated program since) is
    removed without signalling anything.
    """
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return False
    if str(pid_file.parent) not in command_line(pid):
        pid_file.unlink(missing_ok=True)
        return False
    _stop_group(pid, timeout)
    pid_file.unlink(missing_ok=True)
    return True


def stop_all() -> list[str]:
    """Stop every server this repository started; returns the run folders that had one."""
    stopped = []
    for pid_file in sorted(paths.RUN.glob("*/pid")):
        if stop_pid_file(pid_file):
            stopped.append(pid_file.parent.name)
    return stopped


def _add_server_args(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--models", default=str(paths.MODELS), help="folder of model folders")
    parser.add_argument("--settings", default=str(DEFAULT_SETTINGS), help="server settings.json")
    parser.add_argument("--name", default=name, help="run folder under .run/ (one per server)")
    parser.add_argument("--host")
    parser.add_argument("--http-port", type=int)
    parser.add_argument("--grpc-port", type=int)
    parser.add_argument("--metrics-port", type=int)


def _server_from_args(args: argparse.Namespace) -> Server | None:
    models = Path(args.models)
    if not any(models.glob("**/model-settings.json")):
        print(
            f"{models} has no model folders yet. Run the stage-1 notebooks, or `make stage-2` to "
            f"catch up, or `make up` for the finished platform.",
            file=sys.stderr,
        )
        return None
    return Server(
        models_dir=models,
        settings_file=args.settings,
        name=args.name,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_server_args(sub.add_parser("serve", help="run mlserver in the foreground until Ctrl-C"), "serve")
    _add_server_args(sub.add_parser("start", help="start mlserver in the background, wait until ready"), "background")
    stop = sub.add_parser("stop", help="stop servers started from this repository")
    stop.add_argument("--name", help="only this run folder (default: all)")
    args = parser.parse_args(argv)

    if args.command == "stop":
        if args.name:
            stopped = [args.name] if stop_pid_file(paths.RUN / args.name / "pid") else []
        else:
            stopped = stop_all()
        print("stopped: " + ", ".join(stopped) if stopped else "no server was running")
        return 0

    server = _server_from_args(args)
    if server is None:
        return 1
    server.bound_to_parent = args.command == "serve"
    stop_on_signals()
    try:
        server.start(wait=False)
        print(f"mlserver starting on {server.http_url} (gRPC {server.grpc_address}); log: {server.log_path}")
        server.wait_ready()
        report = server.report()
        if server.process.poll() is not None:  # never say "ready" for a server that is gone
            raise ServerError(f"mlserver exited with code {server.process.returncode}:\n{server.log_tail()}")
    except (ServerError, KeyboardInterrupt, Stopped) as exc:
        print(exc if isinstance(exc, ServerError) else f"stopping ({type(exc).__name__} {exc})", file=sys.stderr)
        server.stop()
        return 1
    print(report)
    print(f"ready: {server.http_url}/v2/models/<name>/infer  metrics: {server.metrics_url}", flush=True)
    if args.command == "start":
        return 0
    try:
        server.process.wait()
    except (KeyboardInterrupt, Stopped):
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
