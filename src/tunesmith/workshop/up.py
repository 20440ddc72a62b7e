"""``make up``: the finished platform, the inference server and the UI, started and stopped together.

What serves the models depends on what the platform holds:

* with Seldon Core v2 manifests beside the models folder (``build/platform/manifests/``, written by
  stage 3's notebooks), ``tunesmith gateway`` serves them on the public HTTP and gRPC ports: every
  Model and every Pipeline behind one address, as Seldon's mesh does on a cluster, with MLServer
  inside on ports of its own. The UI talks Seldon to it (``TUNESMITH_SELDON=1``) and starts at the
  same moment as the gateway, not after it: both take seconds to import their libraries, and on a
  2-core laptop doing it side by side is what makes the platform usable soonest. Until the gateway
  answers, and while the models load, the UI says so (its status line says which are ready);
* without manifests, one MLServer serves the models folder on those ports, and the UI starts once
  every model is loaded.

One process owns both children, so whatever ends it ends them too: Ctrl-C, SIGTERM, SIGHUP (a closed
terminal), or the UI or the server stopping on its own. The server (MLServer, or the gateway with its
MLServer) runs in a session of its own, so a Ctrl-C reaches it once, from here, and it can stop its
own children in order; on Linux it is also tied to this process when this process is killed outright.
The UI runs in this process's group and gets the terminal's Ctrl-C itself.

    tunesmith up --models build/platform/models --ui-port 7860
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import requests

from tunesmith import paths
from tunesmith.serving.launcher import DEFAULT_SETTINGS, Server, ServerError
from tunesmith.serving.lifetime import Stopped, end_with_parent, stop_on_signals

GATEWAY_START_S = 120.0
"""How long the gateway may take to answer on its HTTP port (it reads the manifests and links the
model repository first; the models load afterwards, behind it)."""
GATEWAY_STOP_S = 60.0
"""How long the gateway may take to stop itself and its MLServer before it is killed."""


def manifests_folder(models: Path, manifests: Path | None = None) -> Path | None:
    """The Seldon manifests to serve: ``manifests`` or the ``manifests/`` beside ``models``, if it holds any
    YAML (in sub-folders too, hidden ones aside, as the gateway reads them)."""
    folder = Path(manifests) if manifests is not None else Path(models).parent / "manifests"
    if not folder.is_dir():
        return None
    for path in folder.rglob("*"):
        if path.suffix in (".yaml", ".yml") and path.is_file() \
                and not any(part.startswith(".") for part in path.relative_to(folder).parts):
            return folder
    return None


def _stop_ui(ui: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if ui is None or ui.poll() is not None:
        return
    ui.terminate()
    try:
        ui.wait(timeout)
    except subprocess.TimeoutExpired:
        ui.kill()
        ui.wait()


def _stop_gateway(gateway: subprocess.Popen | None, timeout: float = GATEWAY_STOP_S) -> None:
    """SIGTERM (the gateway then stops its HTTP and gRPC servers and its MLServer), SIGKILL if it hangs."""
    if gateway is None or gateway.poll() is not None:
        return
    gateway.send_signal(signal.SIGTERM)
    try:
        gateway.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(gateway.pid, signal.SIGKILL)  # its own session: the gateway and anything it left
        gateway.wait()


def _start_ui(host: str, port: int, server_url: str, seldon_grpc: str | None = None,
              metrics_url: str | None = None) -> subprocess.Popen:
    """The UI on ``host:port`` calling ``server_url`` (a Seldon endpoint with gRPC at ``seldon_grpc``, if given,
    which the UI is started before: it says the server is starting until it answers); the Monitor section
    reads MLServer's own metrics at ``metrics_url``."""
    # Imported here, after the server has been started: the client module pulls in MLServer's codecs
    # (a second or more of imports), and the launcher needs it only for the UI's variable names.
    from tunesmith.serving.client import GRPC_ENV, METRICS_URL_ENV, SELDON_ENV, STARTING_ENV, URL_ENV

    env = {URL_ENV: server_url, **({SELDON_ENV: "1", GRPC_ENV: seldon_grpc, STARTING_ENV: "1"} if seldon_grpc else {})}
    if metrics_url:
        env[METRICS_URL_ENV] = metrics_url
    return subprocess.Popen(
        [sys.executable, "-m", "app", "--host", host, "--port", str(port)],
        cwd=paths.REPO,
        env={**os.environ, **env},
        preexec_fn=end_with_parent,
    )


def _default_ports(args: argparse.Namespace) -> tuple[int, int]:
    settings = json.loads(Path(DEFAULT_SETTINGS).read_text())
    return args.http_port or settings["http_port"], args.grpc_port or settings["grpc_port"]


