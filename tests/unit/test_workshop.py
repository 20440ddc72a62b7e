"""The notebooks' server helpers: start, reuse, restart on change, reload, stop; copying weights; stage 3's gateway."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import requests

from tunesmith import paths
from tunesmith.gateway.manifests import ManifestError
from tunesmith.serving import launcher
from tunesmith.serving.lifetime import command_line
from tunesmith.workshop import notebook as workshop
from tunesmith.serving.launcher import Server, ServerError, free_port

pytestmark = [pytest.mark.server]

ECHO_RUNTIME = textwrap.dedent(
    '''
    from mlserver import MLModel
    from mlserver.types import InferenceResponse, ResponseOutput

    VALUE = {value}


    class Echo(MLModel):
        async def load(self):
            return True

        async def predict(self, request):
            out = ResponseOutput(name="value", datatype="INT32", shape=[1], data=[VALUE])
            return InferenceResponse(model_name=self.name, outputs=[out])
    '''
)


def write_echo(models, name="echo", value=1):
    folder = models / name
    folder.mkdir(parents=True, exist_ok=True)
    module = name.replace("-", "_") + "_runtime"
    (folder / f"{module}.py").write_text(ECHO_RUNTIME.format(value=value))
    (folder / "model-settings.json").write_text(f'{{"name": "{name}", "implementation": "{module}.Echo"}}')


def infer(server, name="echo"):
    response = requests.post(f"{server.http_url}/v2/models/{name}/infer", json={"inputs": []}, timeout=30)
    response.raise_for_status()
    return response.json()["outputs"][0]["data"][0]


def pid(server) -> int:
    return int((server.run_dir / "pid").read_text())


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Free ports in the environment and a private run folder; stops whatever was started."""
    monkeypatch.setattr(paths, "RUN", tmp_path / "run")
    monkeypatch.setattr(workshop, "_started", None)
    for name in ("HTTP_PORT", "GRPC_PORT", "METRICS_PORT"):
        monkeypatch.setenv(name, str(free_port()))
    models = tmp_path / "models"
    models.mkdir()
    yield models
    workshop.stop_server()


def test_ports_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("HTTP_PORT", "9080")
    monkeypatch.delenv("GRPC_PORT", raising=False)
    assert workshop.ports() == {"http_port": 9080, "grpc_port": 8081, "metrics_port": 8082}


def test_start_reuse_restart_reload_stop(env, capsys):
    write_echo(env, value=1)
    server = workshop.start_server(env)
    assert infer(server) == 1
    first = pid(server)

    again = workshop.start_server(env)  # e.g. the next notebook
    assert pid(again) == first
    assert "Reusing" in capsys.readouterr().out

    write_echo(env, value=2)  # the learner changed a runtime
    restarted = workshop.start_server(env)
    assert pid(restarted) != first
    assert infer(restarted) == 2
    assert "changed" in capsys.readouterr().out

    write_echo(env, name="second-echo", value=3)  # a new model, added without a restart
    metadata = workshop.load_model(restarted, "second-echo")
    assert metadata["name"] == "second-echo"
    assert infer(restarted, "second-echo") == 3
    assert pid(workshop.start_server(env)) == pid(restarted)  # the reload was remembered

    assert workshop.stop_server() is True
    assert workshop.stop_server() is False


def test_a_server_on_another_folder_is_replaced(env, tmp_path):
    write_echo(env, value=1)
    other = tmp_path / "other-models"
    write_echo(other, value=5)
    workshop.start_server(env)
    server = workshop.start_server(other)
    assert infer(server) == 5


def test_a_terminal_server_is_reloaded_not_killed(env):
    """`make serve` in a terminal: the notebook reloads its models and leaves the process alone."""
    write_echo(env, value=1)
    port = workshop.ports()
    terminal = Server(models_dir=env, name="serve", **port).start()
    try:
        assert pid(workshop.start_server(env)) == terminal.process.pid
        write_echo(env, value=2)
        write_echo(env, name="second-echo", value=3)
        server = workshop.start_server(env)
        assert terminal.process.poll() is None and pid(server) == terminal.process.pid
        assert (infer(server), infer(server, "second-echo")) == (2, 3)
        assert pid(workshop.start_server(env)) == terminal.process.pid
    finally:
        terminal.stop()


def test_a_terminal_server_on_another_folder_is_left_alone(env, tmp_path):
    other = tmp_path / "platform"
    write_echo(other)
    terminal = Server(models_dir=other, name="up", **workshop.ports()).start()
    try:
        with pytest.raises(ServerError, match="make stop"):
            workshop.start_server(env)
        assert terminal.process.poll() is None
    finally:
        terminal.stop()


