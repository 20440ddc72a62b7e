"""Seldon Core v2 ``Model`` and ``Experiment`` manifests as the stage-3 notebooks write them into
``manifests/``.

Notebooks 3.1 and 3.4 explain the fields and print what these functions write; the notebooks add
their resources with one call each instead of repeating the YAML. A Model names a folder under the
models URI (``$MODELS_URI``: a bucket on a cluster, your ``models/`` folder for the local gateway),
asks for a server with this project installed (``requirements: [tunesmith]``), states the
``memory`` it adds to a server, and passes ``parameters``, which a runtime reads in
``parameters.extra``, as strings. An Experiment splits traffic between ``candidates`` by weight and
may ``mirror`` every request to one more.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.gateway.manifests import API_VERSION
from tunesmith.gateway.storage import models_uri


def model_yaml(name: str, folder: str, memory: str, parameters: dict[str, object] | None = None) -> str:
    """The manifest of Model ``name``, serving ``<models URI>/<folder>``."""
    text = f"""apiVersion: {API_VERSION}
kind: Model
metadata:
  name: {name}
spec:
  storageUri: {models_uri()}/{folder}
  requirements:
    - tunesmith
  memory: {memory}
"""
    if parameters:
        text += "  parameters:\n" + "".join(f'    - name: {k}\n      value: "{v}"\n' for k, v in parameters.items())
    return text


def experiment_yaml(name: str, resource_type: str, weights: dict[str, int], mirror: str | None = None) -> str:
    """The manifest of Experiment ``name``: ``weights`` per candidate, and a ``mirror`` at 100 %."""
    arms = "".join(f"    - name: {candidate}\n      weight: {weight}\n" for candidate, weight in weights.items())
    text = (f"apiVersion: {API_VERSION}\nkind: Experiment\nmetadata:\n  name: {name}\nspec:\n"
            f"  resourceType: {resource_type}\n  candidates:\n{arms}")
    if mirror:
        text += f"  mirror:\n    name: {mirror}\n    percent: 100\n"
    return text


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_model(manifests: str | Path, name: str, folder: str, memory: str,
                parameters: dict[str, object] | None = None) -> Path:
    """Write :func:`model_yaml` to ``<manifests>/models/<name>.yaml``; the file's path."""
    return _write(Path(manifests) / "models" / f"{name}.yaml", model_yaml(name, folder, memory, parameters))


def write_experiment(manifests: str | Path, name: str, resource_type: str, weights: dict[str, int],
                     mirror: str | None = None) -> Path:
    """Write :func:`experiment_yaml` to ``<manifests>/experiments/<name>.yaml``; the file's path."""
    return _write(Path(manifests) / "experiments" / f"{name}.yaml", experiment_yaml(name, resource_type, weights, mirror))
