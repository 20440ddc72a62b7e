"""Turn each Model's ``storageUri`` into a model folder that MLServer serves under the Model's name.

In a cluster, Seldon's agent copies ``storageUri`` with rclone into the server's model repository,
picks the version folder and rewrites ``model-settings.json``: the MLServer model is renamed after
the Seldon Model (``scheduler/pkg/agent/repository/model_repository.go``,
``.../repository/mlserver/mlserver.go``). Locally a ``storageUri`` is one of:

* a path: absolute, ``file://<path>``, or relative to the folder of the manifest that names it;
* ``<MODELS_URI>/<folder>``: the models URI (env ``MODELS_URI``, default
  ``gs://tunesmith-workshop/models``) stands for a local models folder, by default ``models/``
  beside the manifests folder. The same manifests then work unchanged against a cluster whose
  bucket holds the same folders.

Anything else (another bucket, ``s3://``, ``https://``) is a :class:`ManifestError` that names the
Model's file and ``spec.storageUri``.

:func:`build_repository` links each model's files into ``<into>/<model>/`` and writes its
rewritten ``model-settings.json`` there, so MLServer serves every Seldon Model under its Seldon
name, with the Model's ``spec.parameters`` in ``parameters.extra``. The storage folders
themselves are never written to.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tunesmith.gateway.manifests import Manifests, ManifestError, Model, check_tensors

MODELS_URI_ENV = "MODELS_URI"
DEFAULT_MODELS_URI = "gs://tunesmith-workshop/models"
SETTINGS_FILE = "model-settings.json"
REPOSITORY_MARKER = ".seldon-repository"
"""Written into a built repository: only a folder holding it is ever emptied by a rebuild."""


def models_uri() -> str:
    """The URI prefix that stands for the local models folder."""
    return os.environ.get(MODELS_URI_ENV, DEFAULT_MODELS_URI).rstrip("/")


def default_models_dir(manifests: Manifests) -> Path:
    """``models/`` beside the manifests folder."""
    return manifests.folder.parent / "models"


def storage_folder(model: Model, manifests: Manifests, *, models_dir: Path | None = None) -> Path:
    """The local folder a Model's ``storageUri`` names; it must exist."""
    file = manifests.file_of("Model", model.name)
    uri = model.storage_uri.strip()
    prefix = models_uri()
    if not uri:
        raise ManifestError(file, "spec.storageUri", "an empty storageUri names no model folder")
    if uri == prefix or uri.startswith(prefix + "/"):
        folder = (models_dir or default_models_dir(manifests)) / uri[len(prefix) :].lstrip("/")
    elif uri.startswith("file://"):
        folder = file.parent / uri[len("file://") :]
    elif "://" in uri:
        raise ManifestError(
            file, "spec.storageUri",
            f"{uri} is not local: use a path, file://<path> or {prefix}/<folder> "
            f"({MODELS_URI_ENV}, the models URI, stands for {models_dir or default_models_dir(manifests)})",
        )  # fmt: skip
    else:
        folder = file.parent / uri
    if not folder.is_dir():
        raise ManifestError(file, "spec.storageUri", f"{uri}: no such folder ({folder})")
    return folder


def version_folder(model: Model, folder: Path, file: Path) -> Path:
    """The folder holding the model's ``model-settings.json``, as Seldon's
    ``FindModelVersionFolder`` picks it: a top-level file always wins; otherwise the folder named
    ``artifactVersion``; otherwise the highest numbered folder."""
    if (folder / SETTINGS_FILE).is_file():
        return folder
    candidates = [p.parent for p in sorted(folder.rglob(SETTINGS_FILE)) if p.parent != folder]
    if model.artifact_version is not None:
        found = [c for c in candidates if c.name == str(model.artifact_version)]
        if len(found) > 1:
            raise ManifestError(
                file, "spec.artifactVersion",
                f"found multiple folders with version {model.artifact_version} {[str(f) for f in found]}",
            )  # fmt: skip
        if not found:
            raise ManifestError(
                file, "spec.artifactVersion",
                f"Failed to find an mlserver model-settings.json file for model in {folder} for {model.name} "
                f"for passed in version {model.artifact_version}",
            )  # fmt: skip
        return found[0]
    numbered = [c for c in candidates if c.name.isdigit()]
    if not numbered:
        raise ManifestError(file, "spec.storageUri", f"no {SETTINGS_FILE} in {folder}: MLServer needs one to serve it")
    return max(numbered, key=lambda c: int(c.name))


