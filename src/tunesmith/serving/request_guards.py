"""Patches to MLServer 1.7.1 that refuse bad requests with a 4xx instead of a 5xx or a silent guess.

Installed in MLServer's main process by :mod:`tunesmith.serving.mlserver_main` (see there for why a
wrapper entry point and not a runtime module). Everything here runs before a request reaches an
inference worker, so it protects every runtime alike. Paths ``ml/...`` are files of the installed
``mlserver`` 1.7.1 package.

* :func:`check_request` (on ``DataPlane._prepare_payload``): inputs and requested outputs the
  model does not declare, values that do not fit their datatype, ``shape`` against the data,
  ``content_type`` ``base64`` data that does not decode. MLServer checks none of these.
* :func:`safe_inject_raw` (``ml/grpc/converters.py:168``): gRPC ``raw_input_contents`` that do not
  match the inputs' shape and datatype, instead of ``struct.error`` / ``IndexError`` as INTERNAL.
* :func:`infer_stream` / :func:`data_plane_infer_stream` (``ml/rest/endpoints.py:111-133``,
  ``ml/handlers/dataplane.py:119-140``): errors of a streaming request reach the client as 4xx
  before the stream starts, instead of a 500 from a response that had already begun.
* :class:`RequestGuard` (around ``ml/rest/app.py:create_app``): request-body size limit, no
  compressed bodies, no browser cross-site requests, JSON-only POST bodies.
"""

import asyncio
import base64
import binascii
import json
import logging
import math
import os
import struct
from glob import glob
from typing import Any, AsyncIterator, Iterable, Optional

from fastapi.requests import Request
from fastapi.responses import StreamingResponse
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware

import mlserver.grpc.converters as grpc_converters
import mlserver.grpc.utils as grpc_utils
import mlserver.raw as mlserver_raw
import mlserver.rest.errors as rest_errors
import mlserver.rest.server as rest_server
from mlserver.codecs.base import find_input_codec, find_request_codec
from mlserver.errors import InferenceError, MLServerError
from mlserver.handlers.dataplane import DataPlane
from mlserver.logging import logger
from mlserver.model import MLModel
from mlserver.rest.endpoints import Endpoints
from mlserver.rest.responses import ServerSentEvent
from mlserver.settings import ModelSettings, Settings
from mlserver.types import InferenceRequest, InferenceResponse, RequestInput
from mlserver.utils import insert_headers


class BadRequest(MLServerError):
    """What the caller sent cannot be served as it is (HTTP 400, gRPC INVALID_ARGUMENT)."""

    def __init__(self, message: str):
        super().__init__(message, status_code=400)


# -- 6. the request against the model's declared inputs and outputs ------------------------------
INTEGER_RANGES = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
}
FLOAT_TYPES = {"FP16", "FP32", "FP64"}
DATATYPES = set(INTEGER_RANGES) | FLOAT_TYPES | {"BOOL", "BYTES"}


def flatten(data: Any) -> list:
    """The elements of a V2 tensor's ``data``, which may be nested row by row or a bare string."""
    root = getattr(data, "root", data)
    if root is None:
        return []
    if isinstance(root, (str, bytes, bytearray)) or not isinstance(root, Iterable):
        return [root]
    out: list = []
    stack = [iter(root)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, (list, tuple)) or getattr(item, "ndim", 0) > 0:  # a row, also a numpy one
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _check_values(name: str, datatype: str, values: list) -> None:
    """Every element must be something its datatype can hold (MLServer's codecs would crash or truncate).

    MLServer 1.7.1 accepts any JSON value in ``data``; a runtime that decodes ``[2**70]`` as INT64
    with numpy gets an ``OverflowError`` (a 500), and ``3.7`` sent as INT32 becomes ``3``.
    """
    if datatype == "BYTES":
        for i, value in enumerate(values):
            if not isinstance(value, (str, bytes, bytearray)):
                raise BadRequest(f"input {name!r} is BYTES but element {i} is {value!r}; send text or bytes")
        return
    for i, value in enumerate(values):
        is_number = isinstance(value, (int, float)) or getattr(value, "ndim", None) == 0  # also numpy scalars
        if not is_number:
            raise BadRequest(f"input {name!r} is {datatype} but element {i} is {value!r}, not a number")
    if datatype in INTEGER_RANGES:
        low, high = INTEGER_RANGES[datatype]
        for i, value in enumerate(values):
            if isinstance(value, bool):
                raise BadRequest(f"input {name!r} is {datatype} but element {i} is {value!r}, not a whole number")
            if isinstance(value, float) and not value.is_integer():
                raise BadRequest(f"input {name!r} is {datatype} but element {i} is {value!r}, not a whole number")
            if not low <= value <= high:
                raise BadRequest(f"input {name!r}: {value!r} does not fit {datatype} (range {low}..{high})")


