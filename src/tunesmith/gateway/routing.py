"""Which resource a request is for, and the headers that travel with it: Seldon's conventions.

Seldon Core v2 has one front door (envoy) for every model and pipeline, and one routing key, the
``seldon-model`` header (gRPC metadata of the same name). Its values, as parsed by
``scheduler/pkg/kafka/pipeline/utils.go: createResourceNameFromHeader``:

* ``<model>`` or ``<model>.model`` -> the model;
* ``<pipeline>.pipeline`` -> the pipeline;
* ``<experiment>.experiment`` -> an experiment (routed by envoy, ``envoy/processor/incremental.go``);
* anything else -> ``Bad or missing header seldon-model <value>``.

Without the header, envoy's Lua filter derives it from the REST path
(``scheduler/pkg/envoy/xdscache/resource.go: createHeaderFilter``): ``/v2/models/{n}/...`` means
``n`` and ``/v2/pipelines/{n}/...`` means ``n.pipeline``. A header in the request wins over the
path. ``seldon-internal-model`` is set by envoy itself and is not taken from callers here.

Every request header starting with ``x-`` travels with a pipeline request and comes back on the
response (``convertHttpHeadersToKafkaHeaders`` in the same file). The headers the gateway sets
itself are named below.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import random
import socket
import struct
import time
from dataclasses import dataclass
from typing import Iterable, Literal

SELDON_MODEL = "seldon-model"
"""The routing key (``scheduler/pkg/util/constants.go: SeldonModelHeader``)."""
REQUEST_ID = "x-request-id"
"""The request's id: the caller's, else a new one; also the key of its inspect records."""
SELDON_ROUTE = "x-seldon-route"
"""``:<model>_<version>:`` per model called, ``:<pipeline>.pipeline:`` per pipeline (``SeldonRouteHeader``)."""
PIPELINE_VERSION = "x-pipeline-version"
"""The pipeline version that served the request (dataflow ``SeldonHeaders.kt``)."""
STEP_STATUS = "x-seldon-step-status"
"""LOCAL: the HTTP status of the model call that failed a pipeline step (Seldon answers 400 and
keeps only the text)."""
EXTERNAL_PREFIX = "x-"
"""Headers with this prefix travel with pipeline data (``ExternalHeaderPrefix``)."""

MODEL_VERSION = 1
"""Seldon runs a model as ``<model>_<version>``, one version per accepted spec. The gateway serves
the manifests it was started with, so every model is at version 1 (``util/model.go``)."""
PIPELINE_VERSION_VALUE = "1"
"""Likewise every pipeline is at its first version (``store/pipeline/store.go: addPipelineImpl``)."""

Kind = Literal["model", "pipeline", "experiment"]


class BadHeader(ValueError):
    """A ``seldon-model`` value of no known form; the message is Seldon's."""

    def __init__(self, value: str):
        super().__init__(f"Bad or missing header {SELDON_MODEL} {value}")
        self.value = value


@dataclass(frozen=True)
class Target:
    """A resource a request is routed to: ``name`` and whether it is a model, pipeline or experiment."""

    name: str
    kind: Kind

    def __str__(self) -> str:
        return self.name if self.kind == "model" else f"{self.name}.{self.kind}"


def parse(value: str) -> Target:
    """The resource named by one ``seldon-model`` value (``createResourceNameFromHeader``, plus experiments)."""
    name, dot, suffix = value.partition(".")
    if not dot and name:
        return Target(name, "model")
    if name and suffix in ("model", "pipeline", "experiment"):
        return Target(name, suffix)
    raise BadHeader(value)


def resolve(header: str | None, path_name: str, path_kind: Kind = "model") -> Target:
    """The header's target if the request has one, else the path's.

    ``path_name`` may itself carry a suffix (``/v2/models/chain.pipeline/infer``), as envoy's
    derived header would.
    """
    if header is not None:
        return parse(header.strip())
    if path_kind == "pipeline":
        return Target(path_name, "pipeline")
    return parse(path_name)


def model_route(model: str) -> str:
    """The ``x-seldon-route`` entry of one model call: ``:<model>_<version>:``."""
    return f":{model}_{MODEL_VERSION}:"


def pipeline_route(pipeline: str) -> str:
    """The ``x-seldon-route`` entry of a pipeline: ``:<pipeline>.pipeline:``."""
    return f":{pipeline}.pipeline:"


def external_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The caller's ``x-*`` headers, lower-cased, without the ones the gateway sets itself.

    The caller's ``x-request-id`` becomes the request id, and ``x-seldon-route`` is routing state
    (a sticky-session key for experiments) that the gateway computes afresh for each response.
    """
    own = (REQUEST_ID, SELDON_ROUTE, PIPELINE_VERSION, STEP_STATUS)
    out: dict[str, str] = {}
    for key, value in items:
        key = key.lower()
        if key.startswith(EXTERNAL_PREFIX) and key not in own:
            out[key] = value
    return out


# -- request ids ----------------------------------------------------------------------------------
# Seldon makes a request id with github.com/rs/xid (``scheduler/pkg/util/ids.go``): 12 bytes (4 of
# Unix time, 3 of machine id, 2 of process id, 3 of a counter) as 20 characters of lower-case
# base32hex. They sort by time, which helps when reading inspect output and logs.
_MACHINE = hashlib.md5(socket.gethostname().encode()).digest()[:3]
_COUNTER = itertools.count(random.SystemRandom().randrange(1 << 24))


def new_request_id() -> str:
    """A new XID, e.g. ``d0t2f1a1s4v3ec9ke8g0``."""
    raw = (
        struct.pack(">I", int(time.time()) & 0xFFFFFFFF)
        + _MACHINE
        + struct.pack(">H", os.getpid() & 0xFFFF)
        + (next(_COUNTER) & 0xFFFFFF).to_bytes(3, "big")
    )
    return base64.b32hexencode(raw).decode("ascii").rstrip("=").lower()
