"""Read Seldon Core v2 manifests into typed, frozen dataclasses and check them as Seldon does.

A manifests folder holds YAML files, each with one or more documents (``---``) of the kinds
``Model``, ``Server``, ``ServerConfig``, ``Pipeline`` and ``Experiment`` (``apiVersion:
mlops.seldon.io/v1alpha1``). :func:`load` reads them and checks each document in the order a real
installation would:

1. ``apiVersion``, ``kind`` and ``metadata.name``.
2. Unknown fields. The Kubernetes API server prunes them silently and ``seldon ... load`` refuses
   them (``operator/pkg/cli/scheduler.go: unMarshallYamlStrict``, ``json: unknown field "input"``);
   the gateway refuses them too, because a misspelt key (``input:`` for ``inputs:``) otherwise
   changes what a pipeline does without a word.
3. The CRD's OpenAPI schema (types, enums, required keys), from the CRD files in ``crd_dir``.
4. Seldon's own checks, with Seldon's messages: the scheduler's pipeline checks
   (``scheduler/pkg/store/pipeline/validate.go``), the operator's model conversion
   (``operator/apis/mlops/v1alpha1/model_types.go: AsSchedulerModel``) and the experiment checks
   (``scheduler/pkg/store/experiment/validate.go``).
5. What the local gateway cannot do: each field of each kind is listed in :data:`FIELDS` as
   implemented, ignored (with a logged note) or refused (with a :class:`ManifestError`).

Then the manifests are checked together: one name per kind, a Model for every pipeline step, a
Server for every Model (Seldon's scheduler filters), Seldon's experiment rules, and for the local
gateway the Experiments it can serve (:func:`_check_experiments_served`).

Every error is a :class:`ManifestError` that names the file, the field and the problem::

    pipelines.yaml: spec.steps[1]: json: unknown field "input"
"""

from __future__ import annotations

import contextvars
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tunesmith import paths

log = logging.getLogger(__name__)

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

FIELDS: dict[str, dict[str, str]] = {
    "Pipeline": {
        "steps[].name": "implemented",
        "steps[].inputs": "implemented",
        "steps[].tensorMap": "implemented",
        "steps[].inputsJoinType": "implemented",
        "steps[].joinWindowMs": "implemented",
        "steps[].triggers": "implemented",
        "steps[].triggersJoinType": "implemented",
        "steps[].batch.size": "refused: batching requests for a step is not implemented locally",
        "steps[].batch.windowMs": "ignored: Seldon's dataflow ignores it too",
        "steps[].batch.rolling": "ignored: Seldon's dataflow ignores it too",
        "output.steps": "implemented",
        "output.stepsJoin": "implemented",
        "output.joinWindowMs": "implemented",
        "output.tensorMap": "implemented",
        "input": "refused: inputs from other pipelines (externalInputs, externalTriggers) are not implemented yet",
        "allowCycles": "refused: cyclic pipelines are not supported locally",
        "maxStepRevisits": "ignored: it only limits cyclic pipelines, which are refused",
        "dataflow.cleanTopicsOnDelete": "ignored: there are no Kafka topics locally",
    },
    "Model": {
        "storageUri": "implemented",
        "artifactVersion": "implemented",
        "modelType": "implemented",
        "requirements": "implemented",
        "memory": "implemented",
        "server": "implemented",
        "parameters": "implemented",
        "replicas": "implemented: N MLServer processes hold the model, least-request balanced, health-checked, "
                    "retried and restarted (tunesmith.gateway.replicas); 0 is refused",
        "minReplicas": "refused: it turns on autoscaling (Seldon scales between minReplicas and maxReplicas by "
                       "inference lag), which the local gateway does not do: set replicas only",
        "maxReplicas": "refused: it turns on autoscaling (Seldon scales between minReplicas and maxReplicas by "
                       "inference lag), which the local gateway does not do: set replicas only",
        "schemaUri": "ignored: Seldon does not use it either",
        "preloaded": "ignored: Seldon does not use it either",
        "dedicated": "ignored: Seldon does not use it either",
        "logger": "ignored: Seldon logs payloads to Kafka; the gateway logs every request to its request log "
                  "(tunesmith.gateway.requestlog), as if it were on for every model",
        "secretName": "ignored: storage is a local folder, which needs no credentials",
        "explainer": "refused: explainers call their model back through Seldon's mesh, which is not available locally",
        "llm": "refused: LLM models call their model back through Seldon's mesh, which is not available locally",
        "dataflow.cleanTopicsOnDelete": "ignored: there are no Kafka topics locally",
    },
    "Server": {
        "serverConfig": "implemented",
        "capabilities": "implemented",
        "extraCapabilities": "implemented",
        "replicas": "implemented: replica i is the i-th MLServer process, holding the models with more than i "
                    "replicas (tunesmith.gateway.replicas); 0 is refused",
        "minReplicas": "refused: it turns on server autoscaling, which the local gateway does not do: set replicas only",
        "maxReplicas": "refused: it turns on server autoscaling, which the local gateway does not do: set replicas only",
        "podSpec": "ignored: the server is an MLServer process from the workshop's environment, not a pod",
        "imageOverrides": "ignored: there are no container images locally",
        "deploymentStrategy": "ignored: a Kubernetes rollout setting",
        "statefulSetPersistentVolumeClaimRetentionPolicy": "ignored: a Kubernetes storage setting",
        "disableAutoUpdate": "ignored: a Kubernetes rollout setting",
    },
    "ServerConfig": {
        "podSpec": "ignored: the server is an MLServer process from the workshop's environment, not a pod",
        "volumeClaimTemplates": "ignored: a Kubernetes storage setting",
    },
    "Experiment": {
        "candidates": "implemented: weighted random split, sticky sessions by x-seldon-route; at least one "
                      "candidate with a weight above 0, each defined in the manifests",
        "default": "implemented: requests for the default's own name are split; refused for a Model a pipeline "
                   "step calls (on a cluster the step's call would be split too)",
        "mirror": "implemented: percent of the requests also go to the mirror after the caller's answer is ready; "
                  "its answers are logged, never returned",
        "resourceType": "implemented",
    },
}
"""What the local gateway does with each ``spec`` field of each kind, keyed by the field's path
(``steps[].batch`` is ``batch`` in any step). A value is ``"implemented"`` (optionally
``"implemented: <note>"``), ``"ignored: <why>"`` (accepted, logged) or ``"refused: <why>"`` (a
:class:`ManifestError` when set to a value that has an effect). A key covers everything below it.
The README's table and the stage's closing note are generated from this table, and without the
CRD files it is also the list of known fields that the unknown-field check uses."""

