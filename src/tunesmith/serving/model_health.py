"""Patches to MLServer 1.7.1 that keep a server serving what it can when a model or a worker fails.

Installed in MLServer's main process by :mod:`tunesmith.serving.mlserver_main`. Paths ``ml/...``
are files of the installed ``mlserver`` 1.7.1 package.

Models that fail (finding 2 of the Hardening issue):

* One model whose ``load()`` raises, or whose runtime does not import, stops the whole server:
  ``MLServer.start`` loads every model in one ``asyncio.gather`` and calls ``self.stop()`` on the
  first error (``ml/server.py:124-135``; the process even exits with code 0). :func:`start` loads
  them all, records each failure and serves the others.
* A failed model vanishes from the registry (``ml/registry.py:170-176``, issue #869) and the
  repository index reports it without a reason (``ml/handlers/model_repository.py:36-50``
  always sets ``reason: ""``). A folder whose ``model-settings.json`` does not parse is skipped
  with a traceback in the log and is missing from the index altogether
  (``ml/repository/repository.py:45-52``). The index now lists both as ``UNAVAILABLE`` with the
  reason, per version (and over gRPC with the state spelt ``READY``, not ``State.READY``).

Workers that die (finding 4):

* MLServer restarts a dead inference worker (``ml/parallel/registry.py:65-81``,
  ``ml/parallel/pool.py:115-164``), but until the new one has loaded every model, the round robin
  over workers is empty and ``next()`` on it raises ``StopIteration`` inside a coroutine: a bare
  500 "coroutine raised StopIteration" (``ml/parallel/dispatcher.py:217-223``). Requests in flight
  on the dead worker fail with ``WorkerStop``, a 500 (``ml/parallel/dispatcher.py:113-129``).
  Readiness stays 200 all along (issue #707). Now a request waits for a worker for up to
  :data:`WORKER_WAIT_SECONDS` and then gets a 503 naming the cause; a request whose worker died
  under it is sent once more to another (or the restarted) worker; and ``/v2/health/ready`` and
  ``/v2/models/<name>/ready`` say not-ready while a model has no worker that can serve it.
* Every worker writes its answers into one ``multiprocessing.Queue`` shared by the pool
  (``ml/parallel/pool.py:93-96``). A worker killed while it writes one (a synthesizer answer is a
  WAV of hundreds of kilobytes, so the window is wide under load) dies holding the queue's write
  lock and leaves half a message in its pipe: the restarted worker blocks forever on its first
  answer (its "loaded" message) and never joins the rotation, so every request waits and gets the
  503. Each worker now has a queue of its own, read by a thread of its own
  (:func:`spawn_worker`), and a dead worker's queue is dropped with it.
* One ``waitpid`` per ``SIGCHLD`` (``ml/parallel/registry.py:72-81``): two workers dying at once
  can merge into one signal, and only one of them would be restarted. All dead children are
  reaped now, and a failing restart is logged instead of lost in a fire-and-forget task.
"""

import asyncio
import os
import queue
import threading
from itertools import cycle
from multiprocessing import Queue
from typing import Optional

from mlserver.errors import MLServerError
from mlserver.grpc.converters import RepositoryIndexResponseItemConverter
from mlserver.handlers.dataplane import DataPlane
from mlserver.handlers.model_repository import ModelRepositoryHandlers
from mlserver.logging import logger
from mlserver.parallel.dispatcher import Dispatcher
from mlserver.parallel.errors import WorkerError, WorkerStop
from mlserver.parallel import pool as pool_module
from mlserver.parallel.messages import ModelRequestMessage, ModelResponseMessage
from mlserver.parallel.registry import InferencePoolRegistry
from mlserver.parallel.worker import Worker
from mlserver.registry import MultiModelRegistry
from mlserver.repository import repository as repository_module
from mlserver.repository.repository import SchemalessModelRepository
from mlserver.server import MLServer
from mlserver.settings import ModelSettings
from mlserver.types import RepositoryIndexRequest, RepositoryIndexResponse, RepositoryIndexResponseItem, State
from mlserver.utils import generate_uuid

from tunesmith.serving import logs

# -- models that fail to load ---------------------------------------------------------------------
LOAD_FAILURES: dict[tuple[str, Optional[str]], str] = {}
"""(model name, version) -> why its last load failed; cleared when it loads."""
BROKEN_SETTINGS: dict[str, str] = {}
"""model-settings.json path -> why it cannot be read; refreshed on every repository scan."""


class BrokenModelSettings(MLServerError):
    """A model folder whose ``model-settings.json`` cannot be read (422, as MLServer's InvalidModelURI).

    The 4xx status makes :class:`tunesmith.serving.logs.ClientErrorsAsWarnings` log it as one line:
    MLServer logs it with a traceback on every repository scan, that is on every index request.
    """

    def __init__(self, reason: str):
        super().__init__(reason, status_code=422)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, WorkerError):  # already "module.Class: message"
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


