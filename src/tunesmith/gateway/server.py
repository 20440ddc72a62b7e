"""``tunesmith gateway``: serve a folder of Seldon Core v2 manifests, models and pipelines behind one address.

    tunesmith gateway --manifests manifests --models models --http-port 8080 --grpc-port 8081

What a Seldon installation spreads over a cluster runs here as one process and its children:

1. the manifests are loaded and checked (:mod:`.manifests`); a bad one stops everything with
   Seldon's message and exit code 2, before anything starts;
2. every Model's ``storageUri`` becomes a folder of a model repository under
   ``.run/<name>/repo``, named as the Seldon Model (:mod:`.storage`);
3. one MLServer serves that repository on free internal ports
   (:class:`tunesmith.serving.launcher.Server`, the hardened entry point of
   :mod:`tunesmith.serving.mlserver_main`; settings, log and pid in ``.run/<name>-mlserver/``,
   so ``tunesmith stop`` stops it too); it is tied to this process and ends with it. Models with
   ``replicas: N`` get N MLServer processes (:mod:`.replicas`: replica i in ``.run/<name>-mlserver-<i>/``
   serves ``.run/<name>/repo-<i>``), balanced, health-checked and restarted when they die;
4. the gateway answers at once on ``--http-port`` (:mod:`.app`) and ``--grpc-port``
   (:mod:`.grpc_service`), in one asyncio event loop: while MLServer loads its models, pipelines
   report 424 (not ready) and model calls 503, as in Seldon while ``ModelsReady`` is false.

Ctrl-C, SIGTERM and SIGHUP stop the HTTP server, the gRPC server and every MLServer together. An
MLServer that is killed or crashes is restarted (its models reload, and it rejoins when they are
ready); one that is stopped on purpose (``make stop``) stops the gateway too (exit code 1).
``--metrics-port`` is the first MLServer's own Prometheus port, as with ``tunesmith serve``; the
gateway's Seldon metrics are at ``/metrics`` on the HTTP port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import uvicorn

from tunesmith import paths
from tunesmith.gateway import app as rest
from tunesmith.gateway import grpc_service, manifests, replicas, requestlog
from tunesmith.gateway.metrics import GatewayMetrics
from tunesmith.gateway.replicas import Replica, ReplicaPool
from tunesmith.gateway.resources import REQUEST_TIMEOUT_S, Resources
from tunesmith.serving import request_guards
from tunesmith.serving.launcher import DEFAULT_SETTINGS, Server, ServerError, free_port, port_in_use
from tunesmith.serving.lifetime import PortTaken, Stopped, command_line, end_when_gone, lock_ports, stop_on_signals

READY_TIMEOUT_S = 300.0
"""How long MLServer may take to load the models before the gateway reports what is missing."""
WATCH_INTERVAL_S = 1.0
"""How often the gateway looks whether the models have settled, until it has announced them."""


def _loop_factory():
    """uvloop's event loop when it is installed (MLServer runs on it too), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _release(locks: list[int], sock: socket.socket | None) -> None:
    for fd in locks:
        os.close(fd)
    if sock is not None:
        sock.close()


class _HttpServer(uvicorn.Server):
    """uvicorn without signal handling of its own (``uvicorn/server.py: capture_signals``).

    uvicorn installs process-wide handlers for SIGINT and SIGTERM and raises the signal again once it
    has stopped; the gateway must stop gRPC and MLServer as well, so it owns the signals itself.
    """

    @contextlib.contextmanager
    def capture_signals(self):
        yield


