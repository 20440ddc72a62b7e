"""Seldon's CRD files: where they are, and the two checks their schemas make possible.

A real installation checks a document against its kind's CRD (``openAPIV3Schema``): Kubernetes
validates types, enums and required keys, and ``seldon ... load`` refuses unknown fields. Both
checks are here, with the CRD files from :func:`default_crd_dir` or the ``crd_dir`` given to
:func:`~tunesmith.gateway.manifests.load`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tunesmith import paths
from tunesmith.gateway.manifests.kinds import CRD_FILES, _Invalid, _path, _yaml_loader


def default_crd_dir() -> Path | None:
    """The shared copy of Seldon's CRDs beside the repository, when it is there."""
    crds = paths.REPO.parent / "shared" / "seldon-crds"
    return crds if crds.is_dir() else None


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
