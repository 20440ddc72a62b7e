"""The Compose section: a tune from a prompt, engraved and played (stage 1).

Its button is the ``/compose`` API endpoint; a link such as ``/?prompt=a+jig+in+D&seed=7`` opens the
app with that tune composed. The tune comes from the generator version the *Composer* picks (stage 2
serves two), from stage 3's ``studio`` pipeline, where both versions write a candidate and a critic
keeps the better one, or, from a Seldon endpoint, from a Seldon Experiment between the two versions
(3.4), which picks one; the message says who answered and the route the request took.
"""

from __future__ import annotations

import gradio as gr

from app.common import DEFAULT_INSTRUMENT, INSTRUMENTS, AppContext, or_skip, seed_or_none, served_by
from tunesmith.audio.io import decode_audio
from tunesmith.audio.plots import spectrogram, waveform
from tunesmith.music.abc import dance_tempo
from tunesmith.music.notation import notation_html
from tunesmith.serving.client import STUDIO, ClientError, MusicClient, PipelineNotReady

LABEL = "Compose"
NEWEST = "newest"
TARGETS = (
    ("generator (newest)", NEWEST),
    ("generator v1", "v1"),
    ("generator v2", "v2"),
    ("studio pipeline (both versions + critic)", STUDIO),
)
"""The *Composer* choices: ``(label, value)``; the value is what ``/compose`` takes as ``target``."""
EXPERIMENT = "experiment:"
"""A ``target`` that starts with this names a Seldon Experiment between generator versions (Seldon only)."""
EXPERIMENTS = (
    ("experiment generators-ab (v1/v2 50/50)", EXPERIMENT + "generators-ab"),
    ("experiment generators-canary (v2 10 %)", EXPERIMENT + "generators-canary"),
    ("experiment generators-shadow (v1, v2 mirrored)", EXPERIMENT + "generators-shadow"),
)
"""The experiments notebook 3.4 writes, offered when the app talks to a Seldon endpoint; any other
``experiment:<name>`` may be typed in."""
PIPELINE_HINT = ("Pipelines run on a Seldon endpoint: `make up` serves the platform through the gateway "
                 "once stage 3's manifests exist, `make gateway` serves your own `manifests/`.")
EXAMPLE_PROMPTS = (
    "a lively jig in D",
    "a reel in G major",
    "a slow air in A minor",
    "a hornpipe in B flat",
    "a slip jig in E dorian",
)


def compose(
    server_url: str,
    prompt: str,
    temperature: float = 1.0,
    tempo: int = 0,
    instrument: str = DEFAULT_INSTRUMENT,
    seed: float | None = -1,
    bars: int = 0,
    target: str = NEWEST,
    *,
    seldon: bool | None = None,
):
    """Write a tune for ``prompt``, engrave it and play it; what the Compose button runs.

    Args:
        server_url: base URL of the inference server (or Seldon endpoint).
        prompt: what to write, e.g. "a lively jig in D".
        temperature: sampling temperature; lower is safer, higher more adventurous.
        tempo: quarter notes per minute for the synthesizer; 0 for the tune's dance tempo (a reel
            at 220, a jig at 168, see :func:`tunesmith.music.abc.dance_tempo`; the synthesizer's default
            for rhythms without one).
        instrument: one of :data:`app.common.INSTRUMENTS`.
        seed: a whole number (0 or more) to repeat a result; -1 or empty for a new tune every time.
        bars: how many bars to write; 0 lets the model decide.
        target: who writes the tune (:data:`TARGETS`): ``"newest"`` (the server's newest generator
            version), ``"v1"``, ``"v2"``, or ``"studio"`` (the pipeline: both versions write
            candidates, the critic keeps one; it takes the prompt, seed and bars, and samples at the
            generators' own temperature); from a Seldon endpoint also ``"experiment:<name>"``, an
            Experiment between generator versions (:data:`EXPERIMENTS`) that picks the version.
        seldon: whether ``server_url`` is a Seldon endpoint; ``None``: ``$TUNESMITH_SELDON``.

    Returns:
        ``(message, abc, notation_html, wav_bytes, waveform_figure, spectrogram_figure)``; when a
        step fails, the message says why and the later outputs are empty. The message ends with
        who answered (and, from a Seldon endpoint, the route the request took).
    """
    if not (prompt or "").strip():
        return "Write a prompt first, e.g. *a lively jig in D*.", "", "", None, None, None
    target = (target or NEWEST).strip()
    experiment = target.removeprefix(EXPERIMENT).strip() if target.startswith(EXPERIMENT) else None
    if experiment is None and target not in dict((value, label) for label, value in TARGETS):
        choices = ", ".join(value for _, value in TARGETS)
        return f"Unknown composer {target!r}: choose one of {choices}.", "", "", None, None, None
    seed = seed_or_none(seed)
    bars = int(bars) if bars else None
    with MusicClient(server_url, seldon=seldon) as client:
        try:
            if target == STUDIO:
                result = client.studio(prompt.strip(), seed=seed, bars=bars)
                abc = result.abc
                scores = ", ".join(f"{label} {score:.2f}" for label, score in zip(result.labels, result.scores))
                answered = (f"The critic chose {result.winner} of {len(result.scores)} candidates ({scores}). "
                            + served_by(result.reply))
            elif experiment:
                abc = client.compose(prompt.strip(), seed=seed, temperature=float(temperature), bars=bars,
                                     experiment=experiment)
                answered = f"Through experiment `{experiment}`: " + served_by(client.last_reply)
            else:
                abc = client.compose(prompt.strip(), seed=seed, temperature=float(temperature), bars=bars,
                                     version=None if target == NEWEST else target)
                answered = served_by(client.last_reply)
        except PipelineNotReady as exc:
            hint = "" if exc.loading else f" {PIPELINE_HINT}"
            return f"Could not compose: {exc}{hint}", "", "", None, None, None
        except ClientError as exc:
            return f"Could not compose: {exc}", "", "", None, None, None
        notation = notation_html(abc)
        tempo = int(tempo) if tempo else dance_tempo(abc)
        try:
            wav, sample_rate = client.synthesize(abc, tempo=tempo, instrument=instrument or None)
        except ClientError as exc:
            return f"Composed the tune, but could not play it: {exc} {answered}", abc, notation, None, None, None
    samples, _ = decode_audio(wav)
    seconds = len(samples) / sample_rate
    speed = f"{tempo} bpm" if tempo else "the synthesizer's default tempo"
    message = (f"Composed and played on {instrument} at {speed}: {seconds:.1f} s of audio at {sample_rate} Hz. "
               f"{answered}")
    return message, abc, notation, wav, waveform(samples, sample_rate), spectrogram(samples, sample_rate)


