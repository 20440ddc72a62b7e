"""Notebook conveniences: start, reuse and stop the workshop's MLServer, copy shipped weights.

Every notebook that talks to the server begins with ``server = start_server()``. Learners switch
notebooks (each with its own kernel), run ``make serve`` in a terminal, or change a runtime and
forget to restart; so ``start_server`` does not blindly start a new process:

* a server from this repository already answers on the port and its models are up to date: it is
  reused;
* one started by a notebook, whose model folders changed since it loaded them (or which serves
  another folder): it is restarted;
* one started in a terminal (``make serve``) whose model folders changed: its models are reloaded
  through the repository API, so the learner's terminal keeps its server and its log; one serving
  another folder (``make up``) is left alone, with an error saying how to stop it;
* nothing answers: a new ``mlserver start`` is launched in the background (see
  :mod:`tunesmith.serving.launcher`); it outlives the kernel, so the next notebook reuses it, and
  ends with the Jupyter server that ran the kernel (closing Jupyter leaves no server behind);
* something else holds the port: an error says how to pick other ports.

Ports come from the environment (``HTTP_PORT``, ``GRPC_PORT``, ``METRICS_PORT``; default 8080,
8081, 8082), the same variables ``make serve`` reads, so a notebook and a terminal agree.

Stage 3 serves Seldon Core v2 manifests instead: ``gateway = start_gateway()`` runs ``tunesmith
gateway`` on ``manifests/`` and ``models/`` on the same ports (a notebook's MLServer on them is
stopped first, and ``start_server`` stops a notebook's gateway in turn), reuses one whose manifests
and model folders are unchanged, restarts it otherwise, and returns once every pipeline and model is ready.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from tunesmith import offline, paths
from tunesmith.serving.launcher import DEFAULT_SETTINGS, Server, ServerError, _stop_group, port_in_use, stop_pid_file
from tunesmith.serving.lifetime import END_WITH_PID, command_line
from tunesmith.serving.mlserver_main import settings_for_run
from tunesmith.workshop.stages import write_safe_settings

DEFAULT_PORTS = {"HTTP_PORT": 8080, "GRPC_PORT": 8081, "METRICS_PORT": 8082}
FINGERPRINT = "models.fingerprint"  # in the run folder: what the models looked like when loaded
OWNED = "started-by-notebook"  # in the run folder: a notebook started it, so a notebook may restart it

_started: Server | None = None  # the server this kernel launched, so stop_server() can reap it


def ports() -> dict[str, int]:
    """The HTTP, gRPC and metrics ports from the environment, e.g. ``{"http_port": 8080, ...}``."""
    return {name.lower(): int(os.environ.get(name, default)) for name, default in DEFAULT_PORTS.items()}


def fingerprint(models_dir: str | Path) -> str:
    """A digest of the file names, sizes and modification times under ``models_dir``.

    Cheap enough for gigabytes of weights (contents are not read). ``__pycache__`` is ignored:
    MLServer writes it when it imports a runtime, which is not a change by the learner.
    """
    root = Path(models_dir).resolve()
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if "__pycache__" in path.parts or not path.is_file():
            continue
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _alive(pid_file: Path) -> bool:
    """Is the server of this run folder running? (A pid alone could be a reused one.)"""
    try:
        return str(pid_file.parent) in command_line(int(pid_file.read_text()))
    except (FileNotFoundError, ValueError):
        return False


def _run_dir_on(http_port: int) -> Path | None:
    """The run folder (under ``.run/``) of a live server of this repository on ``http_port``."""
    for settings_file in sorted(paths.RUN.glob("*/settings.json")):
        run_dir = settings_file.parent
        try:
            port = json.loads(settings_file.read_text()).get("http_port")
        except (OSError, json.JSONDecodeError):
            continue
        if port == http_port and _alive(run_dir / "pid"):
            return run_dir
    return None


def _attach(run_dir: Path) -> Server:
    """A :class:`Server` handle for a process started elsewhere (another kernel, ``make serve``)."""
    return Server(
        models_dir=(run_dir / "models").resolve(),
        settings_file=run_dir / "settings.json",
        name=run_dir.name,
    )


def _remember(run_dir: Path, models_dir: Path) -> None:
    (run_dir / FINGERPRINT).write_text(fingerprint(models_dir))


def _changed(run_dir: Path, models_dir: Path) -> bool:
    """Did the model folders change since the server in ``run_dir`` loaded them?

    Servers started or reloaded here record a fingerprint; for others (``make serve``) any file
    newer than the server's pid file counts as a change.
    """
    recorded = run_dir / FINGERPRINT
    started = (run_dir / "pid").stat().st_mtime
    if recorded.exists() and recorded.stat().st_mtime >= started:  # not one left by an earlier run
        return recorded.read_text() != fingerprint(models_dir)
    return any(
        p.stat().st_mtime > started
        for p in [models_dir, *models_dir.rglob("*")]
        if "__pycache__" not in p.parts
    )


def model_names(server: Server) -> list[str]:
    """Names of the models the server has loaded, from the V2 repository index endpoint."""
    return sorted(m["name"] for m in server.models() if m.get("state") == "READY")


def _report_broken(server: Server) -> None:
    """Say which model folders did not load, and why: one broken runtime no longer stops the others,
    so without this a learner would only notice a model missing from the list above."""
    broken = [m for m in server.models() if m.get("state") != "READY"]
    for model in broken:
        print(f"NOT LOADED: {model['name']}: {model.get('reason') or model.get('state')}")
    if broken:
        print(f"Fix the folder, then run start_server() again (the log: {server.log_path})")


def _reload_all(server: Server, models_dir: Path) -> None:
    """Bring a server up to date with ``models_dir`` through the repository API, without a restart."""
    wanted = {}
    for settings_file in sorted(models_dir.rglob("model-settings.json")):
        name = json.loads(settings_file.read_text()).get("name") or settings_file.parent.name
        wanted[name] = settings_file
    for name in set(model_names(server)) - set(wanted):
        requests.post(f"{server.http_url}/v2/repository/models/{name}/unload", timeout=60)
    for name in sorted(wanted):
        load_model(server, name)


def start_server(models_dir: str | Path = "../models", *, restart: bool = False, timeout: float = 300.0) -> Server:
    """Return a running MLServer serving ``models_dir``, starting or restarting one if needed.

    Args:
        models_dir: folder of model folders; notebooks run in ``notebooks/``, so the default is the
            repository's ``models/``.
        restart: restart even if a suitable server is running (e.g. after editing a runtime
            outside the notebooks).
        timeout: seconds to wait for all models to load.

    Returns:
        A :class:`~tunesmith.serving.launcher.Server`; ``server.http_url`` and ``server.grpc_address`` say
        where it listens.

    Raises:
        ServerError: the port is taken by a process this repository did not start, or the server
            failed to start (the message ends with its log).
    """
    global _started
    models_dir = Path(models_dir).resolve()
    if not models_dir.is_dir():
        raise ServerError(f"no models folder at {models_dir}: run the notebooks in order, or `make stage-2`")
    port = ports()
    if _alive(_gateway_dir(port["http_port"]) / "pid"):  # stage 3's gateway holds the ports: back to a plain server
        stop_gateway()
    run_dir = _run_dir_on(port["http_port"])
    if run_dir is not None:
        owned = (run_dir / OWNED).exists()
        served = (run_dir / "models").resolve()
        if served != models_dir and not owned and not restart:
            raise ServerError(
                f"the server on port {port['http_port']} ({run_dir.name}) serves {served}, not {models_dir}. "
                f"Stop it (`make stop`, or start_server(restart=True)), or set HTTP_PORT, GRPC_PORT and "
                f"METRICS_PORT to other ports before starting Jupyter."
            )
        changed = served == models_dir and _changed(run_dir, models_dir)
        if not restart and changed and not owned:  # e.g. `make serve` in a terminal: keep it running
            server = _attach(run_dir)
            print(f"The model folders changed since the server from {run_dir.name} loaded them: reloading them.")
            _reload_all(server, models_dir)
            print(f"Reusing the server at {server.http_url} ({run_dir.name}); models: {', '.join(model_names(server)) or 'none'}")
            _report_broken(server)
            return server
        if not (restart or changed or served != models_dir):
            server = _attach(run_dir)
            server.wait_ready(timeout)
            print(f"Reusing the server at {server.http_url} ({run_dir.name}); models: {', '.join(model_names(server)) or 'none'}")
            _report_broken(server)
            return server
        reason = "you asked for it" if restart else "the model folders changed" if changed else f"it served {served}"
        print(f"Restarting the server on port {port['http_port']}: {reason}.")
        if _started is not None and _started.run_dir == run_dir:
            _started.stop()
        else:
            stop_pid_file(run_dir / "pid")
    elif port_in_use(port["http_port"]):
        raise ServerError(
            f"port {port['http_port']} is used by a program this workshop did not start. Stop it, or "
            f"choose other ports: set HTTP_PORT, GRPC_PORT and METRICS_PORT before starting Jupyter."
        )
    if not (models_dir / "settings.json").exists():  # keeps a plain `mlserver start` on it safe too
        write_safe_settings(models_dir)
    # The server outlives this kernel, so the next notebook reuses it, but not the Jupyter server (or
    # test run) that started the kernel: it ends when the kernel's parent process ends.
    server = Server(models_dir=models_dir, name=f"notebook-{port['http_port']}", bound_to_parent=False,
                    env={END_WITH_PID: str(os.getppid())}, **port)
    fingerprint_before = fingerprint(models_dir)  # a file written while loading counts as a change
    server.start(timeout=timeout)
    (server.run_dir / FINGERPRINT).write_text(fingerprint_before)
    (server.run_dir / OWNED).touch()
    _started = server
    print(f"Server ready at {server.http_url} (gRPC {server.grpc_address}); models: {', '.join(model_names(server)) or 'none'}")
    _report_broken(server)
    print(f"Log: {server.log_path}")
    return server


def stop_server() -> bool:
    """Stop the workshop server on ``HTTP_PORT`` (whoever started it); True if one was running."""
    global _started
    run_dir = _run_dir_on(ports()["http_port"])
    if run_dir is None:
        print("No workshop server is running on port", ports()["http_port"])
        return False
    if _started is not None and _started.run_dir == run_dir:
        _started.stop()
        _started = None
    else:
        stop_pid_file(run_dir / "pid")
    print(f"Stopped the server from {run_dir.name}")
    return True


def load_model(server: Server, name: str) -> dict:
    """(Re)load one model through the V2 repository API, without restarting the server.

    ``POST /v2/repository/models/<name>/load`` makes MLServer read ``<name>/model-settings.json``
    again (a new folder is picked up, a changed runtime is re-imported).

    Args:
        server: the running server.
        name: the model's name (its folder's ``model-settings.json`` ``name``).

    Returns:
        The model's metadata (``GET /v2/models/<name>``) once it is loaded.
    """
    response = requests.post(f"{server.http_url}/v2/repository/models/{name}/load", timeout=300)
    if response.status_code != 200:
        raise ServerError(f"loading {name!r} failed ({response.status_code}): {response.text}\n{server.log_tail(15)}")
    _remember(server.run_dir, server.models_dir)
    return requests.get(f"{server.http_url}/v2/models/{name}", timeout=10).json()


def copy_checkpoint(name: str, destination: str | Path) -> Path:
    """Copy a checkpoint shipped in ``checkpoints/<name>`` into a model folder (replacing it).

    A model folder must be self-contained (MLServer and Seldon Core load it as is), so the weights
    are copied rather than referenced.

    Args:
        name: the checkpoint folder's name, e.g. ``"tune-generator"``.
        destination: where to put it, e.g. ``"../models/tune-generator/weights"``.

    Returns:
        The destination folder.
    """
    source = paths.CHECKPOINTS / name
    if not (source.is_dir() and any(source.iterdir())):
        raise FileNotFoundError(
            f"no checkpoint at {source}: it is committed with the repository (restore it with "
            f"`git checkout -- checkpoints/{name}`, or rebuild it with `make train`)"
        )
    destination = Path(destination)
    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__", ".*"))
    size = sum(p.stat().st_size for p in destination.rglob("*") if p.is_file())
    shown = source.relative_to(paths.REPO) if source.is_relative_to(paths.REPO) else source
    print(f"Copied {shown} to {destination} ({size / 1e6:.1f} MB)")
    return destination


# -- stage 3: the Seldon gateway ----------------------------------------------------------------------
GATEWAY_STATE = "gateway.json"  # in the gateway's run folder: its ports, folders and their fingerprint
GATEWAY_SETTINGS = "mlserver-settings.json"  # MLServer's settings for this gateway; its path names the run folder

_gateway_process: subprocess.Popen | None = None  # the gateway this kernel launched, so stop_gateway() can reap it


@dataclass(frozen=True)
class Gateway:
    """A ``tunesmith gateway`` started by :func:`start_gateway`: where it listens, what it serves.

    Attributes:
        http_url: the REST address of every model and pipeline (``/v2/models/<m>/infer``,
            ``/v2/pipelines/<p>/infer``).
        grpc_address: ``host:port`` of the V2 gRPC service (route with ``seldon-model`` metadata).
        run_dir: ``.run/notebook-gateway-<port>/``: pid, ``gateway.log`` and the model repository.
        manifests_dir, models_dir: what it serves.
    """

    http_url: str
    grpc_address: str
    run_dir: Path
    manifests_dir: Path
    models_dir: Path

    @property
    def log_path(self) -> Path:
        return self.run_dir / "gateway.log"

    @property
    def mlserver_log_path(self) -> Path:
        return self.run_dir.with_name(self.run_dir.name + "-mlserver") / "mlserver.log"

    def pipelines(self) -> list[str]:
        """The pipelines the gateway serves (``GET /v2/pipelines``)."""
        reply = requests.get(f"{self.http_url}/v2/pipelines", timeout=10)
        reply.raise_for_status()
        return sorted(p["name"] for p in reply.json()["pipelines"])

    def models(self) -> list[str]:
        """The Models of the manifests it serves."""
        from tunesmith.gateway import manifests

        return sorted(manifests.load(self.manifests_dir).models)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the gateway's log and of its MLServer's log."""
        parts = []
        for path in (self.log_path, self.mlserver_log_path):
            try:
                text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            except FileNotFoundError:
                text = "(no log yet)"
            parts.append(f"--- {path}\n{text}")
        return "\n".join(parts)

    def stop(self) -> bool:
        """Stop this gateway (and its MLServer); True if it was running."""
        return _stop_gateway_in(self.run_dir)

    def reload(self) -> list[str]:
        """Apply the manifests folder's changed Experiments now, without a restart; what changed, one line each.

        The gateway also applies them by itself within a second of a change (``tunesmith experiments
        reload`` does the same from a terminal). Afterwards the folder counts as served, so the next
        :func:`start_gateway` reuses this gateway. A changed Model or Pipeline still needs
        :func:`start_gateway` (a restart); an invalid manifest raises with Seldon's message.
        """
        reply = requests.post(f"{self.http_url}/v2/experiments/reload", json={}, timeout=30)
        if reply.status_code != 200:
            raise ServerError(reply.json().get("error", reply.text))
        state_file = self.run_dir / GATEWAY_STATE
        if state_file.exists():
            state = json.loads(state_file.read_text())
            state["fingerprint"] = fingerprint(self.manifests_dir) + fingerprint(self.models_dir)
            state_file.write_text(json.dumps(state, indent=2) + "\n")
        changes = reply.json()["changes"]
        print("\n".join(changes) or "no change")
        return changes


