"""From a Model's storageUri to a model folder MLServer serves under the Seldon name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tunesmith.gateway import manifests, storage
from tunesmith.gateway.manifests import ManifestError
from tunesmith.gateway.storage import build_repository, seldon_settings, storage_folder, version_folder

SETTINGS = {
    "name": "tune-generator",
    "implementation": "generator_runtime.GeneratorRuntime",
    "outputs": [{"name": "abc", "datatype": "BYTES", "shape": [-1]}],
    "parameters": {"uri": "./weights", "version": "v1", "extra": {"max_prompts": 64}},
}


def model_folder(folder: Path, settings: dict | None = SETTINGS) -> Path:
    folder.mkdir(parents=True)
    (folder / "generator_runtime.py").write_text("class GeneratorRuntime: ...\n")
    (folder / "weights").mkdir()
    (folder / "weights" / "model.bin").write_bytes(b"\0")
    if settings is not None:
        (folder / "model-settings.json").write_text(json.dumps(settings))
    return folder


def write_manifests(root: Path, *docs: dict) -> manifests.Manifests:
    folder = root / "manifests"
    folder.mkdir(exist_ok=True)
    (folder / "seldon.yaml").write_text(yaml.safe_dump_all(docs))
    return manifests.load(folder)


def model(name: str, uri: str, **spec) -> dict:
    return {"apiVersion": manifests.API_VERSION, "kind": "Model", "metadata": {"name": name}, "spec": {"storageUri": uri, **spec}}


@pytest.fixture(autouse=True)
def default_models_uri(monkeypatch):
    monkeypatch.delenv(storage.MODELS_URI_ENV, raising=False)


def test_the_models_uri_stands_for_the_models_folder_beside_the_manifests(tmp_path: Path):
    model_folder(tmp_path / "models" / "tune-generator")
    found = write_manifests(tmp_path, model("generator", "gs://tunesmith-workshop/models/tune-generator"))
    assert storage_folder(found.models["generator"], found) == tmp_path / "models" / "tune-generator"
    elsewhere = model_folder(tmp_path / "elsewhere" / "tune-generator")
    assert storage_folder(found.models["generator"], found, models_dir=tmp_path / "elsewhere") == elsewhere


def test_the_models_uri_comes_from_the_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(storage.MODELS_URI_ENV, "s3://bucket/prefix/")
    model_folder(tmp_path / "models" / "g")
    found = write_manifests(tmp_path, model("g", "s3://bucket/prefix/g"))
    assert storage_folder(found.models["g"], found) == tmp_path / "models" / "g"


@pytest.mark.parametrize("uri", ["{abs}", "file://{abs}", "../models/g", "file://../models/g"])
def test_local_paths_absolute_or_relative_to_the_manifest(tmp_path: Path, uri):
    folder = model_folder(tmp_path / "models" / "g")
    found = write_manifests(tmp_path, model("g", uri.format(abs=folder)))
    assert storage_folder(found.models["g"], found).resolve() == folder


@pytest.mark.parametrize(
    "uri, message",
    [
        ("gs://seldon-models/scv2/samples/mlserver_1.5.0/iris-sklearn",
         "gs://seldon-models/scv2/samples/mlserver_1.5.0/iris-sklearn is not local: use a path, file://<path> or "
         "gs://tunesmith-workshop/models/<folder>"),
        ("", "an empty storageUri names no model folder"),
        ("../models/missing", "../models/missing: no such folder"),
    ],
    ids=["another-bucket", "empty", "missing"],
)  # fmt: skip
def test_other_storage_uris_are_refused_naming_the_file_and_field(tmp_path: Path, uri, message):
    found = write_manifests(tmp_path, model("iris", uri))
    with pytest.raises(ManifestError) as caught:
        storage_folder(found.models["iris"], found)
    assert caught.value.file == str(tmp_path / "manifests" / "seldon.yaml")
    assert caught.value.field == "spec.storageUri"
    assert caught.value.message.startswith(message)


def versions(root: Path, *numbers: str, top: bool = False) -> Path:
    for number in numbers:
        model_folder(root / number, {**SETTINGS, "name": f"v{number}"})
    if top:
        (root / "model-settings.json").write_text(json.dumps(SETTINGS))
    return root


def test_version_folder_follows_seldons_find_model_version_folder(tmp_path: Path):
    plain = manifests.Model(name="m", storage_uri="x")
    pinned = manifests.Model(name="m", storage_uri="x", artifact_version=2)
    assert version_folder(plain, versions(tmp_path / "a", "1", "2", "10"), Path("m.yaml")).name == "10"  # highest
    assert version_folder(pinned, versions(tmp_path / "b", "1", "2", "10"), Path("m.yaml")).name == "2"
    top = versions(tmp_path / "c", "1", "2", top=True)
    assert version_folder(pinned, top, Path("m.yaml")) == top  # a top-level model-settings.json always wins


def test_missing_versions_and_settings(tmp_path: Path):
    pinned = manifests.Model(name="m", storage_uri="x", artifact_version=3)
    with pytest.raises(ManifestError) as caught:
        version_folder(pinned, versions(tmp_path / "a", "1"), Path("m.yaml"))
    assert caught.value.field == "spec.artifactVersion"
    assert caught.value.message == (
        f"Failed to find an mlserver model-settings.json file for model in {tmp_path / 'a'} for m for passed in version 3"
    )
    empty = model_folder(tmp_path / "b", settings=None)
    with pytest.raises(ManifestError, match="no model-settings.json in"):
        version_folder(manifests.Model(name="m", storage_uri="x"), empty, Path("m.yaml"))


def test_settings_are_rewritten_as_seldons_agent_does(tmp_path: Path):
    m = manifests.Model(name="generator", storage_uri="x", parameters={"max_prompts": "8", "style": "reel"})
    written = seldon_settings(SETTINGS, m, tmp_path)
    assert written["name"] == "generator"
    assert "version" not in written["parameters"]
    assert written["parameters"]["extra"] == {"max_prompts": "8", "style": "reel"}
    assert written["parameters"]["uri"] == str(tmp_path / "weights")
    assert SETTINGS["parameters"]["version"] == "v1"  # the original is untouched
    bare = seldon_settings({"name": "x", "implementation": "a.B", "parameters": {"version": "v2"}}, m.__class__("y", "x"), tmp_path)
    assert bare == {"name": "y", "implementation": "a.B"}


def test_build_repository_links_files_and_writes_settings(tmp_path: Path):
    source = model_folder(tmp_path / "models" / "tune-generator")
    model_folder(source / "old", {**SETTINGS, "name": "old"})  # another model's settings inside: not linked
    found = write_manifests(
        tmp_path,
        model("generator", "gs://tunesmith-workshop/models/tune-generator", parameters=[{"name": "max_prompts", "value": "8"}]),
    )
    into = tmp_path / "repo"
    folders = build_repository(found, into)
    target = into / "generator"
    assert folders == {"generator": target}
    assert (target / "generator_runtime.py").is_symlink()
    assert (target / "weights").resolve() == source / "weights"
    assert not (target / "old").exists()
    settings = json.loads((target / "model-settings.json").read_text())
    assert settings["name"] == "generator" and settings["parameters"]["extra"]["max_prompts"] == "8"
    assert json.loads((source / "model-settings.json").read_text()) == SETTINGS  # the storage folder is not written

    (into / "generator" / "stale").write_text("")
    build_repository(found, into)  # a rebuild starts from scratch
    assert not (into / "generator" / "stale").exists()


def test_build_repository_refuses_a_folder_it_did_not_build(tmp_path: Path):
    model_folder(tmp_path / "models" / "g")
    found = write_manifests(tmp_path, model("g", "../models/g"))
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        build_repository(found, tmp_path / "precious")
    assert (tmp_path / "precious" / "notes.txt").read_text() == "keep me"


def test_build_repository_checks_tensors_against_declared_outputs(tmp_path: Path):
    model_folder(tmp_path / "models" / "g")
    model_folder(tmp_path / "models" / "s", {"name": "s", "implementation": "a.B"})
    pipeline = {
        "apiVersion": manifests.API_VERSION, "kind": "Pipeline", "metadata": {"name": "p"},
        "spec": {"steps": [{"name": "g"}, {"name": "s", "inputs": ["g.outputs.wav"]}], "output": {"steps": ["s"]}},
    }  # fmt: skip
    found = write_manifests(tmp_path, model("g", "../models/g"), model("s", "../models/s"), pipeline)
    with pytest.raises(ManifestError, match=r"refers to g.outputs.wav, but model g declares only the outputs \[abc\]"):
        build_repository(found, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()  # nothing is written before every check passed
