"""Tunesmith's web UI: compose a folk tune from a prompt, see it engraved, hear it played.

The app holds no model code. Every action is a V2 REST call to the inference server through
:mod:`tunesmith.client`, so what the UI shows is exactly what any other client of the server gets,
and the UI keeps working (and says so plainly) while the server is down or a model is missing.

Run it from the repository root (``make app`` does this)::

    python -m app                       # server at $TUNESMITH_SERVER_URL or http://127.0.0.1:8080
    python -m app --port 7861 --server-url http://127.0.0.1:9080

The Compose action is also an API endpoint::

    from gradio_client import Client
    abc = Client("http://127.0.0.1:7860").predict("a lively jig in D", api_name="/compose")[1]

Each tab is built by one small function registered in :data:`TABS`, so later stages add a tab
(hum to tune, effects, classify) by writing a function and appending it.
"""

from __future__ import annotations

import argparse
import io
import os
from typing import Callable

# Offline first: no usage statistics or update checks from Gradio, no hub look-ups.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402
import soundfile  # noqa: E402

from tunesmith.client import (  # noqa: E402
    DEFAULT_URL,
    GENERATOR,
    SYNTHESIZER,
    URL_ENV,
    ClientError,
    MusicClient,
    ServerUnavailable,
)
from tunesmith.notation import notation_html  # noqa: E402
from tunesmith.plots import spectrogram, waveform  # noqa: E402

TITLE = "Tunesmith"
MODELS = (GENERATOR, SYNTHESIZER)
# The synthesizer's instruments (tunesmith.synth.INSTRUMENTS). Listed here rather than imported
# so that the UI does not load the synthesizer's code; a test keeps the two lists equal.
INSTRUMENTS = ("fiddle", "flute", "whistle", "harp", "piano", "sine")
DEFAULT_INSTRUMENT = "fiddle"
EXAMPLE_PROMPTS = (
    "a lively jig in D",
    "a reel in G major",
    "a slow air in A minor",
    "a hornpipe in 4/4 in Bb",
    "a slip jig in E dorian",
)
CSS = """
.notation svg { width: 100%; height: auto; }
.status-line p { margin: 0; }
"""


class AppContext:
    """What every tab needs: where the server is, a way to call it, and the app (for page-load events)."""

    def __init__(self, server_url: str, demo: gr.Blocks):
        self.server_url = server_url
        self.demo = demo

    def client(self) -> MusicClient:
        """A fresh client per event: Gradio runs events in threads, and a client is per thread."""
        return MusicClient(self.server_url)


# -- server status ---------------------------------------------------------------------------------
def server_status(server_url: str) -> str:
    """One plain Markdown line: is the server running, and which models are loaded.

    Args:
        server_url: base URL of the inference server.

    Returns:
        Markdown text, never an exception: the UI shows it as it is.
    """
    client = MusicClient(server_url, timeout=5)
    try:
        if not client.live():
            return str(ServerUnavailable(server_url))
        ready = {name: client.model_ready(name) for name in MODELS}
        states = ", ".join(f"`{name}` {'ready' if ok else '**not loaded**'}" for name, ok in ready.items())
        line = f"Inference server at {server_url} is running: {states}."
        if not all(ready.values()):
            line += " Run the notebook that writes the missing model's folder, then restart `make serve`."
        return line
    except ClientError as exc:
        return str(exc)
    finally:
        client.close()


# -- the compose tab -----------------------------------------------------------------------------
def compose(
    server_url: str,
    prompt: str,
    temperature: float = 1.0,
    tempo: int = 120,
    instrument: str = DEFAULT_INSTRUMENT,
    seed: float | None = -1,
    bars: int = 0,
):
    """Write a tune for ``prompt``, engrave it and play it; what the Compose button runs.

    Args:
        server_url: base URL of the inference server.
        prompt: what to write, e.g. "a lively jig in D".
        temperature: sampling temperature; lower is safer, higher more adventurous.
        tempo: beats per minute for the synthesizer.
        instrument: one of :data:`INSTRUMENTS`.
        seed: a whole number (0 or more) to repeat a result; -1 or empty for a new tune every time.
        bars: how many bars to write; 0 lets the model decide.

    Returns:
        ``(message, abc, notation_html, wav_bytes, waveform_figure, spectrogram_figure)``; when a
        step fails, the message says why and the later outputs are empty.
    """
    if not (prompt or "").strip():
        return "Write a prompt first, e.g. *a lively jig in D*.", "", "", None, None, None
    seed = None if seed is None or seed == "" or int(seed) < 0 else int(seed)
    bars = int(bars) if bars else None
    with MusicClient(server_url) as client:
        try:
            abc = client.compose(prompt.strip(), seed=seed, temperature=float(temperature), bars=bars)
        except ClientError as exc:
            return f"Could not compose: {exc}", "", "", None, None, None
        notation = notation_html(abc)
        try:
            wav, sample_rate = client.synthesize(abc, tempo=int(tempo), instrument=instrument or None)
        except ClientError as exc:
            return f"Composed the tune, but could not play it: {exc}", abc, notation, None, None, None
    samples, _ = soundfile.read(io.BytesIO(wav), dtype="float32")
    seconds = len(samples) / sample_rate
    message = f"Composed and played on {instrument} at {int(tempo)} bpm: {seconds:.1f} s of audio at {sample_rate} Hz."
    return message, abc, notation, wav, waveform(samples, sample_rate), spectrogram(samples, sample_rate)


