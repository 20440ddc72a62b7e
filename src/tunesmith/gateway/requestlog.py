"""The request log: every request through the gateway, with its route, inputs and outputs, kept durably.

In Seldon Core v2 every model's and pipeline's requests and answers go through Kafka topics
(``seldon.<namespace>.model.<name>.inputs`` / ``.outputs``, ``seldon.<namespace>.pipeline.<name>...``),
and whoever needs them later (a drift detector, a judge of an experiment) reads the topics. Locally
there is no Kafka; the gateway writes one row per request into a SQLite database instead, and
:meth:`RequestLog.records` reads it back.

Why SQLite in WAL mode rather than JSON Lines with ``fsync``: a commit in WAL mode appends to the
``-wal`` file, so a gateway killed outright (SIGKILL) loses at most the rows it had not committed
yet, and a reader (a notebook, the judge of stage 3) can read while the gateway writes, with
indexes to ask for one experiment's arm. ``synchronous=NORMAL`` is enough for a process crash (the
data is in the operating system's cache once committed); only a power cut could lose the last
commits.

Writes never run on the gateway's event loop: :meth:`RequestLog.submit` puts a function that makes
the record on a queue, and one writer thread builds the record (parsing bodies, hashing audio) and
commits it, one transaction per record. The queue is short in practice (a commit takes well under
a millisecond), so what a SIGKILL can lose is the request in flight.

What a record keeps of the tensors (:func:`summarize`): small values as given, text as text (a
tune's ABC), and binary data (audio) as its SHA-256 digest and size, never megabytes inline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import queue
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunesmith import paths

log = logging.getLogger("tunesmith.gateway")

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of the database: a reader refuses a file of another version."""
ENV_PATH = "TUNESMITH_REQUEST_LOG"
"""Environment variable that moves the default log file."""
TEXT_LIMIT = 64 * 1024
"""Longer text is kept as a digest (an ABC tune is a few hundred bytes)."""
NUMBERS_LIMIT = 256
"""A numeric tensor with more elements is kept as its shape and digest (a style embedding has 48)."""
BASE64_MIN = 1024
"""A JSON string at least this long made only of base64 characters is binary data sent as text
(a WAV file in a REST body); ABC text always holds characters base64 has not (``|``, ``:``, spaces)."""
_BASE64 = re.compile(rb"^[A-Za-z0-9+/]+={0,2}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id          INTEGER PRIMARY KEY,
    ts          REAL NOT NULL,
    request_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    target      TEXT NOT NULL,
    experiment  TEXT,
    arm         TEXT,
    mirror      INTEGER NOT NULL,
    status      INTEGER NOT NULL,
    latency_ms  REAL NOT NULL,
    inputs      TEXT NOT NULL,
    outputs     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_by_experiment ON requests (experiment, arm);
CREATE INDEX IF NOT EXISTS requests_by_target ON requests (target);
"""


@dataclass(frozen=True)
class Record:
    """One request as the gateway saw it.

    Attributes:
        ts: Unix time at which the request arrived.
        request_id: its ``x-request-id`` (a mirror call has the id of the request it shadows).
        kind: ``"model"`` or ``"pipeline"``: what answered.
        target: the Model or Pipeline that answered.
        experiment: the Experiment that routed it, if any.
        arm: the experiment's candidate that answered (for a mirror call, the mirror).
        mirror: True for a mirror (shadow) call, whose answer the caller never saw.
        status: the HTTP status the caller got (gRPC codes as their HTTP equivalent).
        latency_ms: from arrival to answer.
        inputs, outputs: tensor name -> values (:func:`summarize`); a failed request's outputs are
            ``{"error": text}``.
    """

    ts: float
    request_id: str
    kind: Literal["model", "pipeline"]
    target: str
    experiment: str | None
    arm: str | None
    mirror: bool
    status: int
    latency_ms: float
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)


def default_path() -> Path:
    """``$TUNESMITH_REQUEST_LOG``, else ``.run/request-log.sqlite`` in the repository."""
    return Path(os.environ.get(ENV_PATH) or paths.RUN / "request-log.sqlite")


class RequestLog:
    """An append-only log of :class:`Record` in one SQLite file; safe to read while another process writes.

    Args:
        path: the database file (created with its folder if missing).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._queue: queue.Queue = queue.Queue()
        self._writer: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0  # records whose making failed (logged)
        self._prepare()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    def _prepare(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise ValueError(f"{self.path}: request log schema version {version}, this reader knows "
                                 f"{SCHEMA_VERSION}; move the file aside to start a new log")
        finally:
            conn.close()

    # -- writing ----------------------------------------------------------------------------------
    def append(self, record: Record) -> None:
        """Queue ``record``; the writer thread commits it (one transaction)."""
        self.submit(lambda: record)

    def submit(self, make: Callable[[], Record | None]) -> None:
        """Queue a function that makes the record, called on the writer thread (parsing stays off the caller's)."""
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="request-log", daemon=True)
                self._writer.start()
        self._queue.put(make)

    def _write_loop(self) -> None:
        conn = self._connect()
        conn.execute("PRAGMA synchronous = NORMAL")
        while True:
            make = self._queue.get()
            try:
                if make is None:
                    return
                record = make()
                if record is not None:
                    conn.execute(
                        "INSERT INTO requests (ts, request_id, kind, target, experiment, arm, mirror, status, "
                        "latency_ms, inputs, outputs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (record.ts, record.request_id, record.kind, record.target, record.experiment, record.arm,
                         int(record.mirror), record.status, record.latency_ms,
                         json.dumps(record.inputs, default=str), json.dumps(record.outputs, default=str)),
                    )  # autocommit: one transaction per record
            except Exception:  # noqa: BLE001 - a record that cannot be made must not stop the log
                self.dropped += 1
                log.exception("request log: a record could not be written")
            finally:
                self._queue.task_done()
                if make is None:
                    conn.close()

    def flush(self) -> None:
        """Wait until every queued record is committed."""
        if self._writer is not None:
            self._queue.join()

    def close(self) -> None:
        """Commit what is queued and stop the writer thread."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            self._queue.put(None)
            writer.join(timeout=30)

    # -- reading ----------------------------------------------------------------------------------
    def records(self, experiment: str | None = None, arm: str | None = None, target: str | None = None) -> list[Record]:
        """Every record (oldest first), or those of one experiment, arm and/or target."""
        self.flush()
        where, args = [], []
        for column, value in (("experiment", experiment), ("arm", arm), ("target", target)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = ("SELECT ts, request_id, kind, target, experiment, arm, mirror, status, latency_ms, inputs, outputs "
               "FROM requests" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id")
        conn = self._connect()
        try:
            rows = conn.execute(sql, args).fetchall()
        finally:
            conn.close()
        return [Record(ts, rid, kind, tgt, exp, a, bool(m), status, lat, json.loads(i), json.loads(o))
                for ts, rid, kind, tgt, exp, a, m, status, lat, i, o in rows]

    def __len__(self) -> int:
        self.flush()
        conn = self._connect()
        try:
            return conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
        finally:
            conn.close()


# -- what a record keeps of the tensors ---------------------------------------------------------------
def digest(data: bytes) -> dict:
    """Binary data as a reference: ``{"sha256": ..., "bytes": n}``."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _flat(data: Any) -> list:
    data = getattr(data, "root", data)
    if data is None:
        return []
    if isinstance(data, (str, bytes, bytearray)) or not isinstance(data, (list, tuple)):
        return [data]
    out: list = []
    for item in data:
        out.extend(_flat(item) if isinstance(item, (list, tuple)) else [item])
    return out


