"""Model, Server, ServerConfig and Experiment specs into dataclasses, as Seldon's operator reads them.

Each builder converts one spec with Seldon's rules and messages: the operator's model conversion
(``model_types.go: AsSchedulerModel``) with Kubernetes memory quantities, the scaling spec
(``replicas``, ``minReplicas``, ``maxReplicas``), and the name rule Servers share with Models.
Pipelines have their own module (:mod:`.pipelines`).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from tunesmith.gateway.manifests.kinds import (
    _FOR_CLUSTER,
    NAME_PATTERN,
    Candidate,
    Experiment,
    Mirror,
    Model,
    Server,
    ServerConfig,
    _Invalid,
    _required,
    _strings,
    _typed,
)


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
