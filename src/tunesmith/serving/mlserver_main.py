"""``python -m tunesmith.serving.mlserver_main start FOLDER``: MLServer 1.7.1's own CLI, hardened.

The launcher (:mod:`tunesmith.serving.launcher`) runs this instead of the ``mlserver`` script. It
installs the patches of :mod:`tunesmith.serving.request_guards` and
:mod:`tunesmith.serving.model_health` in MLServer's main process, then hands over to
``mlserver.cli.main.main`` (what the ``mlserver`` script runs, ``ml/cli/main.py:266-269``; ``ml/``
is the installed ``mlserver`` 1.7.1 package). What each patch mends, with MLServer's file and line
and issue, is in its docstring; ``settings/README.md`` lists what is left in MLServer's hands.

Why an entry point and not a runtime module that patches on import (as
:mod:`tunesmith.serving.batching` does): MLServer builds its REST routes and middleware when
``MLServer(settings)`` is constructed (``ml/server.py:56-57,102-108`` -> ``ml/rest/app.py:52-233``),
storing bound methods such as ``endpoints.infer_stream``, before any runtime is imported. Only a
patch in place before that reaches them, and only code that runs first can place it.

Inference workers are started with ``spawn`` (``ml/parallel/utils.py:14-28``) and import this
module as ``__mp_main__`` without running :func:`main`; importing it therefore loads nothing but
the standard library, and every patch acts in the main process, where requests arrive.

Besides the patches, at start-up (:func:`prepare`):

* one size limit for both protocols: ``grpc_max_message_length``, which MLServer applies to gRPC
  only (``ml/grpc/server.py:90-109``; unset, gRPC refuses anything over 4 MiB), is derived from the
  models' own audio limits unless settings.json sets it, and the REST body limit is the same
  number (MLServer has none, issue #444);
* ``logging_settings`` given as a path relative to settings.json, and log files named in it with a
  relative path, are placed next to settings.json (MLServer would look in the working directory);
* settings keys MLServer does not know are refused (:func:`check_settings`): its settings model
  ignores them (``extra="ignore"``, ``ml/settings.py:157-166``), so a misspelt ``"hots"`` would
  silently leave the default host ``0.0.0.0`` in force.
"""

from __future__ import annotations

import difflib
import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("mlserver.tunesmith")

SETTINGS_KEYS_1_7_1 = frozenset(
    "cache_enabled cache_size cors_settings debug environments_dir extensions grpc_max_message_length "
    "grpc_port gzip_enabled host http_port kafka_enabled kafka_servers kafka_topic_input kafka_topic_output "
    "load_models_at_startup logging_settings metrics_dir metrics_endpoint metrics_port "
    "metrics_rest_server_prefix model_repository_implementation model_repository_implementation_args "
    "model_repository_root parallel_workers parallel_workers_timeout root_path server_name server_version "
    "tracing_server use_structured_logging".split()
)
"""The fields of ``mlserver.settings.Settings`` in 1.7.1: checking against them needs no import of
MLServer (a second), which the launcher would otherwise pay on every start."""


def check_settings(settings: dict[str, Any], source: str | os.PathLike = "settings.json") -> None:
    """Raise ``ValueError`` naming every key of ``settings`` that MLServer does not know.

    MLServer 1.7.1 drops unknown keys without a word, so a typo turns into a default: ``"hots"``
    leaves ``host`` at ``0.0.0.0`` (every network interface), ``"degub": false`` leaves ``debug`` on.
    """
    unknown = sorted(key for key in settings if key not in SETTINGS_KEYS_1_7_1)
    if unknown:  # another MLServer version may know more
        from mlserver.settings import Settings

        unknown = [key for key in unknown if key not in Settings.model_fields]
    if not unknown:
        return
    known = sorted(SETTINGS_KEYS_1_7_1)
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ValueError(
        f"{source}: unknown server setting(s) {', '.join(hints)}. MLServer ignores settings it does not "
        f"know, so the default would apply instead; fix or remove them."
    )