def _wait_for_gateway(gateway: subprocess.Popen, url: str, timeout: float = GATEWAY_START_S) -> None:
    """Until the gateway's own health endpoint answers; :class:`ServerError` if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gateway.poll() is not None:  # it has printed why (bad manifests, a port in use...)
            raise ServerError(f"the gateway exited with code {gateway.returncode}")
        try:
            if requests.get(url + "/ready", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise ServerError(f"the gateway did not answer at {url} within {timeout:.0f} s")


def _until_the_ui_ends(ui: subprocess.Popen, backend_gone: Callable[[], str | bool]) -> int:
    """Wait while the UI runs; the UI's exit code, or :class:`ServerError` with ``backend_gone()``'s
    message once the server behind it has ended (a UI without its server is no use)."""
    while ui.poll() is None:
        gone = backend_gone()
        if gone:
            raise ServerError(gone)
        time.sleep(0.5)
    return ui.returncode or 0


def run_gateway(args: argparse.Namespace, manifests: Path) -> int:
    """The gateway on ``manifests`` plus the UI, until one of them ends or a signal arrives."""
    http_port, grpc_port = _default_ports(args)
    url, grpc_address = f"http://{args.host}:{http_port}", f"{args.host}:{grpc_port}"
    # A run folder of its own: MLServer without the gateway serves every model-settings.json under
    # .run/<name>/, so the gateway's repository must not be left there.
    command = [
        sys.executable, "-m", "tunesmith", "gateway", "--manifests", str(manifests), "--models", str(args.models),
        "--name", f"{args.name}-gateway", "--host", args.host, "--http-port", str(http_port),
        "--grpc-port", str(grpc_port),
    ]
    metrics_port = args.metrics_port or json.loads(Path(DEFAULT_SETTINGS).read_text())["metrics_port"]
    command += ["--metrics-port", str(metrics_port)]
    gateway: subprocess.Popen | None = None
    ui: subprocess.Popen | None = None
    try:
        print(f"Seldon manifests in {manifests}: the gateway serves their models and pipelines on {url} "
              f"(gRPC {grpc_address})", flush=True)
        gateway = subprocess.Popen(command, cwd=paths.REPO, start_new_session=True, preexec_fn=end_with_parent)
        ui = _start_ui(args.host, args.ui_port, url, seldon_grpc=grpc_address,
                       metrics_url=f"http://{args.host}:{metrics_port}")
        print(f"UI on http://{args.host}:{args.ui_port}, answering while the gateway starts and the models load  "
              f"(Ctrl-C stops the UI and the gateway)", flush=True)
        _wait_for_gateway(gateway, url)
        return _until_the_ui_ends(ui, lambda: gateway.poll() is not None and
                                  f"the gateway exited with code {gateway.returncode}")
    except ServerError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Stopped):
        return 0
    finally:
        _stop_ui(ui)
        _stop_gateway(gateway)


def run_mlserver(args: argparse.Namespace) -> int:
    """One MLServer on the models folder plus the UI, until one of them ends or a signal arrives."""
    server = Server(models_dir=args.models, name=args.name, host=args.host, http_port=args.http_port,
                    grpc_port=args.grpc_port, metrics_port=args.metrics_port, bound_to_parent=True)
    ui: subprocess.Popen | None = None
    try:
        server.start(wait=False)
        print(f"mlserver starting on {server.http_url} (gRPC {server.grpc_address}); log: {server.log_path}", flush=True)
        server.wait_ready()
        print(server.report(), flush=True)
        ui = _start_ui(args.host, args.ui_port, server.http_url, metrics_url=server.metrics_url)
        print(f"UI on http://{args.host}:{args.ui_port}  (Ctrl-C stops the UI and the server)", flush=True)
        return _until_the_ui_ends(ui, lambda: server.process.poll() is not None and
                                  f"mlserver exited with code {server.process.returncode}:\n{server.log_tail()}")
    except ServerError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Stopped):
        return 0
    finally:
        _stop_ui(ui)
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=paths.BUILD / "platform" / "models", help="models folder to serve")
    parser.add_argument("--manifests", type=Path,
                        help="Seldon manifests to serve through the gateway (default: manifests/ beside --models)")
    parser.add_argument("--no-gateway", action="store_true", help="serve --models with MLServer even if there are manifests")
    parser.add_argument("--name", default="platform",
                        help="run folder under .run/ (the gateway's: <name>-gateway and <name>-gateway-mlserver)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int)
    parser.add_argument("--grpc-port", type=int)
    parser.add_argument("--metrics-port", type=int)
    parser.add_argument("--ui-port", type=int, default=7860)
    args = parser.parse_args(argv)

    stop_on_signals()
    manifests = None if args.no_gateway else manifests_folder(args.models, args.manifests)
    if manifests is not None:
        return run_gateway(args, manifests)
    if args.manifests is not None and not args.no_gateway:
        print(f"no Seldon manifests in {args.manifests}: serving {args.models} with MLServer", flush=True)
    return run_mlserver(args)


if __name__ == "__main__":
    sys.exit(main())
