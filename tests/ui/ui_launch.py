"""Loading the app (the ``app`` package: ``app/app.py`` and its sections) and launching it on a free
port, for the UI tests.

The app is run as ``python -m app`` from the repository root, outside the installed package; the
repository root is put on ``sys.path`` here so the tests do not depend on the directory pytest
starts from.
"""

from __future__ import annotations

import importlib
import sys
from contextlib import contextmanager

from tunesmith import paths
from tunesmith.serving.launcher import free_port


def load_app_module(name: str = "app.app"):
    """A module of the app: ``app.app`` (``build_app``, ``launch_options``, ...) unless ``name`` says
    another, e.g. ``app.common`` or ``app.sections.effects``."""
    if str(paths.REPO) not in sys.path:
        sys.path.append(str(paths.REPO))
    return importlib.import_module(name)


@contextmanager
def launched(app_module, server_url: str, seldon: bool | None = False):
    """Launch the app on a free port without blocking; yield its URL; close it afterwards.

    ``seldon``: whether ``server_url`` is a Seldon endpoint (``None``: as ``$TUNESMITH_SELDON`` says).
    """
    demo = app_module.build_app(server_url, seldon=seldon)
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
