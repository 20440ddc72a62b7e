"""The deploy path, without a cluster: ``tunesmith deploy`` / ``undeploy``, ``deploy/Dockerfile``, the Makefile targets.

Nothing here needs Docker or Kubernetes. The manifests are checked against Seldon's CRDs
(``../shared/seldon-crds``, skipped when absent) and the gateway's loader; ``kubectl`` is a fake
script on ``PATH`` that records its arguments and standard input; the Dockerfile is read as text and
checked against ``constraints.txt`` and against what the notebooks' model folders import.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tunesmith import paths
from tunesmith.gateway import deploy, manifests, storage
from tunesmith.gateway.manifests import ManifestError

CRDS = paths.REPO.parent / "shared" / "seldon-crds"
needs_crds = pytest.mark.skipif(not CRDS.is_dir(), reason=f"the Seldon CRDs are not at {CRDS}")
DOCKERFILE = paths.REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = paths.REPO / "deploy" / "Dockerfile.dockerignore"
SRC = paths.REPO / "src"
TARGET = "gs://my-bucket/models"


@pytest.fixture(autouse=True)
def default_models_uri(monkeypatch):
    monkeypatch.delenv(storage.MODELS_URI_ENV, raising=False)


# --- manifests: the notebooks' and a small folder laid out as theirs ---------------------------


def doc(kind: str, name: str, spec: dict) -> dict:
    return {"apiVersion": manifests.API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


def model_doc(name: str, folder: str | None = None, **spec) -> dict:
    uri = f"{storage.DEFAULT_MODELS_URI}/{folder or name}"
    return doc("Model", name, {"storageUri": uri, "server": "tunesmith", **spec})


SERVER = doc("Server", "tunesmith", {
    "serverConfig": "mlserver",
    "podSpec": {"containers": [{"name": "mlserver", "image": deploy.DEFAULT_IMAGE}]},
})  # fmt: skip
PIPELINE = doc("Pipeline", "tune-chain", {
    "steps": [
        {"name": "prompt-encoder", "inputs": ["tune-chain.inputs.prompt"]},
        {"name": "tune-generator", "inputs": ["prompt-encoder.outputs.header", "tune-chain.inputs.seed"]},
        {"name": "synthesizer", "inputs": ["tune-generator.outputs.abc", "prompt-encoder.outputs.tempo"]},
    ],
    "output": {"steps": ["synthesizer"]},
})  # fmt: skip
MODELS = ("prompt-encoder", "tune-generator", "synthesizer")
OUTPUTS = {"prompt-encoder": ["header", "tempo"], "tune-generator": ["abc"], "synthesizer": ["audio", "sample_rate"]}


def write(path: Path, *docs: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


@pytest.fixture
def room(tmp_path: Path) -> Path:
    """A repository-like folder: models/ with three model folders, manifests/ as stage 3 lays them out."""
    for name in MODELS:
        folder = tmp_path / "models" / name
        folder.mkdir(parents=True)
        outputs = [{"name": tensor, "datatype": "BYTES", "shape": [-1]} for tensor in OUTPUTS[name]]
        (folder / "model-settings.json").write_text(json.dumps({"name": name, "implementation": "r.R", "outputs": outputs}))
    (tmp_path / "models" / "settings.json").write_text("{}")
    write(tmp_path / "manifests" / "servers" / "mlserver.yaml", SERVER)
    for name in MODELS:
        write(tmp_path / "manifests" / "models" / f"{name}.yaml", model_doc(name))
    write(tmp_path / "manifests" / "pipelines" / "tune-chain.yaml", PIPELINE)
    (tmp_path / "manifests" / "README.md").write_text("not a manifest\n")
    return tmp_path


@pytest.fixture(scope="module")
def notebook_manifests(platform_models) -> Path:
    """The manifests the notebooks write, materialised with the finished platform (conftest:
    ``materialize("solution", tmp/models, backup=False)``, whose manifests go to tmp/manifests)."""
    folder = platform_models.parent / "manifests"
    if not folder.is_dir() or not list(folder.rglob("*.yaml")):
        pytest.skip("the stage-3 notebooks write no manifests yet (materialize('solution') left manifests/ empty)")
    return folder


def crd_schema(kind: str) -> dict:
    crd = yaml.safe_load((CRDS / manifests.CRD_FILES[kind]).read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def check_against_crds(files: list[Path]) -> int:
    count = 0
    for file in files:
        for document in yaml.safe_load_all(file.read_text()):
            if document is None:
                continue
            jsonschema.Draft7Validator(crd_schema(document["kind"])).validate(document)
            count += 1
    return count


@needs_crds
def test_the_notebooks_manifests_validate_against_the_crds_and_load(notebook_manifests):
    files = deploy.manifest_files(notebook_manifests)
    assert check_against_crds(files) >= 1
    found = manifests.load(files)  # what `tunesmith gateway` serves: the local gateway's rules
    assert found.models
    assert deploy.check(files).models.keys() == found.models.keys()


def test_the_notebooks_manifests_go_to_the_cluster_in_order(notebook_manifests, platform_models, capsys):
    code = deploy.main(["deploy", "--manifests", str(notebook_manifests), "--models", str(platform_models),
                        "--models-uri", TARGET, "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    documents = [d for d in yaml.safe_load_all(out) if d]
    assert_in_apply_order(documents)
    for document in documents:
        if document["kind"] == "Model":
            assert document["spec"]["storageUri"].startswith(TARGET + "/"), document
    assert "warning" not in err, err  # every storageUri names a folder the platform has
    for server in (d for d in documents if d["kind"] == "Server"):
        images = [c.get("image") for c in server["spec"]["podSpec"]["containers"] if c["name"] == "mlserver"]
        assert images == [deploy.DEFAULT_IMAGE], "the Server runs the image `make image` builds"


@needs_crds
def test_the_small_folder_validates_against_the_crds_and_loads(room):
    files = deploy.manifest_files(room / "manifests")
    assert [f.relative_to(room / "manifests").as_posix() for f in files] == [
        "models/prompt-encoder.yaml", "models/synthesizer.yaml", "models/tune-generator.yaml",
        "pipelines/tune-chain.yaml", "servers/mlserver.yaml",
    ]  # fmt: skip
    assert check_against_crds(files) == 5
    found = manifests.load(room / "manifests")  # the folder, as `make gateway` reads it: the same files
    assert set(found.files.values()) == set(files)
    assert set(found.models) == set(MODELS) and set(found.pipelines) == {"tune-chain"}
    assert found.placement == dict.fromkeys(MODELS, "tunesmith")


# --- tunesmith deploy --dry-run ----------------------------------------------------------------


def assert_in_apply_order(documents: list[dict]) -> None:
    ranks = [deploy.APPLY_ORDER.index(d["kind"]) for d in documents]
    assert ranks == sorted(ranks), [d["kind"] for d in documents]


def test_dry_run_prints_the_yaml_in_dependency_order_with_rewritten_storage(room, capsys):
    write(room / "manifests" / "experiments" / "ab.yaml", doc("Experiment", "generators", {
        "default": "tune-generator", "candidates": [{"name": "tune-generator", "weight": 50},
                                                    {"name": "synthesizer", "weight": 50}]}))  # fmt: skip
    code = deploy.main(["deploy", "--manifests", str(room / "manifests"), "--models-uri", TARGET + "/", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    documents = list(yaml.safe_load_all(out))  # stdout is YAML and nothing else
    assert [d["kind"] for d in documents] == ["Server", "Model", "Model", "Model", "Pipeline", "Experiment"]
    assert {d["metadata"]["name"]: d["spec"]["storageUri"] for d in documents if d["kind"] == "Model"} == {
        name: f"{TARGET}/{name}" for name in MODELS
    }
    assert documents[4] == PIPELINE  # everything else as written
    for name in MODELS:
        assert f"Model {name}: storageUri {storage.DEFAULT_MODELS_URI}/{name} -> {TARGET}/{name}" in err
    assert f"gsutil -m rsync -r {room / 'models'}/ {TARGET}/" in err
    assert "dry run: nothing was applied" in err
    assert yaml.safe_load((room / "manifests" / "models" / "synthesizer.yaml").read_text()) == model_doc("synthesizer")


def test_the_manifests_own_uri_is_kept_and_the_upload_command_fits_the_scheme(room, capsys, monkeypatch):
    monkeypatch.chdir(room)
    assert deploy.main(["deploy", "--dry-run"]) == 0  # defaults: manifests/, the gateway's models URI
    out, err = capsys.readouterr()
    assert all(d["spec"]["storageUri"].startswith(storage.DEFAULT_MODELS_URI + "/")
               for d in yaml.safe_load_all(out) if d["kind"] == "Model")
    assert "rewrote" not in err and f"gsutil -m rsync -r models/ {storage.DEFAULT_MODELS_URI}/" in err
    assert "the workshop's default" in err
    assert deploy.upload_command(Path("models"), "s3://b/m") == "aws s3 sync models/ s3://b/m/"
    assert deploy.upload_command(Path("models"), "azureblob://c/m").startswith("rclone copy models/ azureblob:c/m")


def test_make_deploy_models_uri_in_the_environment_still_rewrites_the_default(room, capsys, monkeypatch):
    monkeypatch.setenv(storage.MODELS_URI_ENV, TARGET)  # `make deploy MODELS_URI=...` exports it
    assert deploy.main(["deploy", "--manifests", str(room / "manifests"), "--dry-run"]) == 0
    out, _ = capsys.readouterr()
    uris = [d["spec"]["storageUri"] for d in yaml.safe_load_all(out) if d["kind"] == "Model"]
    assert uris and all(uri.startswith(TARGET + "/") for uri in uris)


def test_local_paths_into_the_models_folder_are_rewritten_and_others_refused(room, capsys):
    write(room / "manifests" / "models" / "synthesizer.yaml",
          doc("Model", "synthesizer", {"storageUri": "../../models/synthesizer", "server": "tunesmith"}))
    assert deploy.main(["deploy", "--manifests", str(room / "manifests"), "--models-uri", TARGET, "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert f"{TARGET}/synthesizer" in [d["spec"].get("storageUri") for d in yaml.safe_load_all(out)]
    assert f"Model synthesizer: storageUri ../../models/synthesizer -> {TARGET}/synthesizer" in err

    elsewhere = room / "elsewhere" / "synthesizer"
    shutil.copytree(room / "models" / "synthesizer", elsewhere)
    file = write(room / "manifests" / "models" / "synthesizer.yaml",
                 doc("Model", "synthesizer", {"storageUri": f"file://{elsewhere}", "server": "tunesmith"}))
    assert deploy.main(["deploy", "--manifests", str(room / "manifests"), "--models-uri", TARGET, "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"{file}: spec.storageUri: file://{elsewhere} is a folder on this machine")


def test_a_missing_model_folder_is_a_warning(room, capsys):
    shutil.rmtree(room / "models" / "synthesizer")
    (room / "models" / "tune-generator" / "model-settings.json").unlink()
    assert deploy.main(["deploy", "--manifests", str(room / "manifests"), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert f"warning: Model synthesizer: {room / 'models' / 'synthesizer'} does not exist" in err
    assert f"warning: Model tune-generator: no model-settings.json in {room / 'models' / 'tune-generator'}" in err


def test_a_pipeline_reading_a_tensor_its_model_does_not_declare_is_refused_as_by_the_gateway(room, capsys):
    steps = [dict(step) for step in PIPELINE["spec"]["steps"]]
    steps[2]["inputs"] = ["tune-generator.outputs.tune", "prompt-encoder.outputs.tempo"]
    file = write(room / "manifests" / "pipelines" / "tune-chain.yaml", dict(PIPELINE, spec={**PIPELINE["spec"], "steps": steps}))
    assert deploy.main(["deploy", "--manifests", str(room / "manifests"), "--dry-run"]) == 2
    out, err = capsys.readouterr()
    with pytest.raises(ManifestError) as caught:
        storage.build_repository(manifests.load(deploy.manifest_files(room / "manifests")), room / "repo",
                                 models_dir=room / "models")
    assert out == "" and err.strip() == str(caught.value)
    assert str(caught.value) == (f"{file}: spec.steps[2].inputs[0]: pipeline tune-chain refers to "
                                 "tune-generator.outputs.tune, but model tune-generator declares only the outputs [abc]")


def test_image_rewrites_the_servers_mlserver_container(room, capsys):
    image = "ghcr.io/you/tunesmith-mlserver:0.1.0"
    assert deploy.main(["deploy", "--manifests", str(room / "manifests"), "--image", image, "--dry-run"]) == 0
    out, err = capsys.readouterr()
    server = next(d for d in yaml.safe_load_all(out) if d["kind"] == "Server")
    assert server["spec"]["podSpec"]["containers"] == [{"name": "mlserver", "image": image}]
    assert f"Server tunesmith: spec.podSpec.containers[mlserver].image {deploy.DEFAULT_IMAGE} -> {image}" in err


def test_an_invalid_manifest_stops_with_the_gateways_message(room, capsys, fake_kubectl):
    bad = dict(PIPELINE, spec={"steps": [{"name": "tune-generator", "input": ["tune-chain.inputs.prompt"]}]})
    file = write(room / "manifests" / "pipelines" / "tune-chain.yaml", bad)
    with pytest.raises(ManifestError) as caught:
        manifests.load(deploy.manifest_files(room / "manifests"))
    assert deploy.main(["deploy", "--manifests", str(room / "manifests")]) == 2
    out, err = capsys.readouterr()
    assert err.strip() == str(caught.value) == f'{file}: spec.steps[0]: json: unknown field "input"'
    assert out == "" and fake_kubectl.calls() == []


def test_an_empty_manifests_folder_says_where_manifests_come_from(tmp_path, capsys):
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "README.md").write_text("")
    assert deploy.main(["deploy", "--manifests", str(tmp_path / "manifests"), "--dry-run"]) == 2
    assert "no *.yaml manifests in this folder or below it: run the stage-3 notebooks" in capsys.readouterr().err


def test_what_only_the_local_gateway_refuses_goes_to_the_cluster(room):
    write(room / "manifests" / "models" / "tune-generator.yaml", model_doc("tune-generator", replicas=3, maxReplicas=4))
    write(room / "manifests" / "servers" / "mlserver.yaml", dict(SERVER, spec={**SERVER["spec"], "replicas": 3}))
    write(room / "manifests" / "experiments" / "ab.yaml", doc("Experiment", "ab", {
        "candidates": [{"name": "tune-generator", "weight": 1}, {"name": "synthesizer", "weight": 1}]}))  # fmt: skip
    files = deploy.manifest_files(room / "manifests")
    with pytest.raises(ManifestError, match="not supported by the local gateway: it turns on autoscaling"):
        manifests.load(files, allow_experiments=True)
    found = deploy.check(files)
    assert found.models["tune-generator"].replicas == 3 and found.servers["tunesmith"].replicas == 3
    assert set(found.experiments) == {"ab"}
    with pytest.raises(ManifestError, match="not supported by the local gateway"):  # the loader is itself again
        manifests.load(files, allow_experiments=True)


def test_a_server_config_must_exist_on_the_cluster_too(room):
    write(room / "manifests" / "servers" / "mlserver.yaml", dict(SERVER, spec={**SERVER["spec"], "serverConfig": "nope"}))
    with pytest.raises(ManifestError, match='serverconfigs.mlops.seldon.io "nope" not found'):
        deploy.check(deploy.manifest_files(room / "manifests"))
    write(room / "manifests" / "servers" / "mlserver.yaml", dict(SERVER, spec={**SERVER["spec"], "serverConfig": "triton"}))
    with pytest.raises(ManifestError, match="not supported by the local gateway: only MLServer runs locally"):
        manifests.load(deploy.manifest_files(room / "manifests"))
    assert deploy.check(deploy.manifest_files(room / "manifests")).servers["tunesmith"].server_config == "triton"


# --- kubectl: a fake on PATH --------------------------------------------------------------------

FAKE_KUBECTL = """\
#!{python}
import json, os, sys
args = sys.argv[1:]
stdin = "" if args[:2] == ["config", "current-context"] else sys.stdin.read()
with open(os.environ["FAKE_KUBECTL_LOG"], "a") as log:
    log.write(json.dumps({{"args": args, "stdin": stdin}}) + "\\n")
