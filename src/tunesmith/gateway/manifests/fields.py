"""What the local gateway does with each field of each kind: implemented, ignored or refused.

:data:`FIELDS` is the one table of it; the README's table is generated from it. This module applies
it to a spec: it refuses a refused field set to a value with an effect, logs a note for an ignored
one, and, when Seldon's CRD files are not at hand, finds unknown fields with the table's paths
instead of the CRD schema (:mod:`.crds`).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from tunesmith.gateway.manifests.kinds import _FOR_CLUSTER, _Invalid, _path, log


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


# --- unknown fields without the CRD files -----------------------------------------------------


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
