"""The Studio section: stage 3's ``studio`` pipeline, where both generator versions write candidate
tunes for the prompt, a critic scores them and keeps the best, and the synthesizer plays it.

Its button is the ``/studio`` API endpoint. The pipeline runs on a Seldon endpoint (``make up`` serves
one once stage 3's manifests exist); elsewhere the section says so.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from app.common import AppContext, or_skip, seed_or_none, served_by
from app.sections.compose import EXAMPLE_PROMPTS, PIPELINE_HINT
from tunesmith.music.notation import notation_html
from tunesmith.serving.client import (
    STUDIO,
    STUDIO_BARS,
    ClientError,
    MusicClient,
    PipelineNotReady,
    ServerUnavailable,
)

LABEL = "Studio"
NEEDS = ("tune-critic", "synthesizer")
"""Models that must be loaded before the app offers this section (the pipeline itself is checked
when it is called: a plain MLServer serves none, and the section says so)."""
WINNER, LOST = "winner", "lost"
COLOURS = {WINNER: "#ea580c", LOST: "#9ca3af"}


def scores_frame(labels: list[str], scores: list[float], winner: str | None) -> pd.DataFrame:
    """The critic's scores as the bar chart's table: ``candidate``, ``score``, ``result`` (winner or
    lost) and ``bar``, the bar's caption (the candidate and its score, since close scores look alike)."""
    return pd.DataFrame({
        "candidate": [str(label) for label in labels],
        "score": [round(float(score), 4) for score in scores],
        "result": [WINNER if label == winner else LOST for label in labels],
        "bar": [f"{label}: {float(score):.3f}" for label, score in zip(labels, scores)],
    })


def studio(server_url: str, prompt: str, seed: float | None = -1, bars: int = STUDIO_BARS, *,
           seldon: bool | None = None):
    """Ask the ``studio`` pipeline for a tune; what the Studio button runs.

    Args:
        server_url: base URL of the Seldon endpoint (``tunesmith gateway`` or a cluster's mesh).
        prompt: what to write, e.g. "a lively jig in D".
        seed: a whole number (0 or more) to repeat a result; -1 or empty for a new one each time
            (the message says which seed was used).
        bars: bars per candidate.
        seldon: whether ``server_url`` is a Seldon endpoint; ``None``: ``$TUNESMITH_SELDON``. The
            pipeline is called the same way either way; a plain MLServer serves none.

    Returns:
        ``(message, abc, notation_html, wav_bytes, scores, report)``: the winner's ABC, notation
        and audio, the critic's score per candidate (a table: candidate, score, result) and its
        report (who won and why each other candidate lost). When the pipeline is not served, or
        not ready yet, the message says so and the rest is empty.
    """
    empty = ("", "", None, None, "")
    if not (prompt or "").strip():
        return ("Write a prompt first, e.g. *a lively jig in D*.", *empty)
    with MusicClient(server_url, seldon=seldon) as client:
        try:
            result = client.studio(prompt.strip(), seed=seed_or_none(seed), bars=int(bars) if bars else None)
        except PipelineNotReady as exc:
            if exc.loading:
                return (f"The studio is not ready yet: {exc} Try again in a moment; the status line at the top "
                        "says which models are ready.", *empty)
            return (f"The studio is not available: {exc} {PIPELINE_HINT}", *empty)
        except ClientError as exc:
            return (f"The studio could not compose: {exc}", *empty)
    winner = result.winner
    count = len(result.scores)
    if count:
        chose = (f"The critic chose **{winner}** of {count} candidate{'s' if count != 1 else ''} "
                 f"(score {max(result.scores):.2f}).")
    else:
        chose = "The pipeline sent no scores."
    played = "" if result.wav else " The pipeline sent no audio."
    request = f" Request id `{result.reply.request_id}`." if result.reply.request_id else ""
    message = f"{chose}{played} Seed {result.seed}. {served_by(result.reply)}{request}"
    return (message, result.abc, notation_html(result.abc), result.wav,
            scores_frame(result.labels, result.scores, winner), result.report)


