"""Tunesmith's web UI: compose a folk tune from a prompt, see it engraved, hear it played.

The app holds no model code. Every action is a V2 REST call to the inference server through
:mod:`tunesmith.serving.client`, so what the UI shows is exactly what any other client of the server gets,
and the UI keeps working (and says so plainly) while the server is down or a model is missing.

Run it from the repository root (``make app`` does this)::

    python -m app                       # server at $TUNESMITH_SERVER_URL or http://127.0.0.1:8080
    python -m app --port 7861 --server-url http://127.0.0.1:9080

The Compose action is also an API endpoint::

    from gradio_client import Client
    abc = Client("http://127.0.0.1:7860").predict("a lively jig in D", api_name="/compose")[1]

The other tabs are API endpoints too: ``/hum_to_tune`` (a recording in, its transcription and a
tune that continues it out), ``/effects`` (an audio file and effect settings in, the processed
audio out) and ``/classify`` (an audio file in, the probability of each dance rhythm out)::

    client.predict(handle_file("hummed.wav"), api_name="/hum_to_tune")

Each tab is built by one small function registered in :data:`TABS`, so a later stage adds a tab
by writing a function and appending it.
"""

from __future__ import annotations

import argparse
import inspect
import io
import math
import os
from collections import Counter
from pathlib import Path
from typing import Callable

# Offline first: no usage statistics or update checks from Gradio, no hub look-ups.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402
import soundfile  # noqa: E402

from tunesmith.music.abc import dance_tempo  # noqa: E402
from tunesmith.audio.io import AudioError, decode_audio, encode_wav  # noqa: E402
from tunesmith.serving.client import (  # noqa: E402
    CLASSIFIER,
    DEFAULT_URL,
    EFFECTS,
    GENERATOR,
    SYNTHESIZER,
    TRANSCRIBER,
    URL_ENV,
    ClientError,
    MusicClient,
    ServerUnavailable,
)
from tunesmith.audio.effects import PARAM_RANGES, EffectParams  # noqa: E402
from tunesmith.music.notation import notation_html  # noqa: E402
from tunesmith.audio.plots import spectrogram, waveform  # noqa: E402

TITLE = "Tunesmith"
MODELS = (GENERATOR, SYNTHESIZER)
"""The models of stage 1: the status line always names them."""
LATER_MODELS = (TRANSCRIBER, EFFECTS, CLASSIFIER)
"""Models of later stages: named in the status line once the server has them."""
UPLOAD_RATE = 22050
"""Recordings above this rate are resampled before they are sent. A browser microphone records
48 kHz (often stereo); the models analyse at 22.05 kHz mono or less, so sending the original would
quadruple the base64 request for nothing."""
AUDIO_SOURCES = ["microphone", "upload"]
# The synthesizer's instruments (tunesmith.audio.synth.INSTRUMENTS). Listed here rather than imported
# so that the UI does not load the synthesizer's code; a test keeps the two lists equal.
INSTRUMENTS = ("fiddle", "flute", "whistle", "harp", "piano", "sine")
DEFAULT_INSTRUMENT = "fiddle"
EXAMPLE_PROMPTS = (
    "a lively jig in D",
    "a reel in G major",
    "a slow air in A minor",
    "a hornpipe in B flat",
    "a slip jig in E dorian",
)
CSS = """
.notation svg { width: 100%; height: auto; }
.status-line p { margin: 0; }
.sections { border-bottom: 1px solid var(--border-color-primary); padding-bottom: 6px; }
.sections label { font-weight: 600; }
"""