def seldon_settings(settings: dict, model: Model, source: Path) -> dict:
    """``model-settings.json`` as Seldon's agent rewrites it for a Model.

    ``name`` becomes the Seldon Model name and ``parameters.version`` goes (the agent's
    ``updateNameAndVersion`` renames to ``<model>_<version>``; locally one version is served under
    the plain name, which is what callers use). ``spec.parameters`` are merged into
    ``parameters.extra`` as strings (``SetExtraParameters``). A relative ``parameters.uri`` is made
    absolute so that it still means the storage folder's files.
    """
    settings = copy.deepcopy(settings)
    settings["name"] = model.name
    parameters = settings.get("parameters") or {}
    parameters.pop("version", None)
    if model.parameters:
        parameters["extra"] = {**(parameters.get("extra") or {}), **model.parameters}
    uri = parameters.get("uri")
    if isinstance(uri, str) and "://" not in uri and not os.path.isabs(uri):
        parameters["uri"] = os.path.normpath(source / uri)
    if parameters:
        settings["parameters"] = parameters
    else:
        settings.pop("parameters", None)
    return settings


@dataclass(frozen=True)
class _Planned:
    model: Model
    source: Path
    settings: dict


def _plan(model: Model, manifests: Manifests, models_dir: Path | None) -> _Planned:
    file = manifests.file_of("Model", model.name)
    source = version_folder(model, storage_folder(model, manifests, models_dir=models_dir), file)
    try:
        settings = json.loads((source / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError(file, "spec.storageUri", f"{source / SETTINGS_FILE}: {exc}") from None
    if not isinstance(settings, dict):
        raise ManifestError(file, "spec.storageUri", f"{source / SETTINGS_FILE}: not a JSON object")
    return _Planned(model, source, settings)


def declared_outputs(settings: dict) -> list[str]:
    """The output tensor names a ``model-settings.json`` declares (maybe none)."""
    outputs = settings.get("outputs") or []
    return [o["name"] for o in outputs if isinstance(o, dict) and isinstance(o.get("name"), str)]


def build_repository(manifests: Manifests, into: Path, *, models_dir: Path | None = None) -> dict[str, Path]:
    """Make ``into/<model>/`` for every Model, ready for ``mlserver start``; return those folders.

    Each folder links to every file and folder of the model's storage folder except
    ``model-settings.json``, which is written by :func:`seldon_settings`, and sub-folders that hold
    another model's settings. All storage URIs are
    resolved, and pipeline references to output tensors checked against the models' declared
    outputs (:func:`tunesmith.gateway.manifests.check_tensors`), before anything is written.
    ``into`` is rebuilt from scratch; a non-empty folder that was not built here is refused.
    """
    planned = [_plan(model, manifests, models_dir) for model in manifests.models.values()]
    check_tensors(manifests, {p.model.name: declared_outputs(p.settings) for p in planned})
    _fresh_repository(Path(into))
    return {p.model.name: _write_model(p, Path(into)) for p in planned}


def _fresh_repository(into: Path) -> None:
    if into.exists() and any(into.iterdir()):
        if not (into / REPOSITORY_MARKER).exists():
            raise FileExistsError(f"{into} is not empty and was not built by build_repository: choose another folder")
        for entry in into.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    into.mkdir(parents=True, exist_ok=True)
    (into / REPOSITORY_MARKER).write_text("built by tunesmith.gateway.storage.build_repository\n", encoding="utf-8")


def _write_model(planned: _Planned, into: Path) -> Path:
    target = into / planned.model.name
    target.mkdir()
    for entry in sorted(planned.source.iterdir()):
        if entry.name != SETTINGS_FILE and not _holds_other_model(entry):
            (target / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    settings = seldon_settings(planned.settings, planned.model, planned.source.resolve())
    (target / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    return target


def _holds_other_model(entry: Path) -> bool:
    """A sub-folder with its own ``model-settings.json`` (another version): MLServer searches the
    repository recursively and would serve it as one more model, so it is not linked."""
    return entry.is_dir() and next(entry.rglob(SETTINGS_FILE), None) is not None
