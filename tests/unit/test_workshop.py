"""The notebooks' server helpers: start, reuse, restart on change, reload, stop; copying weights."""

from __future__ import annotations

import socket
import textwrap

import pytest
import requests

from tunesmith import paths
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