class Gateway:
    """One gateway: its manifests, its MLServer children (one per replica), and its HTTP and gRPC servers.

    Args:
        manifests_dir: folder of Seldon manifests (``*.yaml``).
        models_dir: local folder that the models URI prefix (``gs://tunesmith-workshop/models``) maps to;
            by default ``models/`` next to the manifests folder.
        name: run folder under ``.run/``: the model repository and MLServer's settings and log.
        host, http_port, grpc_port: where callers reach the gateway.
        metrics_port: MLServer's own metrics port (default: a free one).
        settings_file: MLServer's server settings.
        request_timeout_s: the longest a pipeline request may take.
        request_log: the request log's file (:mod:`.requestlog`; default :func:`requestlog.default_path`).

    Raises:
        manifests.ManifestError: a manifest is invalid, or asks for something not served locally.
    """

    def __init__(
        self,
        manifests_dir: str | Path,
        models_dir: str | Path | None = None,
        *,
        name: str = "gateway",
        host: str = "127.0.0.1",
        http_port: int = 8080,
        grpc_port: int = 8081,
        metrics_port: int | None = None,
        settings_file: str | Path = DEFAULT_SETTINGS,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        request_log: str | Path | None = None,
    ):
        self.manifests_dir = Path(manifests_dir)
        self.models_dir = Path(models_dir) if models_dir is not None else None
        self.manifests = manifests.load(self.manifests_dir)
        self.name = name
        self.host = host
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.request_timeout_s = request_timeout_s
        self.request_log = Path(request_log) if request_log else requestlog.default_path()
        self.repo = paths.RUN / name / "repo"
        self.layout = replicas.layout(self.manifests)
        self.servers = [
            Server(  # its own run folder: MLServer finds every model-settings.json below it
                models_dir=self.repo if index == 0 else self.repo.with_name(f"{self.repo.name}-{index}"),
                settings_file=settings_file,
                name=replicas.run_name(name, index),
                host="127.0.0.1",
                http_port=free_port(),
                grpc_port=free_port(),
                metrics_port=(metrics_port if index == 0 else None) or free_port(),
                bound_to_parent=True,
            )
            for index in range(len(self.layout))
        ]
        self.mlserver = self.servers[0]
        """Replica 0: it serves every Model."""
        self._stop: asyncio.Event | None = None
        self.exit_code = 0

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    # -- start-up ---------------------------------------------------------------------------------
    def _claim_ports(self) -> tuple[list[int], socket.socket]:
        """Lock the gateway's two ports and bind the HTTP one, before MLServer starts, so a clash fails fast.

        The locks (:func:`tunesmith.serving.lifetime.lock_ports`) stop a second gateway or server
        started at the same instant; the HTTP socket is made with ``IPPROTO_TCP`` named, because
        asyncio turns Nagle's algorithm off (``TCP_NODELAY``) only on sockets that say so
        (``asyncio/base_events.py: _set_nodelay``), and with it on, a response written in two parts
        (headers, then body) waits ~40 ms for the client's delayed ACK.
        """
        hint = "choose other ports, e.g. `make gateway HTTP_PORT=9080 GRPC_PORT=9081 METRICS_PORT=9082`"
        try:
            locks = lock_ports([self.http_port, self.grpc_port])
        except PortTaken as exc:
            raise ServerError(str(exc)) from None
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.http_port))
            sock.listen(2048)
            if port_in_use(self.grpc_port, self.host):
                raise ServerError(f"port {self.grpc_port} (grpc_port) is already in use: {hint}")
        except OSError as exc:
            _release(locks, sock)
            raise ServerError(f"port {self.http_port} (http_port) is already in use ({exc.strerror}): {hint}") from None
        except ServerError:
            _release(locks, sock)
            raise
        return locks, sock

    def _request_limit(self) -> tuple[int, str]:
        """The message size limit of both protocols: MLServer's own, so the gateway never accepts more.

        ``grpc_max_message_length`` from the settings if set, else the size the hardened MLServer
        derives from the models' audio limits (:func:`tunesmith.serving.request_guards.request_limit`).
        """
        configured = self.mlserver.settings.get("grpc_max_message_length")
        if configured:
            return int(configured), "grpc_max_message_length in settings.json"
        return request_guards.request_limit(str(self.repo))

    # -- serving ----------------------------------------------------------------------------------
    async def serve(self, http_socket: socket.socket) -> None:
        """Serve until a signal arrives or MLServer exits; MLServer itself is started and stopped by :meth:`run`."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self._on_signal, signum)

        limit, limit_source = self._request_limit()
        metrics = GatewayMetrics()
        upstream = ReplicaPool(
            [Replica(i, server, frozenset(models)) for i, (server, models) in enumerate(zip(self.servers, self.layout))],
            limit, metrics, on_stopped=self._on_replica_stopped,
        )
        upstream.start()
        resources = Resources(self.manifests, upstream, metrics, request_timeout_s=self.request_timeout_s,
                              request_log=requestlog.RequestLog(self.request_log))
        app = rest.create_app(resources, max_body_bytes=limit, limit_source=limit_source, host=self.host)
        # 65 s keep-alive, as Seldon's pipeline gateway (``httpserver.go``: ``IdleTimeout``)
        http = _HttpServer(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                          timeout_keep_alive=65))
        try:
            grpc_server = grpc_service.create_server(resources, self.grpc_address, max_message_bytes=limit)
            await grpc_server.start()
        except RuntimeError as exc:  # grpc cannot bind the address
            await upstream.aclose()
            raise ServerError(f"gRPC cannot listen on {self.grpc_address} ({exc}): choose another port") from None
        http_task = asyncio.create_task(http.serve(sockets=[http_socket]))
        watch = asyncio.create_task(self._watch(upstream))
        reload = asyncio.create_task(resources.experiments.watch(_print_reload))  # Experiments change live
        print(f"gateway on {self.http_url} (gRPC {self.grpc_address}); MLServer loading on {self.mlserver.http_url} "
              f"(log: {self.mlserver.log_path}); requests up to {limit} bytes", flush=True)
        for index, (server, models) in enumerate(zip(self.servers[1:], self.layout[1:]), start=1):
            print(f"MLServer replica {index} on {server.http_url}, starting once replica 0 has loaded "
                  f"(log: {server.log_path}): "
                  f"{', '.join(models)}", flush=True)
        if self.host not in request_guards.LOOPBACK_HOSTS:
            print(f"listening on {self.host}: other machines can reach this gateway", file=sys.stderr, flush=True)
        try:
            await asyncio.wait([asyncio.create_task(self._stop.wait()), http_task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            reload.cancel()
            http.should_exit = True
            await asyncio.gather(http_task, grpc_server.stop(grace=5), return_exceptions=True)
            await resources.aclose()  # mirror calls end, the request log is committed
            await upstream.aclose()

    def _on_signal(self, signum: int) -> None:
        print(f"stopping ({signal.Signals(signum).name})", file=sys.stderr, flush=True)
        self._stop.set()

    def _on_replica_stopped(self, replica: Replica) -> None:
        """A replica's MLServer was stopped on purpose (``make stop``): the gateway stops, exit code 1."""
        print(replica.server.log_tail(), file=sys.stderr, flush=True)
        self.exit_code = 1
        self._stop.set()

    async def _watch(self, pool: ReplicaPool) -> None:
        """Report the models once every replica has settled on each (ready or failed)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not (pool.settled() or time.monotonic() > deadline):
            await asyncio.sleep(0.3)
        reports = [await asyncio.to_thread(self._report, server) for server in self.servers]
        if len(reports) > 1:
            reports = [f"replica {index}:\n{report}" for index, report in enumerate(reports)]
        pipelines = ", ".join(sorted(self.manifests.pipelines)) or "none"
        print("\n".join(reports) + f"\nready: {self.http_url}/v2/models/<model>/infer, "
              f"{self.http_url}/v2/pipelines/<pipeline>/infer (pipelines: {pipelines}); "
              f"metrics: {self.http_url}/metrics", flush=True)

    @staticmethod
    def _report(server: Server) -> str:
        try:
            return server.report()
        except Exception as exc:  # noqa: BLE001 - a report is a courtesy; serving goes on without it
            return f"  (no model list: {exc})"

    # -- whole life -------------------------------------------------------------------------------
    def run(self) -> int:
        """Build the repositories, start the MLServers, serve until stopped, stop them. Returns an exit code."""
        stop_on_signals()  # until the event loop takes the signals over
        locks, http_socket = [], None
        try:
            self._check_name_is_free()
            locks, http_socket = self._claim_ports()
            replicas.build_repositories(self.manifests, self.repo, models_dir=self.models_dir)
            self.servers[0].start(wait=False)  # the other replicas once it has loaded its models
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(self.serve(http_socket))
        except (manifests.ManifestError, FileExistsError) as exc:
            print(exc, file=sys.stderr)
            return 2
        except ServerError as exc:
            print(exc, file=sys.stderr)
            return 1
        except (KeyboardInterrupt, Stopped) as exc:
            print(f"stopping ({exc or type(exc).__name__})", file=sys.stderr)
        finally:
            self._stop_servers()
            _release(locks, http_socket)
        return self.exit_code

    def _stop_servers(self) -> None:
        """Stop every replica this gateway started, at the same time (each may take seconds to end its workers)."""
        started = [server for server in self.servers if server.process is not None]  # never one it did not start
        threads = [threading.Thread(target=server.stop) for server in started]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _check_name_is_free(self) -> None:
        """Refuse to start when another gateway runs under the same name: its repository would be rebuilt."""
        pid_file = self.mlserver.run_dir / "pid"
        try:
            pid = int(pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return
        if str(self.mlserver.run_dir) in command_line(pid):
            raise ServerError(f"a gateway named {self.name!r} is already running (MLServer pid {pid}): stop it "
                              f"(`make stop`) or give this one another --name")


def _print_reload(outcome: list[str] | Exception) -> None:
    """What a change of the manifests folder did to the Experiments served (:meth:`Experiments.watch`)."""
    if isinstance(outcome, Exception):
        print(f"manifests changed, not applied: {outcome}", file=sys.stderr, flush=True)
    for line in outcome if isinstance(outcome, list) else ():
        print(f"reload: {line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    end_when_gone()  # a notebook's gateway (TUNESMITH_END_WITH_PID) ends with the Jupyter server that started it
    parser = argparse.ArgumentParser(
        prog="tunesmith gateway",
        description="Serve a folder of Seldon Core v2 manifests: models and pipelines behind one address.",
    )
    parser.add_argument("--manifests", required=True, help="folder of Seldon Core v2 manifests (*.yaml)")
    parser.add_argument("--models", help="local folder for storageUri gs://tunesmith-workshop/models/... "
                                         "(default: models/ next to the manifests folder)")
    parser.add_argument("--name", default="gateway", help="run folder under .run/ (repository, MLServer log)")
    parser.add_argument("--settings", default=str(DEFAULT_SETTINGS), help="MLServer's settings.json")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--grpc-port", type=int, default=8081)
    parser.add_argument("--metrics-port", type=int, help="MLServer's own metrics port (default: a free one); "
                                                         "the gateway's are at /metrics on the HTTP port")
    parser.add_argument("--request-log", help="the request log's SQLite file (default: $TUNESMITH_REQUEST_LOG, "
                                              "else .run/request-log.sqlite)")
    parser.add_argument("--request-timeout", type=float, default=REQUEST_TIMEOUT_S,
                        help="seconds a pipeline request may take before it is answered 504")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not Path(args.manifests).exists():
        print(f"no manifests at {args.manifests}: put Seldon Core v2 manifests there (*.yaml files of kind Model, "
              f"Pipeline, ...)", file=sys.stderr)
        return 2
    try:
        gateway = Gateway(
            args.manifests, args.models, name=args.name, host=args.host, http_port=args.http_port,
            grpc_port=args.grpc_port, metrics_port=args.metrics_port, settings_file=args.settings,
            request_timeout_s=args.request_timeout, request_log=args.request_log,
        )
    except manifests.ManifestError as exc:
        print(exc, file=sys.stderr)
        return 2
    except ServerError as exc:
        print(exc, file=sys.stderr)
        return 1
    return gateway.run()


if __name__ == "__main__":
    sys.exit(main())