_REFUSED_ONLY_WHEN = {
    ("Pipeline", "allowCycles"): lambda value: value is True,
    ("Pipeline", "steps[].batch.size"): lambda value: value != 0,
    **{(kind, key): lambda value: value > 0 for kind in ("Model", "Server") for key in ("minReplicas", "maxReplicas")},
}
"""Refused fields that are harmless at some values: ``allowCycles: false`` is Seldon's default, a
batch of size 0 does not batch (``StreamTransforms.kt: batchMessages``), and a ``minReplicas`` or
``maxReplicas`` of 0 or less is unset (``operator/internal/utils.go: GetValidatedScalingSpec``)."""


def field_status(kind: str, path: str) -> tuple[str, str]:
    """``("implemented" | "ignored" | "refused", why)`` for a field of :data:`FIELDS`."""
    status, _, why = FIELDS[kind][path].partition(": ")
    return status, why


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


# --- loading ----------------------------------------------------------------------------------


def default_crd_dir() -> Path | None:
    """The shared copy of Seldon's CRDs beside the repository, when it is there."""
    crds = paths.REPO.parent / "shared" / "seldon-crds"
    return crds if crds.is_dir() else None


def load(
    source: Path | str | Sequence[Path | str],
    *,
    crd_dir: Path | None = None,
    allow_experiments: bool = True,
    for_cluster: bool = False,
) -> Manifests:
    """Read and check every manifest in a folder (its ``*.yaml`` and ``*.yml`` files, also in
    sub-folders that are not hidden), or in the given files.

    Args:
        source: a folder, one file, or a list of files.
        crd_dir: the folder of Seldon's CRD files; default :func:`default_crd_dir`. Without it the
            schema check is skipped and unknown fields are found with :data:`FIELDS`.
        allow_experiments: accept Experiments (parsed and checked either way); False refuses them, for a
            tool that serves none.
        for_cluster: check the files for Seldon on a cluster (``tunesmith deploy``), not for the local
            gateway: what the gateway refuses only because it runs on one machine (the ``refused``
            fields of :data:`FIELDS`, replicas 0, the ``triton`` ServerConfig) is accepted;
            every other check, and its message, is the same.

    Raises:
        ManifestError: the first problem found.
    """
    files = _manifest_files(source)
    folder = Path(source) if isinstance(source, (str, Path)) and Path(source).is_dir() else files[0].parent
    documents = [(f, n, doc) for f in files for n, doc in _read_yaml(f)]
    token = _FOR_CLUSTER.set(for_cluster)
    try:
        return _load_documents(documents, folder, crd_dir, allow_experiments)
    finally:
        _FOR_CLUSTER.reset(token)


def loads(
    text: str,
    *,
    file: Path | str = "<manifests>",
    folder: Path | None = None,
    crd_dir: Path | None = None,
    allow_experiments: bool = True,
) -> Manifests:
    """:func:`load` for YAML text (one or more documents); ``file`` names it in errors."""
    documents = [(Path(file), n, doc) for n, doc in _parse_yaml(Path(file), text)]
    return _load_documents(documents, folder or Path.cwd(), crd_dir, allow_experiments)


def _manifest_files(source: Path | str | Sequence[Path | str]) -> list[Path]:
    if isinstance(source, (str, Path)):
        source = Path(source)
        if source.is_dir():  # sub-folders too (models/, servers/, pipelines/), as `kubectl apply -R` reads them;
            # not hidden ones: Jupyter keeps a copy of every file it edits in .ipynb_checkpoints/
            files = sorted(p for p in source.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(source).parts))
            if not files:
                raise ManifestError(source, "folder", "no *.yaml manifests in this folder")
            return files
        return [source]
    files = [Path(f) for f in source]
    if not files:
        raise ValueError("no manifest files given")
    return files


def _read_yaml(file: Path) -> list[tuple[int | None, Any]]:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(file, "file", f"cannot read it: {exc.strerror or exc}") from None
    return _parse_yaml(file, text)