if args[:2] == ["config", "current-context"]:
    context = os.environ.get("FAKE_KUBECTL_CONTEXT", "")
    if not context:
        sys.exit("error: current-context is not set")
    print(context)
    sys.exit(0)
fail_on = os.environ.get("FAKE_KUBECTL_FAIL_ON")
if fail_on and "kind: " + fail_on + "\\n" in stdin:
    sys.exit('error: resource mapping not found for name: "x": no matches for kind "' + fail_on + '" in version "mlops.seldon.io/v1alpha1"')
for document in stdin.split("---\\n"):
    if document.strip():
        kind = document.split("kind: ")[1].split("\\n")[0].lower()
        name = document.split("name: ")[1].split("\\n")[0]
        print(f"{{kind}}.mlops.seldon.io/{{name}} " + ("deleted" if "delete" in args else "configured"))
"""


class FakeKubectl:
    def __init__(self, folder: Path):
        self.log = folder / "kubectl.log"
        self.log.touch()

    def calls(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def applied(self) -> list[tuple[list[str], list[tuple[str, str]]]]:
        """(args, [(kind, name)]) of every call that sent YAML."""
        return [
            (c["args"], [(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(c["stdin"]) if d])
            for c in self.calls() if c["stdin"]
        ]  # fmt: skip


@pytest.fixture
def fake_kubectl(tmp_path, monkeypatch) -> FakeKubectl:
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "kubectl"
    script.write_text(FAKE_KUBECTL.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KUBECTL_LOG", str(tmp_path / "kubectl.log"))
    monkeypatch.setenv("FAKE_KUBECTL_CONTEXT", "kind-workshop")
    monkeypatch.delenv("FAKE_KUBECTL_FAIL_ON", raising=False)
    return FakeKubectl(tmp_path)


def test_deploy_applies_each_kind_in_order_through_kubectl_stdin(room, fake_kubectl, capsys):
    code = deploy.main(["deploy", "--manifests", str(room / "manifests"), "--models-uri", TARGET, "-n", "seldon-mesh"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert fake_kubectl.calls()[0]["args"] == ["config", "current-context"]
    apply = ["--namespace", "seldon-mesh", "apply", "-f", "-"]
    assert fake_kubectl.applied() == [
        (apply, [("Server", "tunesmith")]),
        (apply, [("Model", "prompt-encoder"), ("Model", "synthesizer"), ("Model", "tune-generator")]),
        (apply, [("Pipeline", "tune-chain")]),
    ]
    models = [d for c in fake_kubectl.calls() for d in yaml.safe_load_all(c["stdin"]) if d and d["kind"] == "Model"]
    assert [m["spec"]["storageUri"] for m in models] == [f"{TARGET}/{name}" for name in sorted(MODELS)]
    assert "model.mlops.seldon.io/synthesizer configured" in out
    assert "applying to context kind-workshop, namespace seldon-mesh" in err
    assert "kubectl wait --for condition=ready --timeout=300s -n seldon-mesh pipelines.mlops.seldon.io --all" in err


def test_undeploy_deletes_in_the_reverse_order_and_keeps_stock_server_configs(room, fake_kubectl, capsys):
    write(room / "manifests" / "servers" / "config.yaml",
          doc("ServerConfig", "mlserver", {"podSpec": {"containers": [{"name": "mlserver"}]}}))
    assert deploy.main(["undeploy", "--manifests", str(room / "manifests")]) == 0
    delete = ["delete", "--ignore-not-found", "-f", "-"]
    assert fake_kubectl.applied() == [
        (delete, [("Pipeline", "tune-chain")]),
        (delete, [("Model", "prompt-encoder"), ("Model", "synthesizer"), ("Model", "tune-generator")]),
        (delete, [("Server", "tunesmith")]),
    ]
    assert "keeping ServerConfig mlserver" in capsys.readouterr().err


def test_without_a_current_context_nothing_is_applied_and_the_message_says_how_to_get_one(room, fake_kubectl, capsys,
                                                                                           monkeypatch):
    monkeypatch.setenv("FAKE_KUBECTL_CONTEXT", "")
    for command in ("deploy", "undeploy"):
        assert deploy.main([command, "--manifests", str(room / "manifests")]) == 1
        err = capsys.readouterr().err
        assert "kubectl has no current context (error: current-context is not set)" in err
        assert "kubectl config use-context NAME" in err and "gcloud container clusters get-credentials" in err
        assert "Nothing was applied" in err
    assert [c["args"] for c in fake_kubectl.calls()] == [["config", "current-context"]] * 2


def test_without_kubectl_the_message_says_to_install_it(room, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert deploy.main(["deploy", "--manifests", str(room / "manifests")]) == 1
    assert "kubectl is not installed (or not on PATH)" in capsys.readouterr().err


def test_a_cluster_without_seldon_stops_at_the_first_kind_with_a_hint(room, fake_kubectl, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_KUBECTL_FAIL_ON", "Model")
    assert deploy.main(["deploy", "--manifests", str(room / "manifests")]) == 1
    err = capsys.readouterr().err
    assert "kubectl apply failed on the Model manifests (Server done; running this again is safe)" in err
    assert 'no matches for kind "Model"' in err and "Seldon Core v2 is not installed in this cluster" in err
    assert [kinds[0][0] for _, kinds in fake_kubectl.applied()] == ["Server", "Model"]  # no Pipeline after it


def test_the_tunesmith_command_runs_deploy_and_undeploy(room, fake_kubectl):
    env = {**os.environ, storage.MODELS_URI_ENV: TARGET}
    result = subprocess.run([sys.executable, "-m", "tunesmith", "deploy", "--manifests", str(room / "manifests")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    result = subprocess.run([sys.executable, "-m", "tunesmith", "undeploy", "--manifests", str(room / "manifests"),
                             "--dry-run"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [d["kind"] for d in yaml.safe_load_all(result.stdout)] == ["Pipeline", "Model", "Model", "Model", "Server"]
    assert [c["args"][-3:] for c in fake_kubectl.calls()][1:] == [["apply", "-f", "-"]] * 3
    help_text = subprocess.run([sys.executable, "-m", "tunesmith", "--help"], capture_output=True, text=True).stdout
    assert "deploy" in help_text and "undeploy" in help_text


# --- the Makefile ---------------------------------------------------------------------------------


def make(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", f"PY={sys.executable}", *args],
                          cwd=paths.REPO, capture_output=True, text=True, env=env, timeout=60)


def test_make_deploy_passes_models_uri_namespace_and_image_only_when_given():
    result = make("-n", "deploy", f"MODELS_URI={TARGET}", "NAMESPACE=music")
    assert result.returncode == 0, result.stderr
    assert re.search(rf"-m tunesmith +deploy --manifests manifests --namespace music --models-uri {TARGET} *$",
                     result.stdout, re.M), result.stdout
    result = make("-n", "deploy", "IMAGE=ghcr.io/you/x:1")
    assert re.search(r"deploy --manifests manifests --namespace seldon-mesh +--image ghcr.io/you/x:1$", result.stdout, re.M)
    result = make("-n", "undeploy", "NAMESPACE=music")
    assert re.search(r"-m tunesmith +undeploy --manifests manifests --namespace music$", result.stdout, re.M)


def test_make_help_lists_the_cluster_targets():
    listing = make("help").stdout.replace("\x1b[36m", " ").replace("\x1b[0m", " ")
    for target in ("image", "deploy", "undeploy"):
        assert re.search(rf"^ +{target} +\S", listing, re.M), target


def test_make_image_explains_a_missing_docker_or_engine(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    docker.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = make("image", env=env)
    assert result.returncode != 0
    assert "docker is installed but no Docker engine answers" in result.stderr
    docker.unlink()
    make_dir = str(Path(shutil.which("make")).parent)
    plain = os.pathsep.join(p for p in ("/usr/bin", "/bin", make_dir) if Path(p).is_dir())
    if shutil.which("docker", path=plain):
        pytest.skip("docker is installed in the system folders, so it cannot be hidden from make")
    result = make("image", env={**os.environ, "PATH": plain})
    assert result.returncode != 0 and "make image needs Docker, which is not installed here" in result.stderr


def test_the_image_make_builds_is_the_one_the_manifests_and_deploy_name():
    assert re.search(rf"^IMAGE \?= {re.escape(deploy.DEFAULT_IMAGE)}$", (paths.REPO / "Makefile").read_text(), re.M)
    version = re.search(r'^version = "(.*)"$', (paths.REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert deploy.DEFAULT_IMAGE == f"tunesmith-mlserver:{version}"


# --- deploy/Dockerfile ------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.endswith("\\"):
            lines.append(current.strip())
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    start = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[start:]


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for op, args in stage:
        if op == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    return env


def test_the_image_starts_from_python_3_11_slim_where_the_constraints_apply():
    bases = [args for op, args in dockerfile_instructions() if op == "FROM"]
    assert bases and all(base.split()[0] == "python:3.11-slim" for base in bases)
    lines = [line.split("#", 1)[0] for line in (paths.REPO / "constraints.txt").read_text().splitlines()]
    markers = {line.split(";", 1)[1].strip() for line in lines if ";" in line}
    assert markers == {'python_version == "3.11"'}
    assert Marker('python_version == "3.11"').evaluate({"python_version": "3.11"})


def test_the_image_installs_the_same_pins_by_copying_both_files():
    stage = final_stage()
    copies = [args.split() for op, args in stage if op == "COPY"]
    assert ["requirements.txt", "constraints.txt", "./"] in copies
    runs = " ".join(args for op, args in stage if op == "RUN")
    assert "pip install -r requirements.txt -c constraints.txt" in runs
    assert "pip check" in runs
    assert not re.search(r"[A-Za-z0-9_.-]+(==|>=|<=|~=)\d", runs), "versions come from constraints.txt, not the Dockerfile"
    torch_pick = re.search(r"grep -o '([^']+)' constraints\.txt", runs).group(1)
    pinned = [m.group(0) for line in (paths.REPO / "constraints.txt").read_text().splitlines()
              if (m := re.match(torch_pick.replace("[^ ;#]", "[^ ;#]"), line))]
    assert pinned == [f"torch=={importlib.metadata.version('torch').split('+')[0]}"]
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs and '--no-deps "$torch"' in runs
    assert "pip install --no-deps /wheels/tunesmith-" in runs


def test_the_image_is_what_seldons_mlserver_server_config_expects(platform_models):
    stage = final_stage()
    env = env_of(stage)
    assert {key: env[key] for key in (
        "MLSERVER_HTTP_PORT", "MLSERVER_GRPC_PORT", "MLSERVER_METRICS_PORT", "MLSERVER_MODELS_DIR",
        "MLSERVER_LOAD_MODELS_AT_STARTUP", "MLSERVER_PARALLEL_WORKERS", "MLSERVER_HOST", "MLSERVER_DEBUG",
    )} == {
        "MLSERVER_HTTP_PORT": "9000", "MLSERVER_GRPC_PORT": "9500", "MLSERVER_METRICS_PORT": "8082",
        "MLSERVER_MODELS_DIR": "/mnt/agent/models", "MLSERVER_LOAD_MODELS_AT_STARTUP": "false",
        "MLSERVER_PARALLEL_WORKERS": "1", "MLSERVER_HOST": "0.0.0.0", "MLSERVER_DEBUG": "false",
    }  # fmt: skip
    assert [args.split() for op, args in stage if op == "EXPOSE"] == [["9000", "9500", "8082"]]
    users = [args for op, args in stage if op == "USER"]
    assert users == ["1000"], "a numeric uid, not root: Seldon's ServerConfig runs pods as runAsUser 1000, runAsNonRoot"
    command = json.loads(next(args for op, args in stage if op == "CMD"))
    assert command[:2] == ["/bin/sh", "-c"]
    assert command[2] == 'exec python -m tunesmith.serving.mlserver_main start "$MLSERVER_MODELS_DIR"'
    assert not [op for op, _ in stage if op == "ENTRYPOINT"]

    from tunesmith.serving.request_guards import request_limit

    limit, why = request_limit(str(platform_models))
    assert int(env["MLSERVER_GRPC_MAX_MESSAGE_LENGTH"]) >= limit, f"the image's request limit is below {limit} ({why})"


def test_the_build_context_sends_what_the_dockerfile_copies_and_not_the_environment():
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]

    def sent(path: str) -> bool:
        included = True
        for pattern in patterns:  # the last matching pattern wins, as in Docker
            negated = pattern.startswith("!")
            body = pattern.lstrip("!").rstrip("/")
            regex = re.escape(body).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
            if re.fullmatch(f"{regex}(/.*)?", path):
                included = negated
        return included

    copied = [source for op, args in dockerfile_instructions() if op == "COPY" and "--from" not in args
              for source in args.split()[:-1]]
    assert set(copied) == {"requirements.txt", "constraints.txt", "pyproject.toml", "README.md", "LICENSE", "src"}
    for source in copied:
        assert sent(source) and (paths.REPO / source).exists(), source
    assert sent("src/tunesmith/cli.py")
    for kept_out in (".venv/bin/python", "models/tune-generator/model-settings.json", "checkpoints/x", "data/abc/x",
                     "build/platform", "src/tunesmith/__pycache__/cli.cpython-311.pyc", ".git/HEAD", "notebooks/1.1.ipynb"):
        assert not sent(kept_out), kept_out


# --- every module the runtimes import is installed by the image ---------------------------------------


def _imports(file: Path, module: str) -> set[str]:
    """Absolute names of the modules ``file`` imports anywhere (functions included), bar TYPE_CHECKING."""
    tree = ast.parse(file.read_text(), str(file))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for n in ast.walk(node)}
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # may be submodules
    return found


def _tunesmith_file(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def runtime_imports(models: Path) -> dict[str, set[str]]:
    """Top-level module -> the runtime files that need it, following the runtimes' imports of
    ``tunesmith`` modules through the package (the image installs the package, not its tests)."""
    needed: dict[str, set[str]] = {}
    seen: set[str] = set()
    for settings in sorted(models.glob("*/model-settings.json")):
        folder = settings.parent
        implementation = json.loads(settings.read_text())["implementation"]
        local = {p.stem for p in folder.glob("*.py")}
        assert implementation.split(".")[0] in local, f"{folder.name}: its runtime module ships in its folder"
        queue = [(name, folder.name) for p in folder.glob("*.py") for name in _imports(p, p.stem)]
        while queue:
            module, origin = queue.pop()
            top = module.split(".")[0]
            if top in local or not module:
                continue
            if top != "tunesmith":
                needed.setdefault(top, set()).add(origin)
                continue
            parts = module.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
                name = ".".join(parts[:i])
                file = _tunesmith_file(name)
                if file is not None and name not in seen:
                    seen.add(name)
                    queue += [(inner, origin) for inner in _imports(file, name)]
    return needed


def installed_by_requirements() -> set[str]:
    """The distributions ``pip install -r requirements.txt`` installs here: the closure of the
    requirements over the installed distributions' own requirements, markers evaluated."""
    wanted = []
    for line in (paths.REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            wanted.append(Requirement(line))
    closure: set[str] = set()
    while wanted:
        requirement = wanted.pop()
        name = canonicalize_name(requirement.name)
        extras = sorted(requirement.extras)
        key = name + str(extras)
        if key in closure:
            continue
        closure.add(key)
        closure.add(name)
        for text in importlib.metadata.distribution(requirement.name).requires or []:
            inner = Requirement(text)
            if inner.marker is None or any(inner.marker.evaluate({"extra": e}) for e in extras or [""]):
                wanted.append(inner)
    return {key for key in closure if "[" not in key}


def pinned_in_constraints() -> set[str]:
    names = set()
    for line in (paths.REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(canonicalize_name(Requirement(line.split(";")[0]).name))
    return names


def test_every_module_the_runtimes_import_is_installed_by_the_image(platform_models):
    dockerfile = DOCKERFILE.read_text()
    assert "COPY src ./src" in dockerfile and "pip install --no-deps /wheels/tunesmith-" in dockerfile  # tunesmith
    needed = runtime_imports(platform_models)
    assert {"mlserver", "torch", "numpy"} <= set(needed), sorted(needed)
    installed, pinned = installed_by_requirements(), pinned_in_constraints()
    distributions = importlib.metadata.packages_distributions()
    problems = []
    for top, origins in sorted(needed.items()):
        if top in sys.stdlib_module_names:
            continue
        providers = {canonicalize_name(d) for d in distributions.get(top, [])}
        if not providers & installed:
            problems.append(f"{top} (needed by {sorted(origins)}): provided by {sorted(providers) or 'nothing installed'}, "
                            "which requirements.txt does not bring")
        elif not providers & installed & pinned:
            problems.append(f"{top}: {sorted(providers)} is not pinned in constraints.txt")
    assert not problems, "\n".join(problems)


# --- the README ---------------------------------------------------------------------------------------


def test_the_readme_table_of_fields_is_generated_from_fields():
    readme = (paths.REPO / "README.md").read_text()
    section = readme[readme.index("## Stage 3 on a cluster\n") : readme.index("## For instructors and maintainers\n")]
    table = deploy.fields_table()
    assert table in section, "regenerate it: python -m tunesmith.gateway.deploy fields"
    rows = [line for line in table.splitlines()[2:]]
    assert len(rows) == sum(len(fields) for fields in manifests.FIELDS.values())
    assert "| Model | `replicas` | implemented | N MLServer processes hold the model" in table


def test_the_readme_shows_the_way_from_laptop_to_cluster():
    readme = (paths.REPO / "README.md").read_text()
    section = readme[readme.index("## Stage 3 on a cluster\n") : readme.index("## For instructors and maintainers\n")]
    for step in ("make image IMAGE=", "docker push", "gsutil -m rsync -r models/", "make deploy MODELS_URI=",
                 "Seldon-Model", "make undeploy", "Kafka", "envoy", "replicas"):
        assert step in section, step
    assert deploy.upload_command(Path("models"), "gs://your-bucket/models") in section
