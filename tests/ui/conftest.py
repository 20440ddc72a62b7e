"""Fixtures for the UI tests: the app module, the inference server it calls, and a Seldon gateway."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tunesmith.serving.launcher import free_port
from ui_gateway import RunningGateway, platform_manifests, start_gateway
from ui_launch import load_app_module

STAGE_1_MODELS = ("tune-generator", "synthesizer")
UI_TEST_SERVER_ENV = "TUNESMITH_UI_TEST_SERVER"
UI_TEST_GATEWAY_ENV = "TUNESMITH_UI_TEST_GATEWAY"


@pytest.fixture(scope="session")
def app_module():
    """``app/app.py`` as a module (``build_app``, ``launch_options``, ``TABS``, ...)."""
    return load_app_module()


def _served_models(models_dir: Path) -> set[str]:
    names = set()
    for settings in models_dir.glob("**/model-settings.json"):
        names.add(json.loads(settings.read_text()).get("name") or settings.parent.name)
    return names


class RunningServer:
    """A server that is already running (``make serve`` on the finished platform), by its URL."""

    def __init__(self, http_url: str):
        self.http_url = http_url.rstrip("/")


def _platform_models(request) -> Path:
    """The finished platform's models folder (the suite's ``platform_models``), or a skip saying why not."""
    try:
        models = request.getfixturevalue("platform_models")
    except RuntimeError as exc:  # a notebook's file-writing cell failed: say which, and skip
        pytest.skip(f"the finished platform cannot be built: {str(exc).splitlines()[0]}")
    except pytest.FixtureLookupError:
        from tunesmith.workshop import stages

        if not hasattr(stages, "materialize"):
            pytest.skip("tunesmith.workshop.stages.materialize is not available to build the platform")
        models = Path(request.getfixturevalue("tmp_path_factory").mktemp("ui-platform")) / "models"
        stages.materialize("solution", models, backup=False)
    missing = sorted(set(STAGE_1_MODELS) - _served_models(Path(models)))
    if missing:
        pytest.skip(f"the finished platform has no {', '.join(missing)} model yet (no notebook writes it)")
    return Path(models)


@pytest.fixture(scope="session")
def ui_server(request):
    """The finished platform's server (the suite's ``platform_server``), for end-to-end UI tests.

    With ``$TUNESMITH_UI_TEST_SERVER`` set to a URL, the tests use the server running there (for
    example ``make solution && make serve``) instead of building and starting one.

    Skips, saying why, while the platform cannot be built or lacks the stage-1 models (the
    notebooks that write them are not there yet).
    """
    if os.environ.get(UI_TEST_SERVER_ENV):
        return RunningServer(os.environ[UI_TEST_SERVER_ENV])
    models = _platform_models(request)
    try:
        return request.getfixturevalue("platform_server")
    except pytest.FixtureLookupError:
        from tunesmith.serving.launcher import Server

        server = Server(models_dir=models, name=f"ui-{free_port()}", http_port=free_port(),
                        grpc_port=free_port(), metrics_port=free_port())
        server.start()

        def stop():
            server.stop()
            shutil.rmtree(server.run_dir, ignore_errors=True)

        request.addfinalizer(stop)
        return server


@pytest.fixture()
def closed_url() -> str:
    """A URL where no server listens (the "server is down" case)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def ui_gateway(request, tmp_path_factory):
    """``tunesmith gateway`` serving the finished platform's Seldon manifests (the ``studio`` pipeline
    among them), for the whole session.

    With ``$TUNESMITH_UI_TEST_GATEWAY`` set to a URL, the tests use the gateway running there (e.g.
    ``make up``) instead. Skips, saying why, while the platform has no studio pipeline (the stage-3
    notebooks that write it are not there).
    """
    if os.environ.get(UI_TEST_GATEWAY_ENV):
        return RunningGateway(os.environ[UI_TEST_GATEWAY_ENV].rstrip("/"))
    models = _platform_models(request)
    manifests = platform_manifests(models)
    if manifests is None:
        pytest.skip(f"the finished platform has no studio pipeline in {models.parent / 'manifests'} "
                    "(no notebook writes it)")
    gateway = start_gateway(manifests, models, tmp_path_factory.mktemp("ui-gateway"))
    request.addfinalizer(gateway.stop)
    return gateway