def _parse_yaml(file: Path, text: str) -> list[tuple[int | None, Any]]:
    """The file's non-empty documents, numbered from 1 when there are several."""
    try:
        docs = [d for d in yaml.load_all(text, Loader=_yaml_loader()) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(file, "yaml", str(exc).replace("\n", " ")) from None
    if len(docs) == 1:
        return [(None, docs[0])]
    return list(enumerate(docs, start=1))


def _yaml_loader() -> type:
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _where(file: Path, number: int | None) -> str:
    return str(file) if number is None else f"{file} (document {number})"


def _load_documents(
    documents: list[tuple[Path, int | None, Any]],
    folder: Path,
    crd_dir: Path | None,
    allow_experiments: bool,
) -> Manifests:
    crd_dir = crd_dir if crd_dir is not None else default_crd_dir()
    found = Manifests(folder=folder)
    for file, number, doc in documents:
        where = _where(file, number)
        try:
            kind, name, parsed = _read_document(doc, crd_dir)
        except _Invalid as bad:
            raise ManifestError(where, bad.field, bad.message) from None
        _add(found, kind, name, parsed, file, where)
    _check_together(found)
    if found.experiments and not allow_experiments:
        name = next(iter(found.experiments))
        raise ManifestError(
            found.file_of("Experiment", name), "kind",
            f"Experiment {name}: experiments are not served here",
        )  # fmt: skip
    return found


_COLLECTIONS = {
    "Model": "models",
    "Server": "servers",
    "ServerConfig": "server_configs",
    "Pipeline": "pipelines",
    "Experiment": "experiments",
}


def _add(found: Manifests, kind: str, name: str, parsed: Any, file: Path, where: str) -> None:
    collection = getattr(found, _COLLECTIONS[kind])
    if name in collection:
        first = found.file_of(kind, name)
        raise ManifestError(where, "metadata.name", f"{kind} {name} is already defined in {first}")
    collection[name] = parsed
    found.files[(kind, name)] = file
    found.source.setdefault(name, file)


def _read_document(doc: Any, crd_dir: Path | None) -> tuple[str, str, Any]:
    """Check one document (steps 1 to 5 of the module docstring) and build its dataclass."""
    if not isinstance(doc, dict):
        raise _Invalid("document", f"a manifest is a mapping with apiVersion, kind, metadata and spec, not {doc!r}")
    kind = _check_kind(doc)
    name = _check_metadata_name(doc)
    doc = {**doc, "spec": {} if doc.get("spec") is None else doc["spec"]}
    if crd_dir is not None:
        _check_unknown_fields(doc, _crd_schema(crd_dir, kind))
        _check_schema(doc, _validator(Path(crd_dir), kind))
    else:
        _check_unknown_fields_builtin(doc, kind)
    spec = doc["spec"]
    if not isinstance(spec, dict):
        raise _Invalid("spec", f"{spec!r} is not of type 'object'")
    parsed = _BUILDERS[kind](name, spec)
    _refuse_unsupported(kind, spec)
    _note_ignored(kind, name, spec)
    return kind, name, parsed


def _check_kind(doc: dict) -> str:
    if doc.get("apiVersion") != API_VERSION:
        raise _Invalid("apiVersion", f"{doc.get('apiVersion')!r} is not a Seldon Core v2 resource: use {API_VERSION}")
    kind = doc.get("kind")
    if kind not in KINDS:
        raise _Invalid("kind", f"{kind!r} is not a Seldon Core v2 kind: use one of {', '.join(KINDS)}")
    return kind


def _check_metadata_name(doc: dict) -> str:
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        raise _Invalid("metadata.name", "every manifest needs a name")
    return name


# --- unknown fields and the CRD schema --------------------------------------------------------


@lru_cache(maxsize=None)
def _crd_schemas(crd_dir: Path) -> dict[str, dict]:
    schemas = {}
    for kind, filename in CRD_FILES.items():
        crd = yaml.load((crd_dir / filename).read_text(encoding="utf-8"), Loader=_yaml_loader())
        schemas[kind] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schemas


def _crd_schema(crd_dir: Path, kind: str) -> dict:
    """The resource schema at ``spec.versions[0].schema.openAPIV3Schema`` of the kind's CRD."""
    return _crd_schemas(Path(crd_dir))[kind]


@lru_cache(maxsize=None)
def _validator(crd_dir: Path, kind: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_crd_schema(crd_dir, kind))


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _check_unknown_fields(value: Any, schema: dict, where: str = "") -> None:
    """Refuse keys the schema does not define, as Go's ``DisallowUnknownFields`` decoding does.

    The CRDs never say ``additionalProperties: false`` (Kubernetes prunes unknown fields instead),
    so every object with ``properties`` and no ``additionalProperties`` is closed here. Objects with
    neither (``metadata``) stay open.
    """
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        if properties is not None and extra is None and not schema.get("x-kubernetes-preserve-unknown-fields"):
            for key in value:
                if key not in properties:
                    raise _Invalid(where or "document", f'json: unknown field "{key}"')
        for key, item in value.items():
            inner = (properties or {}).get(key, extra if isinstance(extra, dict) else None)
            if inner is not None:
                _check_unknown_fields(item, inner, _path(where, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _check_unknown_fields(item, schema["items"], _path(where, i))


def _check_unknown_fields_builtin(doc: dict, kind: str) -> None:
    """Without the CRD files: the same check against the field paths of :data:`FIELDS`."""
    for key in doc:
        if key not in ("apiVersion", "kind", "metadata", "spec", "status"):
            raise _Invalid("document", f'json: unknown field "{key}"')
    _check_against_tree(doc["spec"], _field_tree(kind), "spec")


@lru_cache(maxsize=None)
def _field_tree(kind: str) -> dict:
    """FIELDS paths as nested dicts: ``{"steps": {"[]": {"name": None, ...}}, ...}``; None = leaf."""
    tree: dict = {}
    for path in FIELDS[kind]:
        node = tree
        parts = path.replace("[]", ".[]").split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = None
    return tree


def _check_against_tree(value: Any, tree: dict | None, where: str) -> None:
    if tree is None:
        return
    if "[]" in tree:
        if isinstance(value, list):
            for i, item in enumerate(value):
                _check_against_tree(item, tree["[]"], _path(where, i))
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in tree:
                raise _Invalid(where, f'json: unknown field "{key}"')
            _check_against_tree(item, tree[key], _path(where, key))


_REFERENCE_LISTS = re.compile(r"^spec\.(steps\[\d+\]\.(inputs|triggers)|output\.steps)\[\d+\]$")


def _check_schema(doc: dict, validator: jsonschema.Draft7Validator) -> None:
    """Validate against the CRD schema (JSON Schema draft 7, which the CRDs' OpenAPI subset is).

    A blank item in a list of step references (a ``-`` with nothing after it, as in
    ``samples/pipelines/error-empty-input.yaml``) is left to the scheduler check, which reports it
    as Seldon does: ``has an empty input``.
    """
    errors = [
        e for e in validator.iter_errors(doc)
        if not (e.instance is None and _REFERENCE_LISTS.match(_error_path(e)))
    ]  # fmt: skip
    if errors:
        error = jsonschema.exceptions.best_match(errors)
        raise _Invalid(_error_path(error) or "document", error.message)


def _error_path(error: jsonschema.ValidationError) -> str:
    where = ""
    for key in error.absolute_path:
        where = _path(where, key)
    return where


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


# --- Pipeline ---------------------------------------------------------------------------------


def normalise_reference(pipeline: str, reference: str) -> str:
    """Seldon's ``updateInternalInputSteps`` (``scheduler/pkg/store/pipeline/utils.go``): a bare
    name is the pipeline's inputs or a step's outputs. ``""`` becomes ``".outputs"``, which the
    checks then report as empty."""
    if "." in reference:
        return reference
    return f"{reference}.inputs" if reference == pipeline else f"{reference}.outputs"


def _build_pipeline(name: str, spec: dict) -> Pipeline:
    """Convert as the scheduler does (``utils.go: CreatePipelineVersionFromProto``), then check."""
    raw_steps = _typed(spec.get("steps"), "spec.steps", "array") or []
    steps = tuple(_build_step(name, raw, f"spec.steps[{i}]") for i, raw in enumerate(raw_steps))
    _check_repeated_steps(name, steps)
    output = _build_output(name, _typed(spec.get("output"), "spec.output", "object"))
    pipeline = Pipeline(name=name, steps=steps, output=output)
    for check in PIPELINE_CHECKS:
        check(pipeline)
    _check_pipeline_input(name, _typed(spec.get("input"), "spec.input", "object"))
    _warn_unmatched_tensor_maps(pipeline)
    return pipeline


def _build_step(pipeline: str, raw: Any, where: str) -> Step:
    raw = _typed(raw, where, "object") or {}
    name = _typed(_required(raw, "name", where), f"{where}.name", "string")
    window = _typed(raw.get("joinWindowMs"), f"{where}.joinWindowMs", "integer")
    return Step(
        name=name,
        inputs=_references(pipeline, raw.get("inputs"), f"{where}.inputs"),
        tensor_map=_string_map(raw.get("tensorMap"), f"{where}.tensorMap"),
        inputs_join_type=_join_type(raw.get("inputsJoinType"), f"{where}.inputsJoinType"),
        join_window_ms=window or None,
        triggers=_references(pipeline, raw.get("triggers"), f"{where}.triggers"),
        triggers_join_type=_join_type(raw.get("triggersJoinType"), f"{where}.triggersJoinType"),
    )


def _build_output(pipeline: str, raw: dict | None) -> Output | None:
    if raw is None:
        return None
    window = _typed(raw.get("joinWindowMs"), "spec.output.joinWindowMs", "integer")
    return Output(
        steps=_references(pipeline, raw.get("steps"), "spec.output.steps"),
        steps_join=_join_type(raw.get("stepsJoin"), "spec.output.stepsJoin"),
        join_window_ms=window or None,
        tensor_map=_string_map(raw.get("tensorMap"), "spec.output.tensorMap"),
    )


def _references(pipeline: str, value: Any, where: str) -> tuple[str, ...]:
    return tuple(normalise_reference(pipeline, ref) for ref in _strings(value, where, blank_ok=True))


def _check_repeated_steps(pipeline: str, steps: tuple[Step, ...]) -> None:
    seen: set[str] = set()
    for i, step in enumerate(steps):
        if step.name in seen:
            raise _Invalid(f"spec.steps[{i}].name", f"pipeline {pipeline} has repeated step {step.name}")
        seen.add(step.name)


def _step_of(reference: str) -> str:
    return reference.split(".")[0]


def _check_pipeline_name(p: Pipeline) -> None:
    """``validate.go: checkName``; "alphanmumeric" is Seldon's spelling."""
    if not NAME_PATTERN.match(p.name):
        raise _Invalid(
            "metadata.name",
            f"pipeline {p.name} does not have a valid name - it must be alphanmumeric and cannot contain dots (.)",
        )


def _check_steps_exist(p: Pipeline) -> None:
    """``validate.go: checkStepsExist``."""
    if not p.steps:
        raise _Invalid("spec.steps", f"pipeline {p.name} has no steps defined")


def _check_step_name_not_pipeline_name(p: Pipeline) -> None:
    """``validate.go: checkStepNameNotPipelineName``: the name would make ``<name>.inputs`` ambiguous."""
    for i, step in enumerate(p.steps):
        if step.name == p.name:
            raise _Invalid(
                f"spec.steps[{i}].name",
                f"pipeline {p.name} must not have a step name with the same name as pipeline name",
            )


def _check_references(p: Pipeline, attribute: str, what: str) -> None:
    """``validate.go: checkStepInputs`` / ``checkStepTriggers``: ``<step>.(inputs|outputs)[.<tensor>]``."""
    for i, step in enumerate(p.steps):
        for j, ref in enumerate(getattr(step, attribute)):
            where = f"spec.steps[{i}].{attribute}[{j}]"
            if not ref.strip() or ref.startswith("."):
                raise _Invalid(where, f"pipeline {p.name} step {step.name} has an empty {what}")
            parts = ref.split(".")
            if len(parts) not in (2, 3) or parts[1] not in ("inputs", "outputs"):
                raise _Invalid(
                    where, f"pipeline step {what} invalid pipeline {p.name} step {step.name} input step {ref}."
                )


def _check_step_inputs(p: Pipeline) -> None:
    _check_references(p, "inputs", "input")


def _check_step_triggers(p: Pipeline) -> None:
    _check_references(p, "triggers", "trigger")


def _check_step_references_exist(p: Pipeline) -> None:
    """``validate.go: checkStepReferencesExist``. Seldon does not check triggers here (an unknown
    trigger step then crashes its cycle check); the gateway reports them like inputs."""
    names = set(p.step_names)
    for i, step in enumerate(p.steps):
        for attribute in ("inputs", "triggers"):
            for j, ref in enumerate(getattr(step, attribute)):
                if _step_of(ref) not in names and _step_of(ref) != p.name:
                    raise _Invalid(
                        f"spec.steps[{i}].{attribute}[{j}]",
                        f"pipeline {p.name} step {step.name} has input {_step_of(ref)} for step that does not exist",
                    )
    for j, ref in enumerate(p.output.steps if p.output else ()):
        if _step_of(ref) not in names:
            raise _Invalid(f"spec.output.steps[{j}]", f"pipeline {p.name} output step {_step_of(ref)} not found")


def _check_pipeline_outputs(p: Pipeline) -> None:
    """``validate.go: checkPipelineOutputs``."""
    for j, ref in enumerate(p.output.steps if p.output else ()):
        parts = ref.split(".")
        if len(parts) not in (2, 3) or parts[1] not in ("inputs", "outputs"):
            raise _Invalid(f"spec.output.steps[{j}]", f"pipeline {p.name} output specifier {ref} invalid")


def _upstream(p: Pipeline, step: Step) -> list[str]:
    """The steps a step waits for. References to the pipeline's own inputs are not edges; a
    reference to its outputs waits for the output's steps (Seldon skips it and would hang)."""
    found: list[str] = []
    for ref in step.inputs + step.triggers:
        name = _step_of(ref)
        if name != p.name:
            found.append(name)
        elif ref.split(".")[1] == "outputs" and p.output:
            found.extend(_step_of(r) for r in p.output.steps)
    return found


def _check_for_cycles(p: Pipeline) -> None:
    """``validate.go: checkForCycles``: a depth-first walk over inputs and triggers."""
    steps = {s.name: s for s in p.steps}
    checked: set[str] = set()

    def visit(name: str, visiting: set[str]) -> None:
        visiting.add(name)
        for upstream in dict.fromkeys(_upstream(p, steps[name])):
            if upstream in visiting:
                raise _Invalid("spec.steps", f"pipeline {p.name} has a cycle")
            if upstream not in checked:
                visit(upstream, visiting)
        visiting.discard(name)
        checked.add(name)

    for step in p.steps:
        if step.name not in checked:
            visit(step.name, set())


def _check_inputs_and_triggers_differ(p: Pipeline) -> None:
    """``validate.go: checkInputsAndTriggersDiffer``: a step must not read a step's data and also
    wait for it as a trigger.

    Seldon's code compares each normalised trigger (``a.outputs``) with the inputs' step names
    (``a``), so it never matches; the gateway compares step names, as the message says. The
    pipeline's own inputs are exempt: ``samples/pipelines/trigger-joins.yaml`` reads
    ``<pipeline>.inputs.INPUT`` and triggers on ``<pipeline>.inputs.ok1``.
    """
    for i, step in enumerate(p.steps):
        input_steps = {_step_of(ref) for ref in step.inputs} - {p.name}
        for j, ref in enumerate(step.triggers):
            if _step_of(ref) in input_steps:
                raise _Invalid(
                    f"spec.steps[{i}].triggers[{j}]",
                    f"pipeline {p.name} : inputs and triggers must differ, but found {_step_of(ref)} in both",
                )


PIPELINE_CHECKS = (
    _check_pipeline_name,
    _check_steps_exist,
    _check_step_name_not_pipeline_name,
    _check_step_inputs,
    _check_step_triggers,
    _check_step_references_exist,
    _check_pipeline_outputs,
    _check_for_cycles,
    _check_inputs_and_triggers_differ,
)
"""The scheduler's checks in Seldon's order (``validate.go: validate``), before the ``input`` check."""


def _normalise_external(reference: str) -> str:
    """``utils.go: updateExternalInputSteps``: ``P`` and ``P.step.S`` default to their outputs."""
    parts = reference.split(".")
    if len(parts) == 1 or (len(parts) == 3 and parts[1] == "step"):
        return f"{reference}.outputs"
    return reference


_INPUT_REASONS = {
    "empty": "At least one pipeline input must be specified",
    "blank": "Input name must not be empty",
    "name only": "A Pipeline name must also specify one of inputs, outputs or a step name",
    "prefix": "A Pipeline inputs referencing another pipeline must be <pipeineName>.(inputs|outputs|step.<stepName>)",
    "step suffix": "A pipeline step must be <pipelineName>.step.<stepName>.(inputs|outputs)",
    "too long": "The input is too long. It must be <pipelineName>.(inputs|outputs).(tensorName)? or "
    "<pipelineName>.step.<stepName>.<inputs|outputs>.<tensorName>",
}


def _external_input_problem(reference: str) -> str | None:
    """``validate.go: checkPipelineInput`` for one external input; a key of ``_INPUT_REASONS``."""
    if not reference.strip():
        return "blank"
    parts = reference.split(".")
    data = ("inputs", "outputs")
    if len(parts) == 1:
        return "name only"
    if len(parts) == 2:
        return None if parts[1] in data else "prefix"
    if len(parts) == 3:
        if parts[1] not in data + ("step",):
            return "prefix"
        return "step suffix" if parts[1] == "step" else None
    if parts[1] not in data + ("step",):
        return "prefix"
    if parts[3] not in data:
        return "step suffix"
    if parts[1] in data:
        return "prefix"
    return "too long" if len(parts) > 5 else None


def _check_pipeline_input(pipeline: str, raw: dict | None) -> None:
    """``validate.go: checkPipelineInput``, the scheduler's last check, on ``spec.input``."""
    if raw is None:
        return
    inputs = [_normalise_external(ref) for ref in _strings(raw.get("externalInputs"), "spec.input.externalInputs")]
    if not inputs:
        raise _Invalid("spec.input.externalInputs", f"pipeline {pipeline} input  is invalid. {_INPUT_REASONS['empty']}")
    for j, ref in enumerate(inputs):
        problem = _external_input_problem(ref)
        if problem:
            reason = _INPUT_REASONS[problem]
            raise _Invalid(f"spec.input.externalInputs[{j}]", f"pipeline {pipeline} input {ref} is invalid. {reason}")


def _warn_unmatched_tensor_maps(p: Pipeline) -> None:
    """A tensorMap key is ``<step>.(inputs|outputs).<tensor>``; Seldon silently ignores any other
    (``scheduler/pkg/kafka/topics.go: GetFullyQualifiedTensorMap``), so say so."""
    maps = [(f"steps {s.name}", s.tensor_map) for s in p.steps]
    maps += [("output", p.output.tensor_map)] if p.output else []
    for owner, tensor_map in maps:
        for key in tensor_map:
            parts = key.split(".")
            if len(parts) != 3 or parts[1] not in ("inputs", "outputs"):
                log.warning(
                    "pipeline %s %s: tensorMap key %r never matches: keys are <step>.(inputs|outputs).<tensor>",
                    p.name, owner, key,
                )  # fmt: skip


# --- Model, Server, ServerConfig, Experiment --------------------------------------------------

_QUANTITY = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")
_QUANTITY_FACTORS = {
    "": 1, "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


def quantity_bytes(quantity: int | str) -> int | None:
    """A Kubernetes quantity (``100Ki``, ``1.5Gi``, ``2e6``) as a whole number of bytes, or None
    when it is not one (as ``resource.Quantity.AsInt64`` fails for ``0.5`` or ``100m``)."""
    if isinstance(quantity, int):
        return quantity
    match = _QUANTITY.match(str(quantity).strip())
    if not match:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        if suffix[:1] in ("e", "E"):
            value = Decimal(number).scaleb(int(suffix[1:]))
        else:
            value = Decimal(number) * _QUANTITY_FACTORS[suffix]
    except InvalidOperation:
        return None
    return int(value) if value == value.to_integral_value() and value >= 0 else None


def _scaling(spec: dict) -> tuple[int, int, int | None]:
    """``operator/internal/utils.go: GetValidatedScalingSpec``: (replicas, min, max) or Seldon's error."""
    replicas = _typed(spec.get("replicas"), "spec.replicas", "integer")
    low = _typed(spec.get("minReplicas"), "spec.minReplicas", "integer")
    high = _typed(spec.get("maxReplicas"), "spec.maxReplicas", "integer")
    prefix = "scaling spec is invalid: "
    result, minimum, maximum = 1, 0, None
    if replicas is not None and replicas >= 0:
        result = replicas
    elif low is not None and low > 0:
        if replicas is not None and replicas < low:
            raise _Invalid(
                "spec.replicas", f"{prefix}number of replicas {replicas} cannot be less than minimum replica {low}"
            )
        result = low
    if low is not None and low > 0:
        minimum = low
        if result < minimum:
            raise _Invalid("spec.replicas", f"{prefix}number of replicas {result} must be >= min replicas {minimum}")
    if high is not None and high > 0:
        maximum = high
        if minimum > maximum:
            raise _Invalid(
                "spec.minReplicas",
                f"{prefix}min number of replicas {minimum} must be <= max number of replicas {maximum}",
            )
        if result > maximum:
            raise _Invalid("spec.replicas", f"{prefix}number of replicas {result} must be <= max replicas {maximum}")
    return result, minimum, maximum


def _one_replica(kind: str, replicas: int) -> None:
    """The gateway runs at least one copy of everything (:mod:`tunesmith.gateway.replicas`)."""
    if replicas < 1 and not _FOR_CLUSTER.get():
        why = "a resource scaled to zero is not served"
        raise _Invalid("spec.replicas", f"not supported by the local gateway: {kind} replicas {replicas}: {why}")


def _build_model(name: str, spec: dict) -> Model:
    """The operator's ``AsSchedulerModel`` (``operator/apis/mlops/v1alpha1/model_types.go``) and the
    scheduler's name check (``scheduler/pkg/store/memory.go: UpdateModel``), in that order."""
    storage_uri = _typed(_required(spec, "storageUri"), "spec.storageUri", "string")
    if spec.get("explainer") is not None and spec.get("llm") is not None:
        raise _Invalid("spec", "Can't have both explainer and llm in model spec.")
    model_type = _typed(spec.get("modelType"), "spec.modelType", "string")
    requirements = _strings(spec.get("requirements"), "spec.requirements") + ((model_type,) if model_type else ())
    replicas, _, _ = _scaling(spec)  # minReplicas, maxReplicas: refused (FIELDS)
    memory = _model_memory(spec.get("memory"))
    if not NAME_PATTERN.match(name):
        raise _Invalid(
            "metadata.name",
            f"Model {name} does not have a valid name - it must be alphanumeric and not contains dots (.)",
        )
    _one_replica("Model", replicas)
    return Model(
        name=name,
        storage_uri=storage_uri,
        artifact_version=_typed(spec.get("artifactVersion"), "spec.artifactVersion", "integer"),
        model_type=model_type,
        requirements=requirements,
        memory=memory,
        server=_typed(spec.get("server"), "spec.server", "string"),
        parameters=_model_parameters(spec.get("parameters")),
        replicas=replicas,
    )


def _model_memory(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _Invalid("spec.memory", f"{value!r} is not valid under any of the given schemas")
    memory = quantity_bytes(value)
    if memory is None:
        raise _Invalid("spec.memory", f"Can't convert model memory quantity to bytes. {value}")
    return memory


def _model_parameters(value: Any) -> dict[str, str]:
    """``parameters: [{name, value}]``; a later name wins, as in ``SetExtraParameters``."""
    parameters: dict[str, str] = {}
    for i, item in enumerate(_typed(value, "spec.parameters", "array") or []):
        where = f"spec.parameters[{i}]"
        item = _typed(item, where, "object")
        key = _typed(_required(item, "name", where), f"{where}.name", "string")
        parameters[key] = _typed(_required(item, "value", where), f"{where}.value", "string")
    return parameters


def _build_server(name: str, spec: dict) -> Server:
    server_config = _typed(_required(spec, "serverConfig"), "spec.serverConfig", "string")
    replicas, _, _ = _scaling(spec)  # minReplicas, maxReplicas: refused (FIELDS)
    _check_server_like_name("Server", name)
    _one_replica("Server", replicas)
    return Server(
        name=name,
        server_config=server_config,
        capabilities=_strings(spec.get("capabilities"), "spec.capabilities"),
        extra_capabilities=_strings(spec.get("extraCapabilities"), "spec.extraCapabilities"),
        replicas=replicas,
    )


def _build_server_config(name: str, spec: dict) -> ServerConfig:
    _required(spec, "podSpec")
    _check_server_like_name("ServerConfig", name)
    return ServerConfig(name=name)


def _check_server_like_name(kind: str, name: str) -> None:
    """A Server's name becomes pod host names and a ``server`` reference, so it follows the Model
    rule (``samples/servers/mlserver-badname.yaml`` is ``mlserver.name``)."""
    if not NAME_PATTERN.match(name):
        raise _Invalid(
            "metadata.name",
            f"{kind} {name} does not have a valid name - it must be alphanumeric and not contains dots (.)",
        )


def _build_experiment(name: str, spec: dict) -> Experiment:
    candidates = []
    for i, item in enumerate(_typed(_required(spec, "candidates"), "spec.candidates", "array")):
        where = f"spec.candidates[{i}]"
        item = _typed(item, where, "object")
        candidates.append(
            Candidate(
                name=_typed(_required(item, "name", where), f"{where}.name", "string"),
                weight=_typed(_required(item, "weight", where), f"{where}.weight", "integer"),
            )
        )
    mirror = _typed(spec.get("mirror"), "spec.mirror", "object")
    if mirror is not None:
        mirror = Mirror(
            name=_typed(_required(mirror, "name", "spec.mirror"), "spec.mirror.name", "string"),
            percent=_typed(_required(mirror, "percent", "spec.mirror"), "spec.mirror.percent", "integer"),
        )
    resource_type = _typed(spec.get("resourceType"), "spec.resourceType", "string")
    return Experiment(
        name=name,
        candidates=tuple(candidates),
        default=_typed(spec.get("default"), "spec.default", "string"),
        mirror=mirror,
        resource_type="pipeline" if resource_type == "pipeline" else "model",
    )


_BUILDERS = {
    "Pipeline": _build_pipeline,
    "Model": _build_model,
    "Server": _build_server,
    "ServerConfig": _build_server_config,
    "Experiment": _build_experiment,
}


# --- refused and ignored fields ---------------------------------------------------------------


def _values_at(value: Any, path: str, where: str = "spec") -> Iterator[tuple[str, Any]]:
    """Every (field path, value) that a FIELDS path such as ``steps[].batch`` names in a spec."""
    head, _, rest = path.partition(".")
    is_list = head.endswith("[]")
    key = head[:-2] if is_list else head
    if not isinstance(value, dict) or value.get(key) is None:
        return
    inner, where = value[key], _path(where, key)
    items = list(enumerate(inner)) if is_list and isinstance(inner, list) else [(None, inner)]
    for i, item in items:
        item_where = where if i is None else _path(where, i)
        if rest:
            yield from _values_at(item, rest, item_where)
        else:
            yield item_where, item


def _refuse_unsupported(kind: str, spec: dict) -> None:
    """A refused field of :data:`FIELDS` that is set to a value with an effect."""
    if _FOR_CLUSTER.get():
        return
    for path in FIELDS[kind]:
        status, why = field_status(kind, path)
        if status != "refused":
            continue
        matters = _REFUSED_ONLY_WHEN.get((kind, path), lambda value: True)
        for where, value in _values_at(spec, path):
            if matters(value):
                raise _Invalid(where, f"not supported by the local gateway: {why}")


def _note_ignored(kind: str, name: str, spec: dict) -> None:
    for path in FIELDS[kind]:
        status, why = field_status(kind, path)
        if status == "ignored":
            for where, _ in _values_at(spec, path):
                log.info("%s %s: %s is ignored by the local gateway: %s", kind, name, where, why)


# --- checks across manifests ------------------------------------------------------------------


STOCK_SERVER_CONFIGS = ("mlserver", "triton")
"""The ServerConfigs a Seldon Core v2 installation brings (``operator/config/serverconfigs/``)."""
_FOR_CLUSTER: contextvars.ContextVar[bool] = contextvars.ContextVar("for_cluster", default=False)
"""Set by ``load(..., for_cluster=True)`` for the length of one load (see :func:`load`)."""


def _check_together(found: Manifests) -> None:
    _check_server_configs(found)
    _check_step_models(found)
    _place_models(found)
    _check_experiments(found)
    if not _FOR_CLUSTER.get():
        _check_experiments_served(found)


def _check_server_configs(found: Manifests) -> None:
    """A Server's ``serverConfig`` must exist; the stock ``mlserver`` one always does here (and a
    cluster has the stock ``triton`` one too)."""
    stock = STOCK_SERVER_CONFIGS if _FOR_CLUSTER.get() else (DEFAULT_SERVER,)
    for server in found.servers.values():
        config = server.server_config
        if config in found.server_configs or config in stock:
            continue
        file = found.file_of("Server", server.name)
        if config == "triton" and not _FOR_CLUSTER.get():
            why = "only MLServer runs locally"
            raise ManifestError(file, "spec.serverConfig", f"not supported by the local gateway: {why}")
        raise ManifestError(file, "spec.serverConfig", f'serverconfigs.mlops.seldon.io "{config}" not found')


def _check_step_models(found: Manifests) -> None:
    """Each step calls the Model of the same name. Seldon waits for it (``ModelsReady`` stays
    false); locally every manifest is at hand, so a missing one is a mistake."""
    for pipeline in found.pipelines.values():
        for i, step in enumerate(pipeline.steps):
            if step.name not in found.models:
                raise ManifestError(
                    found.file_of("Pipeline", pipeline.name),
                    f"spec.steps[{i}].name",
                    f"pipeline {pipeline.name} step {step.name} calls model {step.name}, "
                    "which no Model manifest defines",
                )


def _servers(found: Manifests) -> dict[str, Server]:
    """The Servers models can go to: the manifests' and the stock ``mlserver``."""
    servers = {DEFAULT_SERVER: Server(name=DEFAULT_SERVER)}
    servers.update(found.servers)
    return servers


def _place_models(found: Manifests) -> None:
    """The scheduler's filters (``scheduler/pkg/scheduler/filters/``): the pinned ``server`` if
    any, and every requirement among the server's capabilities (``serverrequirements.go``); then,
    locally, a server with at least as many replicas as the model (``scheduler.go:
    findAndUpdateToServers``; on a cluster a server may scale up, so that check is left to Seldon)."""
    servers = _servers(found)
    for model in found.models.values():
        candidates = [model.server] if model.server else list(servers)
        fits = [name for name in candidates if name in servers and _satisfies(model, servers[name])]
        if not fits:
            raise ManifestError(
                found.file_of("Model", model.name),
                "spec.server" if model.server else "spec.requirements",
                "Failed to schedule model as no matching servers are available ("
                + "; ".join(_mismatch(model, name, servers.get(name)) for name in candidates) + ")",
            )  # fmt: skip
        enough = [name for name in fits if servers[name].replicas >= model.replicas]
        if not enough and not _FOR_CLUSTER.get():
            raise ManifestError(
                found.file_of("Model", model.name), "spec.replicas",
                "Failed to schedule model as no matching server had enough suitable replicas ("
                + "; ".join(f"server {name}: {servers[name].replicas} replicas, model replicas {model.replicas}"
                            for name in fits) + ")",
            )  # fmt: skip
        found.placement[model.name] = (enough or fits)[0]


def _satisfies(model: Model, server: Server) -> bool:
    capabilities = server.effective_capabilities
    return all(r.strip() in capabilities for r in model.requirements)


def _go_list(items: Iterable[str]) -> str:
    return "[" + " ".join(items) + "]"


def _mismatch(model: Model, name: str, server: Server | None) -> str:
    """As ``ServerRequirementFilter.Description``."""
    if server is None:
        return f"server {name}: no such Server"
    return (
        f"server {name}: model requirements {_go_list(model.requirements)}, "
        f"server capabilities {_go_list(server.effective_capabilities)}"
    )


def _check_experiments(found: Manifests) -> None:
    """``scheduler/pkg/store/experiment/validate.go: validate``, in Seldon's order."""
    baselines: dict[tuple[str, str], str] = {}
    for experiment in found.experiments.values():
        file = found.file_of("Experiment", experiment.name)
        try:
            _check_experiment(experiment, baselines)
        except _Invalid as bad:
            raise ManifestError(file, bad.field, bad.message) from None
        if experiment.default:
            baselines[(experiment.resource_type, experiment.default)] = experiment.name


def _check_experiment(e: Experiment, baselines: Mapping[tuple[str, str], str]) -> None:
    if e.default and (e.resource_type, e.default) in baselines:
        raise _Invalid(
            "spec.default",
            f"Resource {e.default} already in experiment {baselines[(e.resource_type, e.default)]} as a baseline. "
            "A model or pipeline can only appear in one experiment as a baseline",
        )
    if e.default and e.default not in {c.name for c in e.candidates}:
        raise _Invalid(
            "spec.default", f"default model/pipeline {e.default} not found in experiment {e.name} candidates"
        )
    if not e.candidates and e.mirror is None:
        raise _Invalid("spec.candidates", f"experiment {e.name} has no candidates or mirror")
    names = [c.name for c in e.candidates] + ([e.mirror.name] if e.mirror else [])
    for i, name in enumerate(names):
        if name in names[:i]:
            raise _Invalid(
                "spec.mirror" if i == len(e.candidates) else f"spec.candidates[{i}]",
                f"each candidate and mirror must be unique but found resource {name} duplicated in experiment {e.name}",
            )


def _check_experiments_served(found: Manifests) -> None:
    """What the local gateway needs to serve an Experiment (:mod:`tunesmith.gateway.experiments`).

    On a cluster an Experiment whose candidates are missing waits for them (``candidatesReady:
    false``); here every manifest is at hand, so a missing one is a mistake.
    """
    stepped = {step.name for pipeline in found.pipelines.values() for step in pipeline.steps}
    for e in found.experiments.values():
        file = found.file_of("Experiment", e.name)
        pool, what = (found.pipelines, "Pipeline") if e.resource_type == "pipeline" else (found.models, "Model")
        refusal = "not supported by the local gateway: "
        if not e.candidates:
            raise ManifestError(file, "spec.candidates", refusal + f"experiment {e.name} has a mirror but no candidates: "
                                "no arm would answer the caller")
        if not any(c.weight > 0 for c in e.candidates):
            raise ManifestError(file, "spec.candidates", refusal + f"the weights of experiment {e.name} add up to 0: "
                                "no arm would answer the caller")
        for i, candidate in enumerate(e.candidates):
            if candidate.name not in pool:
                raise ManifestError(file, f"spec.candidates[{i}].name",
                                    f"experiment {e.name}: no {what} {candidate.name} in the manifests")
        if e.mirror is not None and e.mirror.name not in pool:
            raise ManifestError(file, "spec.mirror.name", f"experiment {e.name}: no {what} {e.mirror.name} in the manifests")
        if e.default and e.resource_type == "model" and e.default in stepped:
            raise ManifestError(
                file, "spec.default",
                refusal + f"pipeline steps call model {e.default}; on a cluster their calls would be split by experiment "
                f"{e.name} too, which the local pipeline executor does not do. Leave out default and call "
                f"Seldon-Model: {e.name}.experiment",
            )  # fmt: skip


# --- tensors the producing models declare -----------------------------------------------------


def check_tensors(manifests: Manifests, outputs: Mapping[str, Sequence[str]]) -> None:
    """Refuse a reference ``<step>.outputs.<tensor>`` to a tensor the step's model never returns.

    Seldon cannot know (the reference just never fires); the gateway can, for models whose
    ``model-settings.json`` declares its ``outputs``. ``outputs`` maps model name to those names;
    models missing from it are not checked.
    """
    for pipeline in manifests.pipelines.values():
        file = manifests.file_of("Pipeline", pipeline.name)
        for where, ref in _output_tensor_references(pipeline):
            step, _, tensor = ref.split(".")
            declared = outputs.get(step)
            if declared and tensor not in declared:
                raise ManifestError(
                    file, where,
                    f"pipeline {pipeline.name} refers to {ref}, but model {step} declares only the outputs "
                    f"{_go_list(declared)}",
                )  # fmt: skip


def _output_tensor_references(p: Pipeline) -> Iterator[tuple[str, str]]:
    """(field, ``<step>.outputs.<tensor>``) for every such reference and tensorMap key."""
    found: list[tuple[str, str]] = []
    for i, step in enumerate(p.steps):
        for attribute in ("inputs", "triggers"):
            found += [(f"spec.steps[{i}].{attribute}[{j}]", ref) for j, ref in enumerate(getattr(step, attribute))]
        found += [(f"spec.steps[{i}].tensorMap", key) for key in step.tensor_map]
    if p.output:
        found += [(f"spec.output.steps[{j}]", ref) for j, ref in enumerate(p.output.steps)]
        found += [("spec.output.tensorMap", key) for key in p.output.tensor_map]
    return ((where, ref) for where, ref in found if _is_output_tensor(p, ref))


def _is_output_tensor(p: Pipeline, ref: str) -> bool:
    parts = ref.split(".")
    return len(parts) == 3 and parts[1] == "outputs" and parts[0] != p.name
