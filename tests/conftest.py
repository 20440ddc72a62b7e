"""Fixtures shared by the whole suite.

The platform under test is built exactly as `make up` builds it: the notebooks' own file-writing
cells are replayed into a temporary models folder (``tunesmith.workshop.stages.materialize``), and a real
``mlserver start`` serves it on free ports. The repository's own ``models/`` is never touched.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import tunesmith  # noqa: F401  (importing the package makes the whole test process offline)


@pytest.fixture(scope="session")
def platform_models(tmp_path_factory) -> Path:
    """Every stage's model folders, materialised from the notebooks into a temporary folder."""
    from tunesmith.workshop.stages import materialize

    models = tmp_path_factory.mktemp("platform") / "models"
    materialize("solution", models, backup=False)
    return models


@pytest.fixture(scope="session")
def platform_server(platform_models):
    """A real mlserver serving the finished platform on free ports, for the whole session."""
    from tunesmith.serving.launcher import Server, free_port

    server = Server(
        models_dir=platform_models,
        name=f"pytest-{os.getpid()}",
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
    )
    with server:
        yield server


@pytest.fixture(scope="session", autouse=True)
def request_log_outside_the_repository(tmp_path_factory):
    """Gateways started by the tests (and the notebooks they run) write their request log here, not
    into the repository's ``.run/request-log.sqlite``."""
    from tunesmith.gateway.requestlog import ENV_PATH

    previous = os.environ.get(ENV_PATH)
    os.environ[ENV_PATH] = str(tmp_path_factory.mktemp("request-log") / "requests.sqlite")
    yield
    if previous is None:
        os.environ.pop(ENV_PATH, None)
    else:
        os.environ[ENV_PATH] = previous
