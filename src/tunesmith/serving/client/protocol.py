"""What a client and the servers agree on: addresses, model names, Seldon's headers and naming."""

from __future__ import annotations

import os
import re
from typing import Sequence

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_GRPC_ADDRESS = "127.0.0.1:8081"
URL_ENV = "TUNESMITH_SERVER_URL"
GRPC_ENV = "TUNESMITH_GRPC_ADDRESS"
SELDON_ENV = "TUNESMITH_SELDON"
"""Set to ``1`` (``tunesmith up`` does when it runs the gateway): clients talk Seldon unless told otherwise."""
STARTING_ENV = "TUNESMITH_SERVER_STARTING"
"""Set to 1 by a launcher that opens the UI before the server answers (``tunesmith up``): until the
server first answers, the UI's status line says it is starting rather than not running."""
METRICS_URL_ENV = "TUNESMITH_METRICS_URL"
"""MLServer's own metrics endpoint, for the UI's Monitor section (else port ``$METRICS_PORT`` of the server)."""

GENERATOR = "tune-generator"
SYNTHESIZER = "synthesizer"
EFFECTS = "audio-fx"
TRANSCRIBER = "transcriber"
CLASSIFIER = "style-classifier"
STUDIO = "studio"
"""Stage 3's pipeline: both generator versions write candidates, the critic picks one, the synthesizer plays it."""
STUDIO_BARS = 8
"""Bars per candidate when a studio request names none (the pipeline writes several candidates)."""

SELDON_MODEL = "seldon-model"
"""The header (gRPC metadata) Seldon's envoy routes by: ``<model>`` or ``<pipeline>.pipeline``."""
SELDON_ROUTE = "x-seldon-route"
"""Response header: ``:<model>_<n>:`` for every model a request went through, ``:<pipeline>.pipeline:``."""
REQUEST_ID = "x-request-id"
PIPELINE_VERSION = "x-pipeline-version"
NEWEST = {GENERATOR: "v2"}
"""The version a Seldon call gets when it names none. MLServer picks a model's newest version itself;
Seldon has no versions, only Models named ``<model>-<version>``, so the client chooses."""

# Generating a tune on a laptop CPU takes seconds, not milliseconds; a short read timeout would
# report a busy server as a dead one. Connecting, on the other hand, is instant when the server runs.
DEFAULT_TIMEOUT = 120.0
CONNECT_TIMEOUT = 5.0
# A few minutes of WAV audio is several megabytes, above gRPC's 4 MB default message limit.
GRPC_MAX_MESSAGE = 64 * 1024 * 1024

_NOT_READY = re.compile(r"model .* (not found|is not ready)", re.IGNORECASE)
# MLServer's parallel inference workers send an error back as "package.module.ErrorClass: message";
# the dotted class name means nothing to a person reading the message.
_ERROR_CLASS_PREFIX = re.compile(r"^(?:[A-Za-z_]\w*\.)+[A-Za-z_]\w*:\s*")


def server_message(text: str) -> str:
    """The server's error text without a leading ``package.module.ErrorClass:``."""
    return _ERROR_CLASS_PREFIX.sub("", text.strip(), count=1)


def seldon_from_env() -> bool:
    """Whether :data:`SELDON_ENV` asks for Seldon calls (``1``, ``true``, ``yes``)."""
    return os.environ.get(SELDON_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def seldon_name(model: str, version: str | None = None) -> str:
    """The Seldon Model serving ``model`` at ``version``: ``("tune-generator", "v1")`` -> ``tune-generator-v1``.

    A model with several versions is one Seldon Model per version, ``<model>-<version>``; without a
    version the newest (:data:`NEWEST`) is meant, as MLServer would pick it. Other names are kept.
    """
    version = version or NEWEST.get(model)
    return f"{model}-{version}" if version else model


def route_names(route: Sequence[str]) -> list[str]:
    """The models and pipelines named by ``x-seldon-route`` entries, in order:
    ``[":tune-generator-v1_1:", ":studio.pipeline:"]`` -> ``["tune-generator-v1", "studio.pipeline"]``."""
    names = []
    for entry in route:
        name = entry.strip().strip(":")
        if not name.endswith(".pipeline"):
            name = re.sub(r"_\d+$", "", name)
        if name and name not in names:
            names.append(name)
    return names


def _header_values(value: str | None) -> tuple[str, ...]:
    """A repeated response header as its values (``requests`` joins repeats with commas)."""
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())