def _element(value: Any, base64_text: bool) -> Any:
    """One ``BYTES`` element: text as text, binary (or base64 of it) as the digest of the binary.

    The same audio gives the same digest whichever way it came: raw bytes (gRPC), base64 text
    (REST), or base64 text inside bytes (a model's base64 output over gRPC).
    """
    if isinstance(value, str):
        raw = value.encode("utf-8")
        if base64_text or (len(raw) >= BASE64_MIN and _BASE64.match(raw)):
            try:
                return digest(base64.b64decode(raw, validate=True))
            except (binascii.Error, ValueError):
                pass
        return value if len(raw) <= TEXT_LIMIT else digest(raw)
    if isinstance(value, (bytes, bytearray)):
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return digest(bytes(value))
        return digest(bytes(value)) if "\x00" in text else _element(text, base64_text)
    return value


def _tensor_values(datatype: str, data: Any, content_type: str | None) -> Any:
    values = _flat(data)
    if datatype == "BYTES":
        return [_element(v, content_type == "base64") for v in values]
    if len(values) > NUMBERS_LIMIT:
        return {"elements": len(values), **digest(json.dumps(values, default=str).encode())}
    return values


def summarize(tensors: Iterable[Any]) -> dict:
    """Tensor name -> values, from V2 tensors (JSON dicts or :mod:`mlserver.types` objects).

    A name that comes twice (a join keeps duplicates) has its values run on in one list.
    """
    out: dict[str, Any] = {}
    for tensor in tensors:
        if isinstance(tensor, dict):
            name, datatype, data = tensor.get("name"), tensor.get("datatype"), tensor.get("data")
            parameters = tensor.get("parameters") or {}
        else:
            name, datatype, data = tensor.name, tensor.datatype, tensor.data
            parameters = tensor.parameters.model_dump() if tensor.parameters is not None else {}
        datatype = str(getattr(datatype, "value", datatype))
        content_type = parameters.get("content_type") if isinstance(parameters, dict) else None
        values = _tensor_values(datatype, data, content_type)
        if name in out and isinstance(out[name], list) and isinstance(values, list):
            out[name] = out[name] + values
        else:
            out[str(name)] = values
    return out


def summarize_json(body: bytes, key: str) -> dict:
    """``summarize`` of a V2 JSON body's ``inputs`` or ``outputs`` (``key``); an unreadable body as its digest."""
    try:
        parsed = json.loads(body)
        tensors = parsed[key]
        if not isinstance(tensors, list):
            raise TypeError(key)
    except (ValueError, KeyError, TypeError):
        return {"body": digest(body)}
    return summarize(t for t in tensors if isinstance(t, dict))


def error_text(body: bytes) -> str:
    """The ``error`` of an MLServer error body, or the body as text."""
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and parsed.get("error"):
            return str(parsed["error"])
    except ValueError:
        pass
    return body.decode("utf-8", errors="replace")[:2000]

