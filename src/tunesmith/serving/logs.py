"""Logging for the MLServer process: client errors as one line, a capped console, a rotated file.

``settings/logging.json`` (MLServer's ``logging_settings``) names the classes below. MLServer 1.7.1
applies that configuration in its main process (``mlserver/logging.py:99-118``, called from
``mlserver/server.py:95-100``), in every inference worker (``mlserver/parallel/worker.py:68``) and
again in uvicorn (``mlserver/rest/server.py:92-95``), so everything here has to work in all of
those processes and survive being configured more than once.

What it mends in MLServer 1.7.1:

* A caller's mistake is logged as an error with a traceback: the inference worker logs every
  exception of ``predict`` with ``logger.exception`` (``mlserver/parallel/worker.py:140-146``), a
  ``400`` included, and the gRPC servicer does the same for every ``MLServerError``
  (``mlserver/grpc/utils.py:45-50,60-65``). :class:`ClientErrorsAsWarnings` turns a record whose
  exception has a 4xx ``status_code`` into one ``WARNING`` line; server errors keep their traceback.
* The log is whatever the process writes to stdout, which the launcher captures in
  ``.run/<name>/mlserver.log`` without any bound. :func:`rotating_file` writes the full log to a
  size-capped, rotated file, and :class:`CappedConsole` keeps stdout to the start-up messages,
  warnings and errors, up to a fixed number of bytes per process.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing

_started = False


def startup_finished() -> None:
    """Called by the server's main process once every model has been loaded (or has failed to)."""
    global _started
    _started = True


class ClientErrorsAsWarnings(logging.Filter):
    """Log an exception that is the caller's fault (HTTP 4xx) as one WARNING line, without traceback.

    The status comes from the exception's ``status_code`` (``MLServerError`` and the errors wrapping
    it, such as the worker's ``WorkerError``, which keeps the status of the error it wraps).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            message = record.getMessage()
            detail = f"{status} {type(exc).__name__}: {exc}"
            record.msg = detail if message == str(exc) else f"{message} -> {detail}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            if record.levelno > logging.WARNING:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class CappedConsole(logging.StreamHandler):
    """The console (stdout) handler: start-up messages, then warnings and errors, up to ``max_bytes``.

    Until the server has loaded its models every record is written (the launcher shows the end of
    the console log when the server fails to start); after that only records at
    ``after_startup_level`` or above.
    Once a process has written ``max_bytes``, one notice says where the rest goes and the console
    stays quiet: a server that runs for weeks cannot fill the disk through stdout.
    """

    def __init__(
        self, stream=None, max_bytes: int = 1 << 20, after_startup_level: str = "WARNING", rest_in: str = "server.log"
    ):
        super().__init__(stream)
        self.max_bytes = int(max_bytes)
        level = after_startup_level
        self.after_startup = logging.getLevelName(level) if isinstance(level, str) else int(level)
        self.rest_in = rest_in
        self.written = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.written >= self.max_bytes or (_started and record.levelno < self.after_startup):
            return
        try:
            text = self.format(record) + self.terminator
            self.written += len(text)
            if self.written >= self.max_bytes:
                text = f"console log limit of {self.max_bytes} bytes reached; the rest is in {self.rest_in} only\n"
            self.stream.write(text)
            self.flush()
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


def rotating_file(
    filename: str, maxBytes: int = 10 << 20, backupCount: int = 3, encoding: str = "utf-8"  # noqa: N803 - logging's
) -> logging.Handler:
    """The log file handler: MLServer's main process rotates the file, inference workers only append.

    All processes of one server write the same file. Only one of them may rotate it, or two would
    rename each other's files; the main process writes most of the log, so it rotates. Workers
    (spawned children) use a ``WatchedFileHandler``, which reopens the file after the main process
    has rotated it. The file can therefore grow past ``maxBytes`` by what workers write before the
    main process next writes; the total stays about ``(backupCount + 1) * maxBytes``.
    """
    if multiprocessing.parent_process() is None:
        return logging.handlers.RotatingFileHandler(
            filename, maxBytes=maxBytes, backupCount=backupCount, encoding=encoding
        )
    return logging.handlers.WatchedFileHandler(filename, encoding=encoding)