class AppContext:
    """What every tab needs: where the server is, a way to call it, and the app (for page-load events)."""

    def __init__(self, server_url: str, demo: gr.Blocks):
        self.server_url = server_url
        self.demo = demo
        # The last composed tune's WAV file (a path in Gradio's cache), for the Effects and
        # Classify tabs; one per browser session.
        self.last_tune = gr.State(None)

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
        known = {m["name"] for m in client.models()}
        names = list(MODELS) + [name for name in LATER_MODELS if name in known]
        ready = {name: client.model_ready(name) for name in names}
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
    tempo: int = 0,
    instrument: str = DEFAULT_INSTRUMENT,
    seed: float | None = -1,
    bars: int = 0,
):
    """Write a tune for ``prompt``, engrave it and play it; what the Compose button runs.

    Args:
        server_url: base URL of the inference server.
        prompt: what to write, e.g. "a lively jig in D".
        temperature: sampling temperature; lower is safer, higher more adventurous.
        tempo: quarter notes per minute for the synthesizer; 0 for the tune's dance tempo (a reel
            at 220, a jig at 168, see :func:`tunesmith.music.abc.dance_tempo`; the synthesizer's default
            for rhythms without one).
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
        tempo = int(tempo) if tempo else dance_tempo(abc)
        try:
            wav, sample_rate = client.synthesize(abc, tempo=tempo, instrument=instrument or None)
        except ClientError as exc:
            return f"Composed the tune, but could not play it: {exc}", abc, notation, None, None, None
    samples, _ = decode_audio(wav)
    seconds = len(samples) / sample_rate
    speed = f"{tempo} bpm" if tempo else "the synthesizer's default tempo"
    message = f"Composed and played on {instrument} at {speed}: {seconds:.1f} s of audio at {sample_rate} Hz."
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
                tempo = gr.Slider(0, 300, value=0, step=1, label="Tempo (bpm)",
                                  info="0: the rhythm's dance tempo (a reel 220, a jig 168)")
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
    def remember(played):
        return played if played else gr.skip()

    button.click(run, inputs, outputs, api_name="compose",
                 api_description="Compose a tune for a prompt; returns message, ABC, notation, WAV and plots.",
                 ).then(remember, audio, ctx.last_tune, api_visibility="private")
    prompt.submit(run, inputs, outputs, api_visibility="private").then(
        remember, audio, ctx.last_tune, api_visibility="private")
    ctx.demo.load(from_link, inputs[1:], [prompt, seed, *outputs], api_visibility="private").then(
        remember, audio, ctx.last_tune, api_visibility="private")


# -- audio in: shared by the tabs that take a recording or a file -------------------------------------
def audio_bytes(path: str | None) -> bytes:
    """The bytes to send for an uploaded or recorded file, made small when that is free.

    A browser's recording arrives as a 48 kHz (often stereo) WAV file; it is mixed to mono and
    resampled to :data:`UPLOAD_RATE` with :mod:`tunesmith.audio.io` (libsndfile and soxr) before it is
    sent, since the models would do the same on arrival. A file that is not readable audio is sent
    as it is, so the person sees the model's own explanation of what is wrong with it.

    Args:
        path: the file Gradio saved the upload or recording to.

    Returns:
        The file's bytes, or a smaller mono WAV file with the same sound.
    """
    data = Path(path).read_bytes()
    try:
        info = soundfile.info(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        return data
    if info.channels == 1 and info.samplerate <= UPLOAD_RATE and info.format == "WAV":
        return data
    try:
        samples, rate = decode_audio(data, sample_rate=min(info.samplerate, UPLOAD_RATE))
    except AudioError:
        return data
    return encode_wav(samples, rate)


def no_audio_message(what: str) -> str:
    return f"Record or upload {what} first (WAV, FLAC, OGG or MP3)."


# -- the hum-to-tune tab -------------------------------------------------------------------------------
def notes_summary(heard: dict, abc: str) -> str:
    """What the transcriber heard, in words: key, metre, tempo, certainty, how many notes and their range.

    Args:
        heard: the transcriber's answer (:meth:`tunesmith.serving.client.MusicClient.transcribe`).
        abc: the transcription's ABC.

    Returns:
        A short Markdown list.
    """
    lines = [
        f"- **Key** {heard.get('key', '?')}, **metre** {heard.get('meter', '?')}, "
        f"**tempo** {heard.get('tempo', '?')} quarter notes per minute",
    ]
    if "confidence" in heard:
        lines.append(f"- **Pitch confidence** {heard['confidence']:.0%} "
                     "(how sure the pitch tracker was that it heard a melody)")
    try:  # music21 (through the synthesizer's reader) spells the notes exactly as they are played
        import librosa

        from tunesmith.audio.synth import note_events

        pitches = [e.pitch for e in note_events(abc, expand_repeats=False) if not e.is_rest]
    except (ValueError, ImportError):
        return "\n".join(lines)
    if pitches:
        low, high = librosa.midi_to_note(min(pitches)), librosa.midi_to_note(max(pitches))
        classes = Counter(p % 12 + 60 for p in pitches).most_common(3)
        common = ", ".join(librosa.midi_to_note(p, octave=False) for p, _ in classes)
        lines.append(f"- **{len(pitches)} notes** from {low} to {high} ({max(pitches) - min(pitches)} semitones); "
                     f"most used: {common}")
    return "\n".join(lines)


MAX_BARS = 32
"""The generator's ``max_bars`` (its model-settings.json); longer requests are cut to it here."""


