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
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import requests

from tunesmith import paths
from tunesmith.serving.launcher import Server, ServerError, port_in_use, stop_pid_file
from tunesmith.serving.lifetime import END_WITH_PID, command_line
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
    response = requests.post(server.http_url + "/v2/repository/index", json={}, timeout=10)
    response.raise_for_status()
    return sorted(m["name"] for m in response.json() if m.get("state") == "READY")


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
