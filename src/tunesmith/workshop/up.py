"""``make up``: the finished platform, the inference server and the UI, started and stopped together.

One process owns both children, so whatever ends it ends them too: Ctrl-C, SIGTERM, SIGHUP (a closed
terminal), or the UI or the server stopping on its own. The server runs in a session of its own (so
its inference workers can be stopped with it) and is tied to this process on Linux even when this
process is killed outright; the UI runs in this process's group and gets the terminal's Ctrl-C itself.

    tunesmith up --models build/platform/models --ui-port 7860
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from tunesmith import paths
from tunesmith.serving.launcher import Server, ServerError
from tunesmith.serving.lifetime import Stopped, end_with_parent, stop_on_signals


def _stop_ui(ui: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if ui is None or ui.poll() is not None:
        return
    ui.terminate()
    try:
        ui.wait(timeout)
    except subprocess.TimeoutExpired:
        ui.kill()
        ui.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=paths.BUILD / "platform" / "models", help="models folder to serve")
    parser.add_argument("--name", default="platform", help="run folder under .run/")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int)
    parser.add_argument("--grpc-port", type=int)
    parser.add_argument("--metrics-port", type=int)
    parser.add_argument("--ui-port", type=int, default=7860)
    args = parser.parse_args(argv)

    stop_on_signals()
    server = Server(models_dir=args.models, name=args.name, host=args.host, http_port=args.http_port,
                    grpc_port=args.grpc_port, metrics_port=args.metrics_port, bound_to_parent=True)
    ui: subprocess.Popen | None = None
    try:
        server.start(wait=False)
        print(f"mlserver starting on {server.http_url} (gRPC {server.grpc_address}); log: {server.log_path}", flush=True)
        server.wait_ready()
        print(server.report(), flush=True)
        ui = subprocess.Popen(
            [sys.executable, "-m", "app", "--host", args.host, "--port", str(args.ui_port)],
            cwd=paths.REPO,
            env={**os.environ, "TUNESMITH_SERVER_URL": server.http_url},
            preexec_fn=end_with_parent,
        )
        print(f"UI on http://{args.host}:{args.ui_port}  (Ctrl-C stops the UI and the server)", flush=True)
        while ui.poll() is None:
            if server.process.poll() is not None:
                raise ServerError(f"mlserver exited with code {server.process.returncode}:\n{server.log_tail()}")
            time.sleep(0.5)
        return ui.returncode or 0
    except ServerError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Stopped):
        return 0
    finally:
        _stop_ui(ui)
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