def build(ctx: AppContext) -> None:
    """Prompt and controls on the left; notation, audio, ABC and plots on the right and below."""
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            prompt = gr.Textbox(
                label="Prompt",
                placeholder="a lively jig in D",
                lines=2,
                info="Name a rhythm (jig, reel, hornpipe, air...), a key and/or a metre.",
            )
            with gr.Row():
                temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature",
                                        info="lower: safer; higher: more surprising")
                bars = gr.Slider(0, 32, value=0, step=1, label="Bars", info="0: the model decides")
            with gr.Row():
                tempo = gr.Slider(0, 300, value=0, step=1, label="Tempo (bpm)",
                                  info="0: the rhythm's dance tempo (a reel 220, a jig 168)")
                instrument = gr.Dropdown(list(INSTRUMENTS), value=DEFAULT_INSTRUMENT, label="Instrument")
            seed = gr.Number(value=-1, precision=0, label="Seed", info="-1: a new tune each time; any other number repeats one")
            target = gr.Dropdown(list(TARGETS) + (list(EXPERIMENTS) if ctx.seldon else []), value=NEWEST,
                                 label="Composer", allow_custom_value=ctx.seldon,
                                 info="a generator version, the studio pipeline (both versions write, a critic picks)"
                                      + (", or an experiment that picks a version" if ctx.seldon else ""))
            button = gr.Button("Compose", variant="primary")
            gr.Examples([[p] for p in EXAMPLE_PROMPTS], inputs=[prompt], label="Try")
        with gr.Column(scale=2):
            message = gr.Markdown(label="Message", elem_classes=["status-line"])
            notation = gr.HTML(label="Notation", elem_classes=["notation"])
            audio = gr.Audio(label="Audio", type="filepath", format="wav", interactive=False)
            abc = gr.Code(label="ABC", language=None, lines=8, interactive=False)
    with gr.Row():
        wave_plot = gr.Plot(label="Waveform")
        spec_plot = gr.Plot(label="Spectrogram")

    def run(prompt, temperature, tempo, instrument, seed, bars, target=NEWEST):
        return compose(ctx.server_url, prompt, temperature, tempo, instrument, seed, bars, target, seldon=ctx.seldon)

    def from_link(temperature, tempo, instrument, seed, bars, target, request: gr.Request):
        """A link such as ``/?prompt=a+jig+in+D&seed=7`` opens with that tune composed."""
        query = request.query_params if request is not None else {}
        text = (query.get("prompt") or "").strip()
        if not text:
            return [gr.skip()] * 8
        try:
            seed = int(query.get("seed", seed))
        except ValueError:
            pass
        return [text, seed, *run(text, temperature, tempo, instrument, seed, bars, target)]

    inputs = [prompt, temperature, tempo, instrument, seed, bars, target]
    outputs = [message, abc, notation, audio, wave_plot, spec_plot]

    button.click(run, inputs, outputs, api_name="compose",
                 api_description="Compose a tune for a prompt; returns message, ABC, notation, WAV and plots.",
                 ).then(or_skip, audio, ctx.last_tune, api_visibility="private")
    prompt.submit(run, inputs, outputs, api_visibility="private").then(
        or_skip, audio, ctx.last_tune, api_visibility="private")
    ctx.demo.load(from_link, inputs[1:], [prompt, seed, *outputs], api_visibility="private").then(
        or_skip, audio, ctx.last_tune, api_visibility="private")
