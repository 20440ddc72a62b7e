"""The Tunesmith web UI (Gradio); run it with ``python -m app`` from the repository root."""