_registry_load = MultiModelRegistry.load


async def registry_load(self: MultiModelRegistry, model_settings: ModelSettings):
    """Every load, at start-up or through the repository API, records how it ended."""
    key = (model_settings.name, model_settings.version)
    try:
        model = await _registry_load(self, model_settings)
    except Exception as exc:
        LOAD_FAILURES[key] = f"load failed: {_reason(exc)}"
        raise
    LOAD_FAILURES.pop(key, None)
    return model


async def start(self: MLServer, models_settings: list = []) -> None:  # noqa: B006 - MLServer's signature
    """``MLServer.start`` (``ml/server.py:114-137``) without "one model fails, the server stops"."""
    servers = [self._rest_server.start(), self._grpc_server.start()]
    if self._metrics_server:
        servers.append(self._metrics_server.start())
    if self._kafka_server:
        servers.append(self._kafka_server.start())
    servers_task = asyncio.gather(*servers)
    results = await asyncio.gather(
        *[self._model_registry.load(settings) for settings in models_settings], return_exceptions=True
    )
    failed = [(s, r) for s, r in zip(models_settings, results) if isinstance(r, BaseException)]
    for settings, error in failed:
        label = settings.name + (f" version {settings.version}" if settings.version else "")
        logger.error("model %r failed to load and is not served: %s", label, _reason(error))
    logger.info("serving %d model(s); %d failed to load", len(models_settings) - len(failed), len(failed))
    logs.startup_finished()
    await servers_task


_load_model_settings = repository_module.load_model_settings


def load_model_settings(path: str) -> ModelSettings:
    """``load_model_settings`` as ``ml/repository/repository.py:12`` imports it, remembering failures."""
    try:
        settings = _load_model_settings(path)
    except Exception as exc:
        reason = f"invalid model-settings.json: {exc}".replace("\n", " ")
        BROKEN_SETTINGS[path] = reason
        raise BrokenModelSettings(reason) from None
    BROKEN_SETTINGS.pop(path, None)
    return settings


_repository_list = SchemalessModelRepository.list


async def repository_list(self: SchemalessModelRepository) -> list:
    """Each scan starts afresh, so a folder that was fixed or removed leaves the index."""
    root = os.path.abspath(self._root) if self._root else ""
    for path in [p for p in BROKEN_SETTINGS if p.startswith(root + os.sep)]:
        del BROKEN_SETTINGS[path]
    return await _repository_list(self)


async def to_item(self: ModelRepositoryHandlers, model_settings: ModelSettings) -> RepositoryIndexResponseItem:
    """The state of this *version* (MLServer asks for the default version, ``ml/handlers/model_repository.py:52-60``),
    with the reason of its last failed load."""
    name, version = model_settings.name, model_settings.version
    item = RepositoryIndexResponseItem(name=name, version=version, state=State.UNKNOWN, reason="")
    try:
        model = await self._model_registry.get_model(name, version)
        item.state = State.READY if model.ready else State.UNKNOWN
    except MLServerError:
        item.state = State.UNAVAILABLE
    if item.state != State.READY and (name, version) in LOAD_FAILURES:
        item.state, item.reason = State.UNAVAILABLE, LOAD_FAILURES[(name, version)]
    return item


_index = ModelRepositoryHandlers.index


async def index(self: ModelRepositoryHandlers, payload: RepositoryIndexRequest) -> RepositoryIndexResponse:
    """The index, plus one ``UNAVAILABLE`` entry (named after its folder) per unreadable settings file."""
    response = await _index(self, payload)
    if not payload.ready:
        for path, reason in sorted(BROKEN_SETTINGS.items()):
            folder = os.path.basename(os.path.dirname(path))
            response.root.append(RepositoryIndexResponseItem(name=folder, state=State.UNAVAILABLE, reason=reason))
    return response


_index_item_from_types = RepositoryIndexResponseItemConverter.from_types


def index_item_from_types(cls, type_object: RepositoryIndexResponseItem, use_model_repository: bool = False):
    """gRPC ``RepositoryIndex`` states as the V2 protocol spells them (``READY``): MLServer sends
    ``str()`` of its enum, ``State.READY`` (``ml/grpc/converters.py:500-510``)."""
    message = _index_item_from_types(type_object, use_model_repository)
    message.state = State(type_object.state).value
    return message


# -- workers that die -----------------------------------------------------------------------------
WORKER_WAIT_SECONDS = float(os.environ.get("TUNESMITH_WORKER_WAIT_SECONDS", "30"))
"""How long a request waits for an inference worker while none is in rotation (one is restarting)."""