def availability(server_url: str, seldon: bool | None = None) -> str:
    """A line under the section's title: whether the endpoint serves the studio pipeline, and if it is ready."""
    with MusicClient(server_url, timeout=5, seldon=seldon) as client:
        try:
            pipelines = {p["name"]: p for p in client.pipelines()}
        except ServerUnavailable:
            return ""  # the status line at the top says so already
        except ClientError:
            return f"This server serves no pipelines. {PIPELINE_HINT}"
    if STUDIO not in pipelines:
        served = ", ".join(f"`{name}`" for name in pipelines) or "none"
        return f"This Seldon endpoint serves no `{STUDIO}` pipeline (its pipelines: {served})."
    if not pipelines[STUDIO].get("ready"):
        return f"The `{STUDIO}` pipeline is loading its models: press the button once the status line says it is ready."
    steps = " → ".join(f"`{step}`" for step in pipelines[STUDIO].get("steps", []))
    return f"The `{STUDIO}` pipeline is ready: {steps}."


def build(ctx: AppContext) -> None:
    """Prompt on the left; the winner, the critic's scores and its report on the right."""
    gr.Markdown(
        "Both generator versions write candidate tunes for your prompt; a critic scores each one (bars that fill "
        "the metre, the key and header asked for, and novelty: a long run of notes shared with a corpus tune "
        "disqualifies) and keeps the best, which the synthesizer plays. One request to one pipeline, through "
        "Seldon Core v2.",
        elem_classes=["tab-intro"],
    )
    note = gr.Markdown(elem_classes=["tab-intro"])
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            prompt = gr.Textbox(label="Prompt", placeholder="a lively jig in D", lines=2,
                                info="Name a rhythm (jig, reel, hornpipe, air...), a key and/or a metre.")
            with gr.Row():
                seed = gr.Number(value=-1, precision=0, label="Seed", info="-1: new tunes each time")
                bars = gr.Slider(1, 32, value=STUDIO_BARS, step=1, label="Bars", info="per candidate")
            button = gr.Button("Ask the studio", variant="primary")
            gr.Examples([[p] for p in EXAMPLE_PROMPTS], inputs=[prompt], label="Try")
            scores = gr.BarPlot(x="bar", y="score", color="result", color_map=COLOURS, y_lim=[0, 1],
                                label="Critic's scores", x_title="candidate", y_title="score (0-1)",
                                color_title="", sort="x", height=300, elem_id="studio-scores")
        with gr.Column(scale=2):
            message = gr.Markdown(label="Message", elem_classes=["status-line"])
            notation = gr.HTML(label="Winner's notation", elem_classes=["notation"])
            audio = gr.Audio(label="Winner's audio", type="filepath", format="wav", interactive=False)
            report = gr.Textbox(label="Critic's report", lines=4, interactive=False)
            abc = gr.Code(label="Winner (ABC)", language=None, lines=8, interactive=False)

    def run(prompt, seed, bars):
        return studio(ctx.server_url, prompt, seed, bars, seldon=ctx.seldon)

    def check():
        return availability(ctx.server_url, ctx.seldon)

    ctx.demo.load(check, None, note, api_visibility="private")
    inputs = [prompt, seed, bars]
    button.click(run, inputs, [message, abc, notation, audio, scores, report], api_name="studio",
                 api_description="Run the studio pipeline for a prompt; returns message, the winner's ABC, "
                                 "notation and WAV, the critic's scores per candidate and its report.",
                 ).then(or_skip, audio, ctx.last_tune, api_visibility="private").then(
                     check, None, note, api_visibility="private")
    prompt.submit(run, inputs, [message, abc, notation, audio, scores, report], api_visibility="private").then(
        or_skip, audio, ctx.last_tune, api_visibility="private")
