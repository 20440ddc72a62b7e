"""The manifests as data, and what every stage of reading them shares.

The five Seldon kinds become frozen dataclasses (:class:`Pipeline` with its :class:`Step` and
:class:`Output`, :class:`Model`, :class:`Server`, :class:`ServerConfig`, :class:`Experiment`) kept
together in :class:`Manifests`. The checks in the other modules of this package all raise
:class:`_Invalid` (or :class:`ManifestError` once the file is known), read a spec with the typed
readers below, and ask ``_FOR_CLUSTER`` whether they check for the local gateway or for a cluster.
Those live here, once: the other modules build on this one and not on each other (only the loader
imports them all).
"""

from __future__ import annotations

import contextvars
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__package__)
"""One logger for the package, ``tunesmith.gateway.manifests``, whichever module logs."""


API_VERSION = "mlops.seldon.io/v1alpha1"
KINDS = ("Model", "Server", "ServerConfig", "Pipeline", "Experiment")
CRD_FILES = {
    "Model": "model.crd.yaml",
    "Server": "server.crd.yaml",
    "ServerConfig": "serverconfig.crd.yaml",
    "Pipeline": "pipeline.crd.yaml",
    "Experiment": "experiment.crd.yaml",
}
JOIN_TYPES = ("inner", "outer", "any")
NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
"""Seldon's resource names (``scheduler/pkg/store/utils/validate.go: CheckName``): lower-case
alphanumerics and ``-``; no dots, because dots separate the parts of a step reference."""

DEFAULT_SERVER = "mlserver"
"""The server (and server config) a stock Seldon installation has; models without ``server`` go here."""
DEFAULT_CAPABILITIES = (
    "mlserver", "alibi-detect", "alibi-explain", "huggingface", "lightgbm",
    "mlflow", "python", "sklearn", "spark-mlib", "xgboost",
)  # fmt: skip
"""``SELDON_SERVER_CAPABILITIES`` of the stock ``mlserver`` ServerConfig
(``operator/config/serverconfigs/mlserver.yaml``)."""


_FOR_CLUSTER: contextvars.ContextVar[bool] = contextvars.ContextVar("for_cluster", default=False)
"""Set by ``load(..., for_cluster=True)`` for the length of one load (see :func:`~tunesmith.gateway.manifests.load`)."""


class ManifestError(ValueError):
    """A manifest that Seldon would reject, or that the local gateway cannot serve.

    ``str()`` is ``"<file>: <field>: <message>"``; the message is Seldon's own where Seldon has one.
    """

    def __init__(self, file: Path | str, field: str, message: str):
        self.file = str(file)
        self.field = field
        self.message = message
        super().__init__(f"{file}: {field}: {message}")


class _Invalid(Exception):
    """A failed check, before the loader adds the file it came from."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


# --- the manifests as data --------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One pipeline step; it calls the Model of the same name.

    ``inputs`` and ``triggers`` are normalised as Seldon's scheduler stores them
    (``scheduler/pkg/store/pipeline/utils.go: updateInternalInputSteps``): a bare name ``X`` is
    ``X.inputs`` when X is the pipeline and ``X.outputs`` otherwise.
    """

    name: str
    inputs: tuple[str, ...] = ()
    tensor_map: dict[str, str] = field(default_factory=dict)
    inputs_join_type: str = "inner"
    join_window_ms: int | None = None
    triggers: tuple[str, ...] = ()
    triggers_join_type: str = "inner"


@dataclass(frozen=True)
class Output:
    """Where a pipeline's synchronous reply comes from; ``steps`` normalised as for :class:`Step`."""

    steps: tuple[str, ...] = ()
    steps_join: str = "inner"
    join_window_ms: int | None = None
    tensor_map: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Pipeline:
    """A Seldon Pipeline. ``output`` is None for an asynchronous-only pipeline."""

    name: str
    steps: tuple[Step, ...]
    output: Output | None = None

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps)


@dataclass(frozen=True)
class Model:
    """A Seldon Model: an MLServer model folder served under ``name``.

    ``memory`` is in bytes. ``requirements`` includes ``modelType`` as Seldon appends it
    (``model_types.go: AsSchedulerModel``). ``parameters`` go to ``parameters.extra`` of the
    model's ``model-settings.json``.
    """

    name: str
    storage_uri: str
    artifact_version: int | None = None
    model_type: str | None = None
    requirements: tuple[str, ...] = ()
    memory: int | None = None
    server: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    replicas: int = 1