def check_input(inp: RequestInput, declared: Optional[Any]) -> None:
    """Datatype, shape against data, values against datatype, and ``content_type`` of one input."""
    name, datatype = inp.name, str(getattr(inp.datatype, "value", inp.datatype))
    if datatype not in DATATYPES:
        known = ", ".join(sorted(DATATYPES))
        raise BadRequest(f"input {name!r}: unknown datatype {datatype!r}; V2 datatypes are {known}")
    shape = list(inp.shape or [])
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise BadRequest(f"input {name!r}: shape {shape} must be whole numbers >= 0")
    values = flatten(inp.data)
    expected = math.prod(shape)
    if expected != len(values):
        raise BadRequest(f"input {name!r}: shape {shape} says {expected} element(s) but {len(values)} were sent")
    _check_values(name, datatype, values)

    content_type = inp.parameters.content_type if inp.parameters is not None else None
    if content_type is None and declared is not None and declared.parameters is not None:
        content_type = declared.parameters.content_type
    if content_type is None:
        return
    if find_input_codec(content_type) is None and find_request_codec(content_type) is None:
        raise BadRequest(f"input {name!r}: unknown content_type {content_type!r}")
    if content_type == "base64":
        for i, value in enumerate(values):
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise BadRequest(f"input {name!r}[{i}] is not valid base64 (its content_type is base64)") from None
    elif content_type == "str":
        for i, value in enumerate(values):
            if isinstance(value, (bytes, bytearray)):
                try:
                    bytes(value).decode("utf-8")
                except UnicodeDecodeError:
                    raise BadRequest(f"input {name!r}[{i}] is not UTF-8 text (its content_type is str)") from None


def repeatable(declared: Optional[Any]) -> bool:
    """Whether a declared input may come more than once: its ``parameters`` say ``"repeatable": true``.

    A Seldon pipeline's join keeps tensors of the same name (the ``abc`` of two generators, both
    renamed ``candidates`` by a ``tensorMap``), so a model fed by a join declares that input
    repeatable and reads every tensor of that name; for any other input a repeat is refused, since
    a runtime would read the first and silently drop the rest.
    """
    parameters = getattr(declared, "parameters", None)
    return bool(parameters is not None and (parameters.model_extra or {}).get("repeatable") is True)


def check_request(settings: ModelSettings, request: InferenceRequest) -> None:
    """Refuse what a model would otherwise ignore or crash on, naming the input or output.

    Unknown inputs and requested outputs are checked against the ``inputs`` / ``outputs`` declared
    in the model's ``model-settings.json``; a model that declares none is not checked for them.
    MLServer 1.7.1 accepts both silently: a misspelt optional input (``tempi`` for ``tempo``) is
    dropped without a word, and ``outputs`` is never looked at.
    """
    declared_inputs = {t.name: t for t in settings.inputs or []}
    names = [inp.name for inp in request.inputs]
    repeated = sorted({n for n in names if names.count(n) > 1 and not repeatable(declared_inputs.get(n))})
    if repeated:
        raise BadRequest(f"input(s) {repeated} sent more than once")
    if declared_inputs:
        unknown = [n for n in names if n not in declared_inputs]
        if unknown:
            raise BadRequest(
                f"unknown input(s) {unknown} for model {settings.name!r}; it takes {sorted(declared_inputs)}"
            )
    for inp in request.inputs:
        check_input(inp, declared_inputs.get(inp.name))
    declared_outputs = {t.name for t in settings.outputs or []}
    if declared_outputs and request.outputs:
        unknown = [o.name for o in request.outputs if o.name not in declared_outputs]
        if unknown:
            raise BadRequest(
                f"unknown output(s) {unknown} requested from model {settings.name!r}; "
                f"it returns {sorted(declared_outputs)}"
            )


