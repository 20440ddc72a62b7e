"""The Tunesmith web UI (Gradio); run it with ``python -m app`` from the repository root.

The package makes the process offline before any of its modules imports gradio (which reads its
analytics setting on import) or a Hugging Face library: every way into the app (``python -m app``,
the tests, the notebook) passes through here first.
"""

from tunesmith import offline

offline.enforce()
