"""Fixtures for the UI tests: the app module, a launched app, and the server it calls.

The app lives in ``app/app.py`` (run as ``python -m app`` from the repository root), outside the
installed package; it is loaded here from its file so the tests do not depend on the directory
pytest was started from.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from tunesmith import paths
from tunesmith.server import free_port

STAGE_1_MODELS = ("tune-generator", "synthesizer")


@pytest.fixture(scope="session")
def app_module():
    """``app/app.py`` as a module (``build_app``, ``compose``, ``launch_options``, ...)."""
    path = paths.REPO / "app" / "app.py"
    spec = importlib.util.spec_from_file_location("tunesmith_ui_app", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@contextmanager
def launched(app_module, server_url: str):
    """Launch the app on a free port without blocking; yield its URL; close it afterwards."""
    demo = app_module.build_app(server_url)
    port = free_port()
    demo.queue().launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        **app_module.launch_options(),
    )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def _served_models(models_dir: Path) -> set[str]:
    names = set()
    for settings in models_dir.glob("**/model-settings.json"):
        names.add(json.loads(settings.read_text()).get("name") or settings.parent.name)
    return names


@pytest.fixture(scope="session")
def ui_server(request):
    """The finished platform's server (the suite's ``platform_server``), for end-to-end UI tests.

    Skips, saying why, while the platform cannot be built or lacks the stage-1 models (the
    notebooks that write them are not there yet).
    """
    try:
        models = request.getfixturevalue("platform_models")
    except pytest.FixtureLookupError:
        from tunesmith import stages

        if not hasattr(stages, "materialize"):
            pytest.skip("tunesmith.stages.materialize is not available to build the platform")
        models = Path(request.getfixturevalue("tmp_path_factory").mktemp("ui-platform")) / "models"
        stages.materialize("solution", models, backup=False)
    missing = sorted(set(STAGE_1_MODELS) - _served_models(Path(models)))
    if missing:
        pytest.skip(f"the finished platform has no {', '.join(missing)} model yet (no notebook writes it)")
    try:
        return request.getfixturevalue("platform_server")
    except pytest.FixtureLookupError:
        from tunesmith.server import Server

        server = Server(models_dir=models, name=f"ui-{free_port()}", http_port=free_port(),
                        grpc_port=free_port(), metrics_port=free_port())
        server.start()
        request.addfinalizer(server.stop)
        return server


@pytest.fixture()
def closed_url() -> str:
    """A URL where no server listens (the "server is down" case)."""
    return f"http://127.0.0.1:{free_port()}"