_prepare_payload = DataPlane._prepare_payload


def prepare_payload(self: DataPlane, payload: InferenceRequest, model: MLModel) -> InferenceRequest:
    """``DataPlane._prepare_payload`` (``ml/handlers/dataplane.py:142-149``) runs for every request of
    ``infer`` and ``infer_stream``, REST, gRPC and Kafka, after the model was found and before
    adaptive batching or a worker sees the request: the one place to check it."""
    check_request(model.settings, payload)
    return _prepare_payload(self, payload, model)


# -- 2. gRPC raw_input_contents -------------------------------------------------------------------
_inject_raw = grpc_converters.inject_raw
RAW_ITEM_BYTES = {datatype.value: struct.calcsize(code) for datatype, code in mlserver_raw._DatatypeToCtype.items()}


def _count_length_prefixed(name: str, raw: bytes) -> int:
    offset = count = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InferenceError(f"input {name!r}: raw BYTES content ends inside a 4-byte length prefix")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4 + size
        if offset > len(raw):
            raise InferenceError(f"input {name!r}: raw BYTES element of {size} bytes runs past the end of the content")
        count += 1
    return count


def safe_inject_raw(elems: list, raw_contents: list) -> list:
    """Check ``raw_input_contents`` against the inputs before MLServer unpacks them.

    ``ml/raw.py:105-118`` pairs raw entries with the inputs that have no ``contents`` and unpacks
    them with ``struct`` unchecked (``ml/raw.py:40-56,81-95``): a short buffer, a missing entry, an
    unknown datatype or a huge shape raise ``struct.error``, ``IndexError`` or ``ValueError``,
    which ``ml/grpc/utils.py:48-50`` answers with INTERNAL. Here they are an ``InferenceError``
    (400, gRPC INVALID_ARGUMENT) naming the input.
    """
    empty = [e for e in elems if not e.data]
    if len(raw_contents) != len(empty):
        raise InferenceError(
            f"raw_input_contents has {len(raw_contents)} entries, but {len(empty)} inputs "
            f"({', '.join(repr(e.name) for e in empty) or 'none'}) have no contents"
        )
    for elem, raw in zip(empty, raw_contents):
        shape = list(elem.shape)
        if any(d < 0 for d in shape):
            raise InferenceError(f"input {elem.name!r}: shape {shape} has a negative dimension")
        count = math.prod(shape)
        if elem.datatype == "BYTES":
            found = _count_length_prefixed(elem.name, raw)
            if found != count:
                raise InferenceError(
                    f"input {elem.name!r}: shape {shape} needs {count} element(s), raw content holds {found}"
                )
        elif elem.datatype not in RAW_ITEM_BYTES:
            raise InferenceError(f"input {elem.name!r}: unknown datatype {elem.datatype!r}")
        elif len(raw) != count * RAW_ITEM_BYTES[elem.datatype]:
            raise InferenceError(
                f"input {elem.name!r}: {elem.datatype} {shape} needs {count * RAW_ITEM_BYTES[elem.datatype]} "
                f"bytes of raw content, got {len(raw)}"
            )
    try:
        return _inject_raw(elems, raw_contents)
    except (struct.error, ValueError, IndexError, KeyError, OverflowError) as exc:
        raise InferenceError(f"cannot decode raw_input_contents: {exc}") from None


# -- 1. streaming endpoints -----------------------------------------------------------------------
class StreamingNotSupported(MLServerError):
    def __init__(self, name: str, why: str):
        super().__init__(
            f"model {name!r} does not stream ({why}); send the request to /v2/models/{name}/infer "
            f"(gRPC: ModelInfer) instead",
            status_code=400,
        )


