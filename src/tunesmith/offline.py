"""The workshop runs offline: the one place that says so, for every entry point.

No code path may reach for a model hub at run time: every model loads from a folder of this
repository or of an installed package. huggingface_hub and transformers read these variables when
they are first imported, so they must be set before that; ``tunesmith/__init__.py`` calls
:func:`enforce` and every entry point (the ``tunesmith`` command, the app, the notebooks, the MLServer
runtimes, the tests) imports ``tunesmith`` first. ``setdefault`` keeps a value the user set on purpose.
"""

from __future__ import annotations

import os
from typing import MutableMapping

ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",  # huggingface_hub: never call the hub, read only the local cache
    "TRANSFORMERS_OFFLINE": "1",  # transformers: the same, for its own code paths
    "GRADIO_ANALYTICS_ENABLED": "False",  # gradio: no usage reports (and no waiting on a closed network)
}


def enforce(environ: MutableMapping[str, str] = os.environ) -> MutableMapping[str, str]:
    """Set every offline variable that is not set yet in ``environ``; return it."""
    for name, value in ENVIRONMENT.items():
        environ.setdefault(name, value)
    return environ