def _resolve(path: str, folder: Path) -> str:
    return path if os.path.isabs(path) else str(folder / path)


def _log_files_in(config: dict, folder: Path) -> dict:
    """The logging config with every relative ``filename`` / ``rest_in`` of a handler put in ``folder``."""
    config = json.loads(json.dumps(config))
    for handler in (config.get("handlers") or {}).values():
        for key in ("filename", "rest_in"):
            if isinstance(handler.get(key), str):
                handler[key] = _resolve(handler[key], folder)
    return config


def settings_for_run(settings: dict[str, Any], settings_file: str | os.PathLike) -> dict[str, Any]:
    """Check a settings dict read from ``settings_file`` and make its paths absolute, for a run folder.

    The launcher writes the result into ``.run/<name>/settings.json``, away from the file it came
    from: a ``logging_settings`` path relative to the original file must keep pointing there.
    """
    check_settings(settings, settings_file)
    logging_settings = settings.get("logging_settings")
    if isinstance(logging_settings, str):
        settings = {**settings, "logging_settings": _resolve(logging_settings, Path(settings_file).resolve().parent)}
    return settings


def prepare(settings, folder: str | None) -> None:
    """Adjust MLServer's ``Settings`` after ``load_settings`` (``ml/cli/serve.py:13-41``) read them."""
    from tunesmith.serving import request_guards

    root = Path(folder or ".").resolve()
    if folder is not None and (root / "settings.json").is_file():
        check_settings(json.loads((root / "settings.json").read_text()), root / "settings.json")

    if settings.grpc_max_message_length is None:
        limit, why = request_guards.request_limit(settings.model_repository_root or str(root))
        settings.grpc_max_message_length = limit
        request_guards.LIMIT_SOURCE = f"{why}; grpc_max_message_length in settings.json sets another"
    else:
        request_guards.LIMIT_SOURCE = "grpc_max_message_length in settings.json"
    log.info("requests over %d bytes are refused, over REST and gRPC (%s)",
             settings.grpc_max_message_length, request_guards.LIMIT_SOURCE)

    logging_settings = settings.logging_settings
    if isinstance(logging_settings, str) and logging_settings.endswith(".json"):
        path = Path(_resolve(logging_settings, root))
        if path.is_file():
            logging_settings = json.loads(path.read_text())
    if isinstance(logging_settings, dict):
        settings.logging_settings = _log_files_in(logging_settings, root)

    if settings.debug:
        log.warning("debug is on: 500 responses carry tracebacks and every request is logged")
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: other machines can reach this server", settings.host)


def install() -> None:
    """Install every patch in this process (idempotent). Call before MLServer builds its server."""
    from tunesmith.serving import model_health, request_guards

    cli_main = importlib.import_module("mlserver.cli.main")  # mlserver.cli's ``main`` function hides the module

    from tunesmith.serving import logs

    request_guards.install()
    model_health.install()
    mlserver_logger = logging.getLogger("mlserver")  # also before logging_settings are applied
    if not any(isinstance(f, logs.ClientErrorsAsWarnings) for f in mlserver_logger.filters):
        mlserver_logger.addFilter(logs.ClientErrorsAsWarnings())
    if getattr(cli_main.load_settings, "_tunesmith", False):
        return
    load_settings = cli_main.load_settings

    async def prepared_load_settings(folder: str | None = None):
        try:
            settings, models_settings = await load_settings(folder)
            prepare(settings, folder)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
        return settings, models_settings

    prepared_load_settings._tunesmith = True
    cli_main.load_settings = prepared_load_settings  # ``start`` looks it up at call time (ml/cli/main.py:45)


def main() -> None:
    from tunesmith.serving.lifetime import end_when_gone

    install()
    end_when_gone()  # a notebook's server ends with the Jupyter server that started its kernel
    from mlserver.cli.main import main as mlserver_cli

    mlserver_cli()


if __name__ == "__main__":
    sys.exit(main())