def test_restart_on_request(env):
    write_echo(env)
    first = pid(workshop.start_server(env))
    assert pid(workshop.start_server(env, restart=True)) != first


def test_a_port_held_by_a_stranger_is_reported(env):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", workshop.ports()["http_port"]))
        sock.listen()
        with pytest.raises(ServerError, match="HTTP_PORT"):
            workshop.start_server(env)


def test_a_missing_models_folder_is_reported(env, tmp_path):
    with pytest.raises(ServerError, match="no models folder"):
        workshop.start_server(tmp_path / "nowhere")


def test_fingerprint_ignores_pycache_but_sees_edits(tmp_path):
    write_echo(tmp_path)
    before = workshop.fingerprint(tmp_path)
    (tmp_path / "echo" / "__pycache__").mkdir()
    (tmp_path / "echo" / "__pycache__" / "echo_runtime.cpython-311.pyc").write_bytes(b"\0")
    assert workshop.fingerprint(tmp_path) == before
    (tmp_path / "echo" / "model-settings.json").write_text('{"name": "echo", "implementation": "x.Y"}')
    assert workshop.fingerprint(tmp_path) != before


def test_copy_checkpoint_replaces_the_destination(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "CHECKPOINTS", tmp_path / "checkpoints")
    source = tmp_path / "checkpoints" / "tiny"
    source.mkdir(parents=True)
    (source / "config.json").write_text("{}")
    destination = tmp_path / "models" / "tiny" / "weights"
    destination.mkdir(parents=True)
    (destination / "stale.bin").write_text("old")
    assert workshop.copy_checkpoint("tiny", destination) == destination
    assert sorted(p.name for p in destination.iterdir()) == ["config.json"]


def test_copy_checkpoint_names_a_missing_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "CHECKPOINTS", tmp_path)
    with pytest.raises(FileNotFoundError, match="make train"):
        workshop.copy_checkpoint("nothing-here", tmp_path / "dest")


def test_a_broken_model_is_named_with_its_reason_and_the_others_serve(env, capsys):
    write_echo(env, "echo", value=5)
    broken = env / "typo"
    broken.mkdir()
    (broken / "typo_runtime.py").write_text("from mlserver import MLModel\n\nclass Typo(MLModel):\n"
                                            "    async def load(self):\n        raise ValueError('no weights here')\n")
    (broken / "model-settings.json").write_text('{"name": "typo", "implementation": "typo_runtime.Typo"}')
    server = workshop.start_server(env)
    out = capsys.readouterr().out
    assert "NOT LOADED: typo" in out and "no weights here" in out
    assert infer(server) == 5


# -- stage 3: the gateway ---------------------------------------------------------------------------
MODEL = """apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata:
  name: {name}
spec:
  storageUri: gs://tunesmith-workshop/models/{folder}
"""
CHAIN = """apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: echo-chain
spec:
  steps:
    - name: echo
  output:
    steps:
      - echo
"""


@pytest.fixture
def stage3(env, monkeypatch):
    """``models/`` with an echo model and ``manifests/`` beside it: a Model and a pipeline over it."""
    monkeypatch.delenv("MODELS_URI", raising=False)
    write_echo(env, value=1)
    manifests = env.parent / "manifests"
    (manifests / "models").mkdir(parents=True)
    (manifests / "models" / "echo.yaml").write_text(MODEL.format(name="echo", folder="echo"))
    (manifests / "pipelines").mkdir()
    (manifests / "pipelines" / "echo-chain.yaml").write_text(CHAIN)
    yield manifests, env
    workshop.stop_gateway()
    name = f"notebook-gateway-{workshop.ports()['http_port']}"  # the gateway's repository is in the real .run/
    for run in (paths.REPO / ".run" / name, paths.REPO / ".run" / f"{name}-mlserver"):
        shutil.rmtree(run, ignore_errors=True)


def gateway_pid(gateway) -> int:
    return int((gateway.run_dir / "pid").read_text())