def streaming_refusal(model: MLModel) -> Optional[str]:
    """Why ``model`` cannot stream, or ``None`` when it can.

    With ``parallel_workers >= 1`` the registry holds a ``ParallelModel`` (``ml/parallel/model.py:19``)
    that forwards only ``predict`` and ``metadata`` to the worker: a runtime's own
    ``predict_stream`` is never called (MLServer's documented limitation; PR #2246 to lift it was
    closed). A runtime without ``predict_stream`` gets ``MLModel``'s default, which is ``predict``
    (``ml/model.py:82-93``).
    """
    runtime = getattr(model, "_model", model)
    if type(runtime).predict_stream is MLModel.predict_stream:
        return "its runtime has no predict_stream"
    if getattr(model, "_dispatcher", None) is not None:
        return "MLServer 1.7.1 streams only with parallel_workers: 0"
    return None


_data_plane_infer_stream = DataPlane.infer_stream


async def data_plane_infer_stream(
    self: DataPlane, payloads: AsyncIterator[InferenceRequest], name: str, version: Optional[str] = None
) -> AsyncIterator[InferenceResponse]:
    """``DataPlane.infer_stream`` that refuses a model that does not stream, over REST and gRPC alike."""
    model = await self._model_registry.get_model(name, version)
    why = streaming_refusal(model)
    if why:
        raise StreamingNotSupported(name, why)
    async for response in _data_plane_infer_stream(self, payloads, name, version):
        yield response


async def _pump(stream: AsyncIterator[InferenceResponse], queue: asyncio.Queue) -> None:
    try:
        async for item in stream:
            await queue.put(("item", item))
        await queue.put(("end", None))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - handed over to whoever reads the queue
        await queue.put(("error", exc))


async def _as_sse(kind: str, value: Any, queue: asyncio.Queue, task: asyncio.Task) -> AsyncIterator[bytes]:
    try:
        while kind == "item":
            yield ServerSentEvent(value).encode()
            kind, value = await queue.get()
        if kind == "error":
            status = getattr(value, "status_code", 500)
            logger.warning("stream failed after it had started: %s %s", status, value)
            body = json.dumps({"error": str(value), "status_code": status})
            yield f"event: error\ndata: {body}\n\n".encode()
    finally:
        task.cancel()


async def infer_stream(
    self: Endpoints,
    raw_request: Request,
    payload: InferenceRequest,
    model_name: str,
    model_version: Optional[str] = None,
) -> StreamingResponse:
    """``Endpoints.infer_stream`` that waits for the first event before the response starts.

    MLServer 1.7.1 returns the ``StreamingResponse`` at once (``ml/rest/endpoints.py:133``), so a
    missing model, a model that is not ready or a bad input is raised while Starlette already
    sends the body, where ``starlette/_exception_handler.py:55-56`` can no longer call MLServer's
    error handler: the client gets ``500 Internal Server Error`` (or, without gzip, a truncated
    ``200``). Here the data plane runs in a task of its own (its ``model_context`` must set and reset
    its context variables in one Context, ``ml/context.py:10-23``), the first event is awaited, and
    an error before it is raised as usual: 400 / 404 / 503 JSON. A failure after the stream has
    started ends it with an SSE ``event: error`` carrying the message and status.
    """
    insert_headers(payload, dict(raw_request.headers))

    async def one() -> AsyncIterator[InferenceRequest]:
        yield payload

    queue: asyncio.Queue = asyncio.Queue(maxsize=1)
    task = asyncio.create_task(_pump(self._data_plane.infer_stream(one(), model_name, model_version), queue))
    try:
        kind, value = await queue.get()
    except BaseException:
        task.cancel()
        raise
    if kind == "error":
        raise value
    return StreamingResponse(_as_sse(kind, value, queue, task), media_type="text/event-stream")