def _gateway_dir(http_port: int) -> Path:
    return paths.RUN / f"notebook-gateway-{http_port}"


def _gateway_state(manifests_dir: Path, models_dir: Path, port: dict[str, int]) -> dict:
    """What a running gateway must match to be reused: folders, their contents, ports, the models URI."""
    from tunesmith.gateway.storage import models_uri

    return {
        "manifests": str(manifests_dir),
        "models": str(models_dir),
        "fingerprint": fingerprint(manifests_dir) + fingerprint(models_dir),
        "models_uri": models_uri(),
        **port,
    }


def _stop_gateway_in(run_dir: Path) -> bool:
    global _gateway_process
    pid_file = run_dir / "pid"
    if _gateway_process is not None and _gateway_process.poll() is not None:  # ended already (e.g. `make stop`): reaped
        _gateway_process = None
    if _gateway_process is not None and _alive(pid_file) and int(pid_file.read_text()) == _gateway_process.pid:
        _stop_group(_gateway_process.pid, 30, _gateway_process)  # reaped, so no zombie keeps the pid
        _gateway_process = None
        pid_file.unlink(missing_ok=True)
        return True
    return stop_pid_file(pid_file, 30)


def _wait_for_gateway(gateway: Gateway, process: subprocess.Popen | None, names: dict[str, list[str]],
                      timeout: float) -> None:
    """Until every pipeline and every model answers ready; raise with the logs if not.

    Models too: a pipeline is ready when its steps are, and a Model in no pipeline may still be loading.
    """
    urls = [f"{gateway.http_url}/v2/pipelines/{p}/ready" for p in names["pipelines"]] + [
        f"{gateway.http_url}/v2/models/{m}/ready" for m in names["models"]]
    deadline = time.monotonic() + timeout
    waiting = list(urls)
    while waiting and time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerError(f"the gateway exited with code {process.returncode}:\n{gateway.log_tail()}")
        try:
            waiting = [url for url in waiting if requests.get(url, timeout=2).status_code != 200]
        except requests.RequestException:
            pass
        if waiting:
            time.sleep(0.5)
    if waiting:
        raise ServerError(f"not ready after {timeout:.0f} s: {', '.join(u.split('/')[-2] for u in waiting)}\n"
                          f"{gateway.log_tail()}")