def through(gateway, path="/v2/pipelines/echo-chain/infer") -> int:
    body = {"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [0]}]}
    response = requests.post(gateway.http_url + path, json=body, timeout=30)
    response.raise_for_status()
    return response.json()["outputs"][0]["data"][0]


def test_a_gateway_starts_is_reused_restarts_on_change_and_make_stop_ends_it(stage3, capsys):
    manifests, models = stage3
    gateway = workshop.start_gateway(manifests, models)
    out = capsys.readouterr().out
    assert "models:    echo" in out and "pipelines: echo-chain" in out
    assert through(gateway) == 1 and through(gateway, "/v2/models/echo/infer") == 1
    assert gateway.pipelines() == ["echo-chain"] and gateway.models() == ["echo"]
    first = gateway_pid(gateway)

    assert gateway_pid(workshop.start_gateway(manifests, models)) == first  # the next notebook
    assert "Reusing the gateway" in capsys.readouterr().out

    (manifests / "models" / "echo-again.yaml").write_text(MODEL.format(name="echo-again", folder="echo"))
    restarted = workshop.start_gateway(manifests, models)
    second = gateway_pid(restarted)
    assert second != first and "changed" in capsys.readouterr().out
    assert through(restarted, "/v2/models/echo-again/infer") == 1

    write_echo(models, value=2)  # a runtime changed: the model folders are fingerprinted too
    again = workshop.start_gateway(manifests, models)
    assert gateway_pid(again) != second and through(again) == 2

    assert launcher.stop_all() == [again.run_dir.name]  # `tunesmith stop` finds it by its pid file
    assert not workshop.port_in_use(workshop.ports()["http_port"])
    assert workshop.stop_gateway() is False


def test_a_broken_manifest_is_refused_and_the_running_gateway_keeps_serving(stage3, tmp_path):
    manifests, models = stage3
    gateway = workshop.start_gateway(manifests, models)
    bad = tmp_path / "bad-manifests"
    bad.mkdir()
    (bad / "echo.yaml").write_text(MODEL.format(name="echo", folder="echo").replace("storageUri", "storageURI"))
    with pytest.raises(ManifestError, match='unknown field "storageURI"'):
        workshop.start_gateway(bad, models)
    (bad / "echo.yaml").write_text(MODEL.format(name="echo", folder="no-such-folder"))
    with pytest.raises(ManifestError, match="no such folder"):
        workshop.start_gateway(bad, models)
    assert through(gateway) == 1


def test_the_gateway_and_a_notebook_server_take_turns_on_the_ports(stage3):
    manifests, models = stage3
    server = workshop.start_server(models)
    server_pid = pid(server)
    gateway = workshop.start_gateway(manifests, models)  # 3.1 after 2.6: the server makes way
    assert command_line(server_pid) == "" and through(gateway) == 1
    first_gateway = gateway_pid(gateway)
    server = workshop.start_server(models)  # back to a stage-2 notebook: the gateway makes way
    assert command_line(first_gateway) == "" and infer(server) == 1


def test_a_gateway_that_never_gets_ready_is_stopped_and_shows_its_log(stage3):
    manifests, models = stage3
    (models / "echo" / "echo_runtime.py").write_text("raise ImportError('a runtime that does not import')\n")
    with pytest.raises(ServerError, match="not ready after 15 s: echo-chain") as caught:
        workshop.start_gateway(manifests, models, timeout=15)
    assert "mlserver.log" in str(caught.value)
    assert not workshop.port_in_use(workshop.ports()["http_port"])


def test_a_notebook_gateway_ends_with_the_program_that_ran_its_kernel(stage3):
    """The gateway outlives the kernel (start_gateway returns) but not the kernel's parent (Jupyter)."""
    manifests, models = stage3
    kernel = f"from tunesmith.workshop.notebook import start_gateway; start_gateway({str(manifests)!r}, {str(models)!r})"
    jupyter = subprocess.Popen(["sh", "-c", f'"{sys.executable}" -c "{kernel}" && sleep 120'], start_new_session=True)
    run_dir = paths.REPO / ".run" / f"notebook-gateway-{workshop.ports()['http_port']}"  # the "kernel" has the real .run/
    try:
        deadline = time.monotonic() + 120
        while not workshop._alive(run_dir / "pid") or not workshop.port_in_use(workshop.ports()["http_port"]):
            assert time.monotonic() < deadline and jupyter.poll() is None
            time.sleep(0.5)
        while requests.get(f"http://127.0.0.1:{workshop.ports()['http_port']}/v2/pipelines/echo-chain/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        gateway = int((run_dir / "pid").read_text())
    finally:
        os.killpg(jupyter.pid, signal.SIGKILL)  # Jupyter goes; the gateway was started in a session of its own
        jupyter.wait()
    deadline = time.monotonic() + 30
    while command_line(gateway) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert command_line(gateway) == ""