def compose_tab(ctx: AppContext) -> None:
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
                tempo = gr.Slider(40, 240, value=120, step=1, label="Tempo (bpm)")
                instrument = gr.Dropdown(list(INSTRUMENTS), value=DEFAULT_INSTRUMENT, label="Instrument")
            seed = gr.Number(value=-1, precision=0, label="Seed", info="-1: a new tune each time; any other number repeats one")
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

    def run(prompt, temperature, tempo, instrument, seed, bars):
        return compose(ctx.server_url, prompt, temperature, tempo, instrument, seed, bars)

    def from_link(temperature, tempo, instrument, seed, bars, request: gr.Request):
        """A link such as ``/?prompt=a+jig+in+D&seed=7`` opens with that tune composed."""
        query = request.query_params if request is not None else {}
        text = (query.get("prompt") or "").strip()
        if not text:
            return [gr.skip()] * 8
        try:
            seed = int(query.get("seed", seed))
        except ValueError:
            pass
        return [text, seed, *run(text, temperature, tempo, instrument, seed, bars)]

    inputs = [prompt, temperature, tempo, instrument, seed, bars]
    outputs = [message, abc, notation, audio, wave_plot, spec_plot]
    button.click(run, inputs, outputs, api_name="compose",
                 api_description="Compose a tune for a prompt; returns message, ABC, notation, WAV and plots.")
    prompt.submit(run, inputs, outputs, api_visibility="private")
    ctx.demo.load(from_link, inputs[1:], [prompt, seed, *outputs], api_visibility="private")


TABS: list[tuple[str, Callable[[AppContext], None]]] = [
    ("Compose", compose_tab),
]
"""The app's tabs, in order: a label and the function that builds the tab's contents."""


# -- the app ---------------------------------------------------------------------------------------
def build_app(server_url: str | None = None) -> gr.Blocks:
    """Build the whole UI.

    Args:
        server_url: inference server base URL; defaults to ``$TUNESMITH_SERVER_URL``, else
            ``http://127.0.0.1:8080``.

    Returns:
        The Gradio Blocks app, not yet launched.
    """
    server_url = (server_url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        ctx = AppContext(server_url, demo)
        gr.Markdown(f"# {TITLE}\nFolk tunes from a prompt, served by MLServer over the V2 inference protocol.")
        with gr.Row(equal_height=True):
            status = gr.Markdown(label="Status", elem_classes=["status-line"])
            refresh = gr.Button("Check server", size="sm", scale=0, min_width=140)
        with gr.Tabs():
            for label, build_tab in TABS:
                with gr.Tab(label):
                    build_tab(ctx)

        def check():
            return server_status(ctx.server_url)

        demo.load(check, None, status, api_visibility="private")
        refresh.click(check, None, status, api_name="status")
    demo.server_url = ctx.server_url
    return demo


def offline_theme() -> gr.themes.Base:
    """Gradio's default look with fonts served by the app itself.

    The default theme loads "Source Sans Pro" from Google Fonts, a request that fails offline (or
    hangs behind a firewall that drops it). IBM Plex Sans ships inside the gradio package.
    """
    from gradio.themes.utils import fonts

    return gr.themes.Default(font=(fonts.LocalFont("IBM Plex Sans"), "ui-sans-serif", "system-ui", "sans-serif"))


def launch_options() -> dict:
    """Keyword arguments for ``Blocks.launch`` shared by :func:`main`, the notebook and the tests.

    Server-side rendering needs Node.js and is off; no share link; fonts come from the app.
    """
    return {"ssr_mode": False, "share": False, "css": CSS, "theme": offline_theme()}


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m app [--host H] [--port P] [--server-url URL]``."""
    parser = argparse.ArgumentParser(prog="python -m app", description="Tunesmith web UI")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"),
                        help="address to listen on (default: $HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("UI_PORT", "7860")),
                        help="port to listen on (default: $UI_PORT or 7860)")
    parser.add_argument("--server-url", default=None,
                        help=f"inference server (default: ${URL_ENV} or {DEFAULT_URL})")
    args = parser.parse_args(argv)
    demo = build_app(args.server_url)
    print(f"UI on http://{args.host}:{args.port}, calling the inference server at {demo.server_url}", flush=True)
    demo.queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=args.port, **launch_options())


if __name__ == "__main__":
    main()