# -- 5 and 8. the HTTP request before MLServer parses it ----------------------------------------
GRPC_DEFAULT_LIMIT = 4 << 20
"""gRPC's own default receive limit, the floor of the derived one."""
JSON_ALLOWANCE = 1 << 20
"""Room for the JSON around the largest audio: names, the other inputs, parameters."""
CD_WAV_BYTES_PER_SECOND = 44100 * 2 * 2
"""16-bit stereo at 44.1 kHz: how a model's ``max_audio_seconds`` is turned into bytes."""


def request_limit(models_root: str) -> tuple[int, str]:
    """The request size both protocols accept, derived from the models' own limits, and why.

    Every ``model-settings.json`` below ``models_root`` is read for ``parameters.extra``:
    ``max_audio_bytes`` (the largest audio file the model takes), or else ``max_audio_seconds``
    counted as 16-bit stereo 44.1 kHz WAV (a model that returns audio, such as the synthesizer).
    The largest one, base64-encoded as REST JSON carries it, plus 1 MiB for the rest of the
    request, is the limit; never less than gRPC's default 4 MiB. Folders that cannot be read are
    skipped (they are reported in the repository index instead).
    """
    best, why = 0, "gRPC's default message size"
    pattern = os.path.join(os.path.abspath(models_root), "**", "model-settings.json")
    for path in sorted(glob(pattern, recursive=True)):
        try:
            with open(path) as f:
                model = json.load(f)
            extra = (model.get("parameters") or {}).get("extra") or {}
            name = model.get("name") or os.path.basename(os.path.dirname(path))
            if extra.get("max_audio_bytes") is not None:
                audio, source = int(extra["max_audio_bytes"]), f"{name}: max_audio_bytes={extra['max_audio_bytes']}"
            elif extra.get("max_audio_seconds") is not None:
                seconds = float(extra["max_audio_seconds"])
                audio = math.ceil(seconds * CD_WAV_BYTES_PER_SECOND) + 44
                source = f"{name}: max_audio_seconds={extra['max_audio_seconds']} as 16-bit stereo 44.1 kHz WAV"
            else:
                continue
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        needed = 4 * math.ceil(audio / 3) + JSON_ALLOWANCE
        if needed > best:
            best, why = needed, f"the largest audio a model takes or returns, base64-encoded, plus 1 MiB ({source})"
    if best < GRPC_DEFAULT_LIMIT:
        return GRPC_DEFAULT_LIMIT, why if best == 0 else f"gRPC's default message size (more than {why})"
    return best, why


LIMIT_SOURCE = "grpc_max_message_length in settings.json"
"""What the limit was taken from; set by :mod:`tunesmith.serving.mlserver_main` when it derives it."""


async def _refuse(scope: dict, send, status: int, message: str) -> None:
    """Answer as MLServer answers its own errors (``{"error": ...}``), and log it as one line."""
    logger.warning("%s %s -> %d %s", scope.get("method"), scope.get("path"), status, message)
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_handle_mlserver_error = rest_errors.handle_mlserver_error


