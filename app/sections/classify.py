"""The Classify section: which dance rhythm (reel, jig, hornpipe, slip jig) a recording has (stage 2).

Its button is the ``/classify`` API endpoint.
"""

from __future__ import annotations

import gradio as gr

from app.common import AUDIO_SOURCES, AppContext, audio_bytes, no_audio_message, or_skip
from tunesmith.serving.client import ClientError, MusicClient

LABEL = "Classify"
NEEDS = ("style-classifier",)
"""Models that must be loaded before the app offers this section."""


def classify(server_url: str, recording: str | None, *, seldon: bool | None = None):
    """Which dance rhythm a recording has; what the Classify button runs.

    Args:
        server_url: base URL of the inference server.
        recording: path of the audio file.
        seldon: whether ``server_url`` is a Seldon endpoint; ``None``: ``$TUNESMITH_SELDON``.

    Returns:
        ``(message, {label: probability}, top_label)``.
    """
    if not recording:
        return no_audio_message("a tune"), None, ""
    with MusicClient(server_url, seldon=seldon) as client:
        try:
            probabilities = client.classify(audio_bytes(recording))
        except ClientError as exc:
            return f"Could not classify: {exc}", None, ""
    top = max(probabilities, key=probabilities.get)
    return f"Most likely a **{top}** ({probabilities[top]:.0%}).", probabilities, top


def build(ctx: AppContext) -> None:
    """Audio in on the left; the rhythm's probabilities on the right."""
    gr.Markdown(
        "Which dance is it: reel, jig, hornpipe or slip jig? The classifier listens to how the notes group "
        "and how fast they come: a reel played slowly sounds like a hornpipe, to people too. Compose plays "
        "each dance at its own speed when its tempo is 0.",
        elem_classes=["tab-intro"],
    )
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            recording = gr.Audio(sources=AUDIO_SOURCES, type="filepath", label="A tune")
            use_last = gr.Button("Use the last composed tune", size="sm")
            button = gr.Button("Classify", variant="primary")
        with gr.Column(scale=2):
            message = gr.Markdown(label="Message", elem_classes=["status-line"])
            chart = gr.Label(label="Rhythm", show_label=True)
            top = gr.Textbox(label="Top label", interactive=False)

    def run(recording):
        return classify(ctx.server_url, recording, seldon=ctx.seldon)

    use_last.click(or_skip, ctx.last_tune, recording, api_visibility="private")
    button.click(run, recording, [message, chart, top], api_name="classify",
                 api_description="The probability of each dance rhythm; returns message, probabilities and the top label.")