def continuation_request(heard: dict, bars_to_add: int, header_input: bool) -> dict:
    """The generator arguments that continue a transcription by ``bars_to_add`` bars.

    The generator refuses an opening whose ``M:`` or ``K:`` disagrees with the tune it is asked
    for, so the tune is asked for in the transcription's own terms: its header lines when the
    generator takes a ``header`` input, else a prompt naming its key and metre. The generator's
    ``bars`` count the opening's bars too.

    Args:
        heard: the transcriber's answer.
        bars_to_add: bars to write after the opening.
        header_input: whether the generator declares a ``header`` input.

    Returns:
        Keyword arguments for :meth:`tunesmith.serving.client.MusicClient.compose`.
    """
    from tunesmith.music.abc import bars_of, read_tune

    abc = heard["abc"]
    try:
        opening_bars = len(bars_of(read_tune(abc)[1]))
    except ValueError:
        opening_bars = abc.count("|")
    request = {"abc_prefix": abc, "bars": max(1, min(MAX_BARS, opening_bars + int(bars_to_add)))}
    if header_input:
        lines = [line for line in abc.splitlines() if line[:2] in ("X:", "M:", "L:", "K:")]
        request["header"] = "\n".join(lines)
    else:
        request["prompt"] = f"a tune in {heard.get('key', 'D')} in {heard.get('meter', '4/4')}"
    return request


def hum_to_tune(
    server_url: str,
    recording: str | None,
    bars: int = 8,
    temperature: float = 1.0,
    seed: float | None = -1,
    instrument: str = DEFAULT_INSTRUMENT,
):
    """Transcribe a hummed, sung, whistled or played melody, continue it into a tune, and play that.

    Args:
        server_url: base URL of the inference server.
        recording: path of the audio file (a microphone recording or an upload).
        bars: how many bars the generator adds after the opening.
        temperature: the generator's sampling temperature.
        seed: a whole number to repeat a result; -1 or empty for a new one each time.
        instrument: one of :data:`INSTRUMENTS`.

    Returns:
        ``(message, heard_abc, heard_notation, tune_abc, tune_notation, wav_bytes, notes_summary)``;
        when a step fails the message says why and what could not be made stays empty. When the
        generator cannot continue an opening, the transcription itself is played.
    """
    empty = ("", "", "", "", None, "")
    if not recording:
        return (no_audio_message("a melody"), *empty)
    seed = None if seed is None or seed == "" or int(seed) < 0 else int(seed)
    with MusicClient(server_url) as client:
        try:
            heard = client.transcribe(audio_bytes(recording))
        except ClientError as exc:
            return (f"Could not transcribe the recording: {exc}", *empty)
        heard_abc = heard["abc"]
        heard_notation = notation_html(heard_abc)
        summary = notes_summary(heard, heard_abc)
        tune, note = heard_abc, ""
        try:
            generator_inputs = client.model_inputs(GENERATOR)
        except ClientError as exc:
            generator_inputs, note = [], f" Continuation is unavailable: {exc}"
        else:
            if "abc_prefix" not in generator_inputs:
                note = (f" Continuation is unavailable: `{GENERATOR}` on this server does not take an "
                        "opening (`abc_prefix`).")
        if "abc_prefix" in generator_inputs:
            request = continuation_request(heard, bars, "header" in generator_inputs)
            try:
                tune = client.compose(**request, temperature=float(temperature), seed=seed)
            except ClientError as exc:
                tune, note = heard_abc, f" Could not continue it: {exc}"
        played = "the tune" if tune is not heard_abc else "the transcription"
        tempo = heard.get("tempo")
        try:
            wav, sample_rate = client.synthesize(tune, tempo=tempo if tempo and 20 <= tempo <= 400 else None,
                                                 instrument=instrument or None)
        except ClientError as exc:
            return (f"Transcribed, but could not play {played}: {exc}{note}", heard_abc, heard_notation,
                    tune, notation_html(tune), None, summary)
    seconds = soundfile.info(io.BytesIO(wav)).duration
    message = (f"Heard {heard.get('meter', '')} in {heard.get('key', '')}; "
               f"{'continued it and ' if tune is not heard_abc else ''}played {played} on {instrument}: "
               f"{seconds:.1f} s at {sample_rate} Hz.{note}")
    return message, heard_abc, heard_notation, tune, notation_html(tune), wav, summary


