"""Loading the app from ``app/app.py`` and launching it on a free port, for the UI tests.

The app is run as ``python -m app`` from the repository root, outside the installed package; it
is loaded here from its file so the tests do not depend on the directory pytest starts from.
"""

from __future__ import annotations

import importlib.util
import sys
from contextlib import contextmanager

from tunesmith import paths
from tunesmith.serving.launcher import free_port


def load_app_module():
    """``app/app.py`` as a module (``build_app``, ``compose``, ``launch_options``, ...)."""
    name = "tunesmith_ui_app"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, paths.REPO / "app" / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
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