class NoWorkerAvailable(MLServerError):
    def __init__(self, waited: float, cause: str):
        super().__init__(
            f"no inference worker could take the request within {waited:g} s ({cause}); retry later",
            status_code=503,
        )


def _state(dispatcher: Dispatcher) -> dict:
    """Per-dispatcher bookkeeping: workers still loading models, and an event set while any serves."""
    state = dispatcher.__dict__.get("_tunesmith")
    if state is None:
        state = dispatcher.__dict__["_tunesmith"] = {
            "starting": set(), "serving": 0, "event": asyncio.Event(), "cause": "none has started yet",
            "readers": {},
        }
    return state


def reset_round_robin(self: Dispatcher):
    """Rotate only over workers that have loaded the models.

    MLServer adds a restarted worker to ``_workers`` before it has loaded anything
    (``ml/parallel/dispatcher.py:148-158``); any other reset of the rotation in that time (another
    worker dying) would hand it requests for models it does not have yet.
    """
    state = _state(self)
    serving = [pid for pid in self._workers if pid not in state["starting"]]
    self._workers_round_robin = cycle(serving)
    state["serving"] = len(serving)
    if serving:
        state["event"].set()
    else:
        state["event"].clear()
    return self._workers_round_robin


_on_worker_start, _on_worker_ready, _on_worker_stop = (
    Dispatcher.on_worker_start, Dispatcher.on_worker_ready, Dispatcher.on_worker_stop,
)


async def on_worker_start(self: Dispatcher, worker: Worker) -> None:
    _state(self)["starting"].add(worker.pid)
    _start_reader(self, worker)
    await _on_worker_start(self, worker)


def on_worker_ready(self: Dispatcher, worker: Worker) -> None:
    _state(self)["starting"].discard(worker.pid)
    _on_worker_ready(self, worker)


def on_worker_stop(self: Dispatcher, worker: Worker, exit_code: int) -> None:
    state = _state(self)
    state["starting"].discard(worker.pid)
    reader = state["readers"].pop(worker.pid, None)
    if reader is not None:
        reader.set()
    state["cause"] = f"worker {worker.pid} stopped with exit code {exit_code} and is being restarted"
    _on_worker_stop(self, worker, exit_code)


_spawn_worker = pool_module._spawn_worker


def spawn_worker(settings, responses: Queue, env) -> Worker:
    """``ml/parallel/pool.py: _spawn_worker`` with a response queue of the worker's own.

    The pool's shared queue (``responses``) is left unused; the dispatcher reads the worker's queue
    from a thread started in :func:`on_worker_start` or :func:`dispatcher_start`.
    """
    own: Queue = Queue()
    worker = _spawn_worker(settings, own, env)
    worker.__dict__["_tunesmith_responses"] = own
    return worker


def _read_responses(dispatcher: Dispatcher, worker: Worker, stop: threading.Event,
                    loop: asyncio.AbstractEventLoop) -> None:
    """Hand each answer of one worker to the event loop until the worker stops.

    If the worker died halfway through writing an answer, ``get`` blocks on the rest for good; the
    thread is a daemon and holds nothing anyone else needs.
    """
    responses: Queue = worker.__dict__["_tunesmith_responses"]
    while not stop.is_set():
        try:
            message = responses.get(timeout=1.0)
        except queue.Empty:
            continue
        except (EOFError, OSError, ValueError):  # the queue was closed
            return
        if message is not None and not loop.is_closed():
            loop.call_soon_threadsafe(_resolve, dispatcher, message)


def _resolve(dispatcher: Dispatcher, message: ModelResponseMessage) -> None:
    """An answer whose request already gave up (its worker was declared dead) has no one to go to."""
    if message.id in dispatcher._async_responses._futures:
        dispatcher._async_responses.resolve(message)


def _start_reader(dispatcher: Dispatcher, worker: Worker) -> None:
    if "_tunesmith_responses" not in worker.__dict__:
        return
    readers = _state(dispatcher)["readers"]
    if worker.pid in readers:
        return
    stop = threading.Event()
    readers[worker.pid] = stop
    threading.Thread(target=_read_responses, args=(dispatcher, worker, stop, asyncio.get_running_loop()),
                     name=f"responses-of-worker-{worker.pid}", daemon=True).start()


_dispatcher_start, _dispatcher_stop = Dispatcher.start, Dispatcher.stop


def dispatcher_start(self: Dispatcher) -> None:
    _dispatcher_start(self)
    for worker in list(self._workers.values()):
        _start_reader(self, worker)


async def dispatcher_stop(self: Dispatcher) -> None:
    for stop in _state(self)["readers"].values():
        stop.set()
    await _dispatcher_stop(self)


def serving_workers(dispatcher: Dispatcher) -> int:
    """How many workers of this dispatcher can take a request now."""
    return _state(dispatcher)["serving"]