def hum_tab(ctx: AppContext) -> None:
    """Recording and settings on the left; what was heard and the finished tune on the right."""
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            recording = gr.Audio(sources=AUDIO_SOURCES, type="filepath", label="Your melody")
            bars = gr.Slider(1, 32, value=8, step=1, label="Bars to add", info="after your opening")
            temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature")
            with gr.Row():
                instrument = gr.Dropdown(list(INSTRUMENTS), value=DEFAULT_INSTRUMENT, label="Instrument")
                seed = gr.Number(value=-1, precision=0, label="Seed", info="-1: new each time")
            button = gr.Button("Transcribe and continue", variant="primary")
        with gr.Column(scale=2):
            message = gr.Markdown(label="Message", elem_classes=["status-line"])
            audio = gr.Audio(label="Tune audio", type="filepath", format="wav", interactive=False)
            summary = gr.Markdown(label="Notes summary")
            tune_notation = gr.HTML(label="Tune notation", elem_classes=["notation"])
            with gr.Accordion("Transcription", open=False):
                heard_notation = gr.HTML(label="Transcription notation", elem_classes=["notation"])
                heard_abc = gr.Code(label="Transcription (ABC)", language=None, lines=6, interactive=False)
            tune_abc = gr.Code(label="Tune (ABC)", language=None, lines=8, interactive=False)

    def run(recording, bars, temperature, seed, instrument):
        return hum_to_tune(ctx.server_url, recording, bars, temperature, seed, instrument)

    button.click(run, [recording, bars, temperature, seed, instrument],
                 [message, heard_abc, heard_notation, tune_abc, tune_notation, audio, summary],
                 api_name="hum_to_tune",
                 api_description="Transcribe a melody and continue it into a tune; returns message, "
                                 "transcription ABC and notation, tune ABC and notation, WAV and a notes summary.")


# -- the effects tab -----------------------------------------------------------------------------------
EFFECT_NAMES = tuple(PARAM_RANGES)
"""The effect settings, in the order of the chain (and of the ``/effects`` endpoint's arguments)."""


def _step(low: float, high: float, default: float) -> float:
    """A slider step: a tenth of the range's order of magnitude (0.1 for 0.5-2, 1 for -12..12),
    finer when the default (no change) would fall between two steps."""
    step = 10 ** math.floor(math.log10(high - low)) / 10
    while abs(round((default - low) / step) * step - (default - low)) > 1e-9:
        step /= 10
    return step


def apply_effects(server_url: str, recording: str | None, *settings: float):
    """Run the effect chain on a file; what the Apply button runs.

    Args:
        server_url: base URL of the inference server.
        recording: path of the audio file (the last composed tune, an upload or a recording).
        *settings: the values of :data:`EFFECT_NAMES`, in that order.

    Returns:
        ``(message, wav_bytes, before_spectrogram, after_spectrogram)``.
    """
    if not recording:
        return no_audio_message("audio (or compose a tune and use it)"), None, None, None
    params = dict(zip(EFFECT_NAMES, (float(v) for v in settings)))
    data = audio_bytes(recording)
    with MusicClient(server_url) as client:
        try:
            wav, sample_rate = client.effects(data, **params)
        except ClientError as exc:
            return f"Could not apply the effects: {exc}", None, None, None
    before, before_rate = decode_audio(data)
    after, _ = decode_audio(wav)
    changed = [name for name, value in params.items() if value != getattr(EffectParams(), name)]
    message = (f"{len(before) / before_rate:.1f} s in, {len(after) / sample_rate:.1f} s out at {sample_rate} Hz; "
               f"changed: {', '.join(changed) or 'nothing (default settings)'}.")
    return (message, wav, spectrogram(before, before_rate, title="Before"),
            spectrogram(after, sample_rate, title="After"))


