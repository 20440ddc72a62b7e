"""Read manifest files and check each document in the order a real installation would.

:func:`load` (a folder or files) and :func:`loads` (YAML text) read the documents, check each one's
``apiVersion``, ``kind`` and name, its fields (:mod:`.crds`, :mod:`.fields`), build its dataclass
(:mod:`.pipelines`, :mod:`.builders`), then check them all together (:mod:`.cross_checks`). A
problem becomes a :class:`ManifestError` naming the file, and the document when a file has several.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tunesmith.gateway.manifests.builders import (
    _build_experiment,
    _build_model,
    _build_server,
    _build_server_config,
)
from tunesmith.gateway.manifests.crds import (
    _check_schema,
    _check_unknown_fields,
    _crd_schema,
    _validator,
    default_crd_dir,
)
from tunesmith.gateway.manifests.cross_checks import _check_together
from tunesmith.gateway.manifests.fields import _check_unknown_fields_builtin, _note_ignored, _refuse_unsupported
from tunesmith.gateway.manifests.kinds import (
    _FOR_CLUSTER,
    API_VERSION,
    KINDS,
    ManifestError,
    Manifests,
    _Invalid,
    _yaml_loader,
)
from tunesmith.gateway.manifests.pipelines import _build_pipeline


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
    """Check one document (steps 1 to 5 of the package docstring, :mod:`tunesmith.gateway.manifests`) and build its dataclass."""
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


_BUILDERS = {
    "Pipeline": _build_pipeline,
    "Model": _build_model,
    "Server": _build_server,
    "ServerConfig": _build_server_config,
    "Experiment": _build_experiment,
}