def start_gateway(manifests: str | Path = "../manifests", models: str | Path = "../models", *,
                  restart: bool = False, timeout: float = 300.0) -> Gateway:
    """Return a running Seldon gateway on ``manifests`` and ``models``, starting or restarting one if needed.

    The gateway (``tunesmith gateway``, see :mod:`tunesmith.gateway.server`) listens on
    ``HTTP_PORT`` and ``GRPC_PORT``, with its MLServer's metrics on ``METRICS_PORT``. A workshop
    MLServer on those ports (a notebook's, or ``make serve``) is stopped first. A gateway this
    helper started earlier is reused when its manifests and model folders are unchanged, and
    restarted otherwise. The manifests are checked before anything is stopped, so a broken one
    raises its :class:`~tunesmith.gateway.manifests.ManifestError` and the running gateway keeps
    serving. Like a notebook's server, the gateway outlives the kernel and ends with the Jupyter
    server; ``tunesmith stop`` (``make stop``) and :func:`stop_gateway` end it too.

    Args:
        manifests: folder of Seldon Core v2 manifests; notebooks run in ``notebooks/``.
        models: the folder that ``storageUri`` ``<MODELS_URI>/<folder>`` stands for.
        restart: restart even if a suitable gateway is running.
        timeout: seconds to wait until every pipeline and every model is ready.

    Raises:
        ManifestError: a manifest that Seldon (or the local gateway) refuses.
        ServerError: the port is taken by a program this workshop did not start, or the gateway
            did not become ready (the message ends with its log).
    """
    global _gateway_process
    from tunesmith.gateway import manifests as seldon
    from tunesmith.gateway import storage

    manifests_dir, models_dir = Path(manifests).resolve(), Path(models).resolve()
    if not manifests_dir.is_dir():
        raise ServerError(f"no manifests folder at {manifests_dir}: run the stage-3 notebooks in order (3.1 writes it)")
    loaded = seldon.load(manifests_dir)
    for model in loaded.models.values():  # every storageUri must name a folder, before anything is stopped
        storage.storage_folder(model, loaded, models_dir=models_dir)
    names = {"models": sorted(loaded.models), "pipelines": sorted(loaded.pipelines)}
    port = ports()
    run_dir = _gateway_dir(port["http_port"])
    state = _gateway_state(manifests_dir, models_dir, port)
    gateway = Gateway(f"http://127.0.0.1:{port['http_port']}", f"127.0.0.1:{port['grpc_port']}", run_dir,
                      manifests_dir, models_dir)
    if _alive(run_dir / "pid"):
        try:
            running = json.loads((run_dir / GATEWAY_STATE).read_text())
        except (OSError, ValueError):
            running = {}
        if running == state and not restart:
            _wait_for_gateway(gateway, None, names, timeout)
            print(f"Reusing the gateway at {gateway.http_url} (gRPC {gateway.grpc_address})")
            _describe(names)
            return gateway
        print(f"Restarting the gateway on port {port['http_port']}: "
              + ("you asked for it." if restart else "its manifests or models changed."))
        _stop_gateway_in(run_dir)
    if _run_dir_on(port["http_port"]) is not None:  # a notebook's MLServer or `make serve` on the ports
        stop_server()
    if port_in_use(port["http_port"]):
        raise ServerError(
            f"port {port['http_port']} is used by a program no notebook started (`make gateway` or `make up` in a "
            f"terminal?). Stop it, or choose other ports: set HTTP_PORT, GRPC_PORT and METRICS_PORT before "
            f"starting Jupyter."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / GATEWAY_STATE).unlink(missing_ok=True)  # written again once the new gateway is ready
    # MLServer's settings, written into the run folder: its path on the command line is what lets
    # `tunesmith stop` check the pid before it signals it (the repository stays under .run/<name>/).
    settings = settings_for_run(json.loads(DEFAULT_SETTINGS.read_text()), DEFAULT_SETTINGS)
    (run_dir / GATEWAY_SETTINGS).write_text(json.dumps(settings, indent=2) + "\n")
    command = [
        sys.executable, "-m", "tunesmith", "gateway", "--manifests", str(manifests_dir), "--models", str(models_dir),
        "--name", run_dir.name, "--settings", str(run_dir / GATEWAY_SETTINGS), "--host", "127.0.0.1",
        "--http-port", str(port["http_port"]), "--grpc-port", str(port["grpc_port"]),
        "--metrics-port", str(port["metrics_port"]),
    ]
    # It outlives this kernel (the next notebook reuses it) but not the Jupyter server that started the kernel.
    env = offline.enforce({**os.environ, END_WITH_PID: str(os.getppid())})
    with open(gateway.log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    (run_dir / "pid").write_text(str(process.pid))
    _gateway_process = process
    try:
        _wait_for_gateway(gateway, process, names, timeout)
    except ServerError:
        _stop_gateway_in(run_dir)
        raise
    (run_dir / GATEWAY_STATE).write_text(json.dumps(state, indent=2) + "\n")  # fingerprinted before the start
    print(f"Gateway ready at {gateway.http_url} (gRPC {gateway.grpc_address})")
    _describe(names)
    print(f"Log: {gateway.log_path}")
    return gateway


def _describe(names: dict[str, list[str]]) -> None:
    print(f"  models:    {', '.join(names['models']) or 'none'}")
    print(f"  pipelines: {', '.join(names['pipelines']) or 'none'}")


def stop_gateway() -> bool:
    """Stop the notebook gateway on ``HTTP_PORT`` (and its MLServer); True if one was running."""
    run_dir = _gateway_dir(ports()["http_port"])
    if not _stop_gateway_in(run_dir):
        print("No notebook gateway is running on port", ports()["http_port"])
        return False
    print(f"Stopped the gateway from {run_dir.name}")
    return True