async def handle_mlserver_error(request: Request, exc: MLServerError):
    """MLServer's REST error handler (``ml/rest/errors.py:13-18``) logs nothing, so a refused REST
    request left no trace in the log while the same request over gRPC did; now each leaves one line."""
    level = logging.WARNING if exc.status_code < 500 else logging.ERROR
    logger.log(level, "%s %s -> %d %s: %s", request.method, request.url.path, exc.status_code, type(exc).__name__, exc)
    return await _handle_mlserver_error(request, exc)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class RequestGuard:
    """Pure-ASGI middleware in front of MLServer's REST app.

    * 413 when the body is over ``max_body_bytes``: by ``Content-Length`` before any of it is read,
      and by counting a chunked body as it arrives. MLServer 1.7.1 has no body limit (issue #444);
      it reads and parses any body whole, so one request of hundreds of megabytes costs that many
      gigabytes of memory. The refused body is never stored: uvicorn reads and drops the rest, and
      the connection stays usable.
    * 415 for ``Content-Encoding`` other than identity: ``ml/rest/requests.py:17-23`` gunzips a
      body with no bound, a zip bomb past any size limit.
    * 403 for a request a browser sends from another site (a foreign ``Origin``, or
      ``Sec-Fetch-Site`` ``cross-site`` / ``same-site``); 415 for a POST whose ``Content-Type`` is
      not JSON. CORS (``cors_settings``, off by default) does not stop a page from *sending* a
      "simple" request such as ``POST /v2/repository/models/<name>/unload``, which needs no body
      at all (``ml/rest/app.py:171-175``); only the response is hidden from the page. Programs
      (requests, tritonclient, curl) send neither header, and tritonclient sends no
      ``Content-Type`` either, which MLServer's FastAPI reads as JSON: that is still accepted.
    """

    def __init__(self, app, max_body_bytes: int, limit_source: str = "", allowed_origins: Iterable[str] = ()):
        self.app = app
        self.max_body_bytes = int(max_body_bytes)
        self.limit_source = limit_source
        self.allowed_origins = set(allowed_origins)

    def _too_large(self) -> str:
        return f"request body is over the server's limit of {self.max_body_bytes} bytes ({self.limit_source})"

    def _refusal(self, scope: dict, headers: Headers) -> Optional[tuple[int, str]]:
        origin = headers.get("origin")
        if origin is not None and "*" not in self.allowed_origins and origin not in self.allowed_origins:
            own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
            if origin != own:
                return 403, f"cross-origin request refused (Origin: {origin})"
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return 403, f"cross-site request refused (Sec-Fetch-Site: {site})"
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            return 415, (f"compressed request bodies are not accepted (Content-Encoding: {encoding}); "
                         "send them uncompressed")
        content_type = headers.get("content-type")
        if scope["method"] == "POST" and content_type is not None and not _is_json(content_type):
            return 415, f"POST bodies must be Content-Type: application/json, got {content_type!r}"
        length = headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_body_bytes:
            return 413, self._too_large()
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope, Headers(scope=scope))
        if refusal is not None:
            await _refuse(scope, send, *refusal)
            return
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body_bytes:
                await _refuse(scope, send, 413, self._too_large())
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        del chunks
        replayed = False

        async def replay() -> dict:
            nonlocal replayed, body
            if replayed:
                return await receive()  # e.g. Starlette waiting for http.disconnect during a stream
            replayed = True
            message, body = {"type": "http.request", "body": body, "more_body": False}, b""
            return message

        await self.app(scope, replay, send)


LOOPBACK_HOSTS = ["127.0.0.1", "localhost"]
_create_app = rest_server.create_app


def create_app(settings: Settings, *args, **kwargs):
    """``create_app`` (``ml/rest/app.py:52-233``, imported by name at ``ml/rest/server.py:9``) plus
    the guard; and, when the server listens on loopback only, a ``Host`` check against DNS
    rebinding (a foreign page whose name resolves to 127.0.0.1 would otherwise be same-origin)."""
    app = _create_app(settings, *args, **kwargs)
    limit = settings.grpc_max_message_length or GRPC_DEFAULT_LIMIT
    cors = settings.cors_settings
    origins = list(cors.allow_origins or []) if cors is not None else []
    app.add_middleware(RequestGuard, max_body_bytes=limit, limit_source=LIMIT_SOURCE, allowed_origins=origins)
    if settings.host in LOOPBACK_HOSTS:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS)
    return app


def install() -> None:
    """Put every patch of this module in place (idempotent; main process, before ``MLServer()``)."""
    if getattr(DataPlane, "_tunesmith_request_guards", False):
        return
    DataPlane._prepare_payload = prepare_payload
    DataPlane.infer_stream = data_plane_infer_stream
    Endpoints.infer_stream = infer_stream  # before create_app stores the bound method in its routes
    grpc_converters.inject_raw = safe_inject_raw
    grpc_utils.STATUS_CODE_MAPPING.update(
        {413: grpc_utils.grpc.StatusCode.RESOURCE_EXHAUSTED, 503: grpc_utils.grpc.StatusCode.UNAVAILABLE}
    )
    rest_server.create_app = create_app
    rest_errors._EXCEPTION_HANDLERS[MLServerError] = handle_mlserver_error  # the dict create_app passes to FastAPI
    DataPlane._tunesmith_request_guards = True