@dataclass(frozen=True)
class Server:
    """A Seldon Server: one MLServer process locally."""

    name: str
    server_config: str = DEFAULT_SERVER
    capabilities: tuple[str, ...] = ()
    extra_capabilities: tuple[str, ...] = ()
    replicas: int = 1

    @property
    def effective_capabilities(self) -> tuple[str, ...]:
        """``capabilities`` replace the config's list; ``extraCapabilities`` extend it
        (``operator/controllers/reconcilers/server/server_reconciler.go: updateCapabilities``)."""
        if self.capabilities:
            return self.capabilities
        return DEFAULT_CAPABILITIES + self.extra_capabilities


@dataclass(frozen=True)
class ServerConfig:
    """A Seldon ServerConfig. Locally only its name matters: Servers refer to it."""

    name: str


@dataclass(frozen=True)
class Candidate:
    name: str
    weight: int


@dataclass(frozen=True)
class Mirror:
    name: str
    percent: int


@dataclass(frozen=True)
class Experiment:
    """A Seldon Experiment: a weighted split of traffic between models or pipelines.

    ``resource_type`` is ``"model"`` or ``"pipeline"``; like Seldon's operator, any other value
    means model (``experiment_types.go: AsSchedulerExperimentRequest``).
    """

    name: str
    candidates: tuple[Candidate, ...] = ()
    default: str | None = None
    mirror: Mirror | None = None
    resource_type: str = "model"


@dataclass(frozen=True)
class Manifests:
    """Everything a manifests folder defines, by kind and name.

    ``source[name]`` is the file a manifest came from (a Model and a Pipeline may share a name;
    :meth:`file_of` is exact). ``placement[model]`` is the Server that serves each Model.
    ``folder`` is the manifests folder (relative storage URIs start there).
    """

    folder: Path
    models: dict[str, Model] = field(default_factory=dict)
    servers: dict[str, Server] = field(default_factory=dict)
    server_configs: dict[str, ServerConfig] = field(default_factory=dict)
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    experiments: dict[str, Experiment] = field(default_factory=dict)
    source: dict[str, Path] = field(default_factory=dict)
    placement: dict[str, str] = field(default_factory=dict)
    files: dict[tuple[str, str], Path] = field(default_factory=dict, repr=False)

    def file_of(self, kind: str, name: str) -> Path:
        return self.files[(kind, name)]


# --- typed reading of a spec ------------------------------------------------------------------

_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str, "integer": int, "boolean": bool, "array": list, "object": dict,
}  # fmt: skip


def _typed(value: Any, where: str, json_type: str) -> Any:
    """``value`` if it has the JSON type (None passes); the schema check's message otherwise.

    With the CRD files the schema check has already done this; without them this is all there is.
    """
    if value is None:
        return None
    if not isinstance(value, _JSON_TYPES[json_type]) or (json_type == "integer" and isinstance(value, bool)):
        raise _Invalid(where, f"{value!r} is not of type {json_type!r}")
    return value


def _strings(value: Any, where: str, *, blank_ok: bool = False) -> tuple[str, ...]:
    """A list of strings; with ``blank_ok`` a blank item reads as "" (for step references)."""
    items = _typed(value, where, "array") or []
    if blank_ok:
        items = ["" if item is None else item for item in items]
    return tuple(_typed(item, _path(where, i), "string") for i, item in enumerate(items))


def _string_map(value: Any, where: str) -> dict[str, str]:
    mapping = _typed(value, where, "object") or {}
    return {key: _typed(item, _path(where, key), "string") for key, item in mapping.items()}


def _join_type(value: Any, where: str) -> str:
    value = _typed(value, where, "string") or "inner"
    if value not in JOIN_TYPES:
        raise _Invalid(where, f"{value!r} is not one of {list(JOIN_TYPES)}")
    return value


def _required(spec: dict, key: str, where: str = "spec") -> Any:
    if spec.get(key) is None:
        raise _Invalid(where, f"{key!r} is a required property")
    return spec[key]


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _yaml_loader() -> type:
    """PyYAML's C loader when it was built with libyaml (faster), its Python one otherwise."""
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)