async def _next_worker(self: Dispatcher, deadline: float) -> Worker:
    state = _state(self)
    loop = asyncio.get_running_loop()
    while True:
        if state["serving"]:
            try:
                worker, _ = self._get_worker()
                return worker
            except (StopIteration, KeyError):  # rotation emptied in between
                pass
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise NoWorkerAvailable(WORKER_WAIT_SECONDS, state["cause"])
        try:
            await asyncio.wait_for(state["event"].wait(), remaining)
        except asyncio.TimeoutError:
            raise NoWorkerAvailable(WORKER_WAIT_SECONDS, state["cause"]) from None


async def dispatch_request(self: Dispatcher, request_message: ModelRequestMessage) -> ModelResponseMessage:
    """``Dispatcher.dispatch_request`` (``ml/parallel/dispatcher.py:209-215``) that waits for a worker
    and sends a request whose worker died under it once more.

    Sending it again is safe for this workshop's models (an inference request changes nothing on the
    server) and bounded: a request that two workers die on gets the 503, so a request that itself
    kills workers cannot take down more than two.
    """
    loop = asyncio.get_running_loop()
    for attempt in (1, 2):
        worker = await _next_worker(self, loop.time() + WORKER_WAIT_SECONDS)
        worker.send_request(request_message)
        try:
            return await self._async_responses.schedule_and_wait(request_message, worker)
        except WorkerStop as stop:
            if attempt == 2:
                raise
            logger.warning("%s; sending request %s of model %r to another worker",
                           str(stop).rstrip("."), request_message.id, request_message.model_name)
            request_message = request_message.model_copy(update={"id": generate_uuid()})
    raise AssertionError("unreachable")


_worker_stop_init = WorkerStop.__init__


def worker_stop_init(self: WorkerStop, exit_code: int) -> None:
    """A dead worker is a temporary condition of the server, not a bug of the request: 503, not 500."""
    _worker_stop_init(self, exit_code)
    self.status_code = 503


async def handle_worker_stop(self: InferencePoolRegistry, signum, frame) -> None:
    """Reap every dead child per ``SIGCHLD`` (signals merge), and log a restart that fails."""
    while True:
        try:
            pid, exit_code = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if exit_code == 0:
            continue
        try:
            await self._default_pool.on_worker_stop(pid, exit_code)
            await asyncio.gather(*[pool.on_worker_stop(pid, exit_code) for pool in self._pools.values()])
        except Exception:  # noqa: BLE001 - MLServer runs this in a task nobody awaits
            logger.exception("restarting the inference worker after pid %d stopped failed", pid)


def _can_serve(model) -> bool:
    dispatcher = getattr(model, "_dispatcher", None)
    return dispatcher is None or serving_workers(dispatcher) > 0


_ready, _model_ready = DataPlane.ready, DataPlane.model_ready


async def ready(self: DataPlane) -> bool:
    """``/v2/health/ready``: every loaded model is ready *and has a worker that can serve it*.

    MLServer 1.7.1 looks only at the models' ``ready`` flags (``ml/handlers/dataplane.py:61-63``).
    Models that failed to load are not counted (they are not loaded); the repository index lists them.
    """
    if not await _ready(self):
        return False
    return all(_can_serve(model) for model in await self._model_registry.get_models())


async def model_ready(self: DataPlane, name: str, version: Optional[str] = None) -> bool:
    if not await _model_ready(self, name, version):
        return False
    return _can_serve(await self._model_registry.get_model(name, version))


def install() -> None:
    """Put every patch of this module in place (idempotent; main process, before ``MLServer()``)."""
    if getattr(MLServer, "_tunesmith_model_health", False):
        return
    MLServer.start = start
    MultiModelRegistry.load = registry_load
    repository_module.load_model_settings = load_model_settings
    SchemalessModelRepository.list = repository_list
    ModelRepositoryHandlers._to_item = to_item
    ModelRepositoryHandlers.index = index
    RepositoryIndexResponseItemConverter.from_types = classmethod(index_item_from_types)
    Dispatcher._reset_round_robin = reset_round_robin
    Dispatcher.on_worker_start = on_worker_start
    Dispatcher.on_worker_ready = on_worker_ready
    Dispatcher.on_worker_stop = on_worker_stop
    Dispatcher.dispatch_request = dispatch_request
    Dispatcher.start = dispatcher_start
    Dispatcher.stop = dispatcher_stop
    pool_module._spawn_worker = spawn_worker
    WorkerStop.__init__ = worker_stop_init
    InferencePoolRegistry._handle_worker_stop = handle_worker_stop
    DataPlane.ready = ready
    DataPlane.model_ready = model_ready
    MLServer._tunesmith_model_health = True