def effects_tab(ctx: AppContext) -> None:
    """Audio in and sliders (one per setting in PARAM_RANGES) on the left; the result on the right."""
    defaults = EffectParams()
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            recording = gr.Audio(sources=AUDIO_SOURCES, type="filepath", label="Before")
            use_last = gr.Button("Use the last composed tune", size="sm")
            sliders = []
            for name, (low, high, unit, description) in PARAM_RANGES.items():
                words = name.split("_")
                if unit and words[-1].lower() == unit.lower():  # "gain_db" -> "Gain (dB)"
                    words = words[:-1]
                label = " ".join(words).capitalize() + (f" ({unit})" if unit else "")
                default = getattr(defaults, name)
                sliders.append(gr.Slider(low, high, value=default, step=_step(low, high, default),
                                         label=label, info=description))
            button = gr.Button("Apply effects", variant="primary")
        with gr.Column(scale=2):
            message = gr.Markdown(label="Message", elem_classes=["status-line"])
            after = gr.Audio(label="After", type="filepath", format="wav", interactive=False)
            before_plot = gr.Plot(label="Spectrogram before")
            after_plot = gr.Plot(label="Spectrogram after")

    def run(recording, *settings):
        return apply_effects(ctx.server_url, recording, *settings)

    # The endpoint's arguments are named after the effect settings (recording, tempo_rate, ...),
    # read from PARAM_RANGES like the sliders, so API callers can pass them by name.
    run.__signature__ = inspect.Signature(
        [inspect.Parameter("recording", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in EFFECT_NAMES]
    )

    def last(path):
        return path if path else gr.skip()

    use_last.click(last, ctx.last_tune, recording, api_visibility="private")
    button.click(run, [recording, *sliders], [message, after, before_plot, after_plot], api_name="effects",
                 api_description="Apply the effect chain; returns message, WAV and before/after spectrograms.")


# -- the classify tab ----------------------------------------------------------------------------------
def classify(server_url: str, recording: str | None):
    """Which dance rhythm a recording has; what the Classify button runs.

    Args:
        server_url: base URL of the inference server.
        recording: path of the audio file.

    Returns:
        ``(message, {label: probability}, top_label)``.
    """
    if not recording:
        return no_audio_message("a tune"), None, ""
    with MusicClient(server_url) as client:
        try:
            probabilities = client.classify(audio_bytes(recording))
        except ClientError as exc:
            return f"Could not classify: {exc}", None, ""
    top = max(probabilities, key=probabilities.get)
    return f"Most likely a **{top}** ({probabilities[top]:.0%}).", probabilities, top


def classify_tab(ctx: AppContext) -> None:
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
        return classify(ctx.server_url, recording)

    def last(path):
        return path if path else gr.skip()

    use_last.click(last, ctx.last_tune, recording, api_visibility="private")
    button.click(run, recording, [message, chart, top], api_name="classify",
                 api_description="The probability of each dance rhythm; returns message, probabilities and the top label.")


TABS: list[tuple[str, Callable[[AppContext], None]]] = [
    ("Compose", compose_tab),
    ("Hum to tune", hum_tab),
    ("Effects", effects_tab),
    ("Classify", classify_tab),
]
"""The app's tabs, in order: a label and the function that builds the tab's contents."""


# -- the app ---------------------------------------------------------------------------------------
def section_id(label: str) -> str:
    """The HTML id of a section's column: ``"Hum to tune"`` -> ``"section-hum-to-tune"``."""
    return "section-" + label.lower().replace(" ", "-")


def sections_css(shown: str) -> str:
    """Style rules that show the section ``shown`` and hide the others."""
    return "\n".join(
        f"#{section_id(label)} {{ display: {'flex' if label == shown else 'none'} !important; }}" for label, _ in TABS
    )


SHOW_SECTION_JS = """
(choice) => {
  const slug = (label) => "section-" + label.toLowerCase().replaceAll(" ", "-");
  for (const option of document.querySelectorAll("#sections input[type=radio]")) {
    const section = document.getElementById(slug(option.value));
    if (section) section.style.setProperty("display", option.value === choice ? "flex" : "none", "important");
  }
  return [];
}
"""
"""Browser-side handler of the section radio: sets each section's display in its inline style, which
outranks the page's style sheets (:func:`sections_css` hides all but the first section at load)."""


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
        # The sections are switched by a radio rather than gr.Tabs: in gradio 6.11-6.15, gr.Tabs
        # with three or more tabs locks the page in an endless update loop on the first tab switch
        # (gradio issue 13198, fixed in 6.16), and MLServer 1.7.1's fastapi pin holds gradio at 6.15.
        # Every section is rendered once at load and shown or hidden in the browser: no server
        # round trip, so a switch never waits behind a tune being composed.
        section = gr.Radio([label for label, _ in TABS], value=TABS[0][0], show_label=False, container=False,
                           elem_id="sections", elem_classes=["sections"])
        for label, build_tab in TABS:
            with gr.Column(elem_id=section_id(label)):
                build_tab(ctx)
        section.change(None, section, None, js=SHOW_SECTION_JS, api_visibility="private")

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
    return {"ssr_mode": False, "share": False, "css": CSS + sections_css(TABS[0][0]), "theme": offline_theme()}


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
