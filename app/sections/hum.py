"""The Hum to tune section: a hummed, sung, whistled or played melody, transcribed, continued into
a tune by the generator and played (stage 2).

Its button is the ``/hum_to_tune`` API endpoint.
"""

from __future__ import annotations

import io
from collections import Counter

import gradio as gr
import soundfile

from app.common import (
    AUDIO_SOURCES,
    DEFAULT_INSTRUMENT,
    INSTRUMENTS,
    AppContext,
    audio_bytes,
    no_audio_message,
    seed_or_none,
)
from tunesmith.music.notation import notation_html
from tunesmith.serving.client import GENERATOR, ClientError, MusicClient

LABEL = "Hum to tune"
NEEDS = ("transcriber", "tune-generator", "synthesizer")
"""Models that must be loaded before the app offers this section."""


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
    *,
    seldon: bool | None = None,
):
    """Transcribe a hummed, sung, whistled or played melody, continue it into a tune, and play that.

    Args:
        server_url: base URL of the inference server.
        recording: path of the audio file (a microphone recording or an upload).
        bars: how many bars the generator adds after the opening.
        temperature: the generator's sampling temperature.
        seed: a whole number to repeat a result; -1 or empty for a new one each time.
        instrument: one of :data:`app.common.INSTRUMENTS`.
        seldon: whether ``server_url`` is a Seldon endpoint; ``None``: ``$TUNESMITH_SELDON``.

    Returns:
        ``(message, heard_abc, heard_notation, tune_abc, tune_notation, wav_bytes, notes_summary)``;
        when a step fails the message says why and what could not be made stays empty. When the
        generator cannot continue an opening, the transcription itself is played.
    """
    empty = ("", "", "", "", None, "")
    if not recording:
        return (no_audio_message("a melody"), *empty)
    seed = seed_or_none(seed)
    with MusicClient(server_url, seldon=seldon) as client:
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


def build(ctx: AppContext) -> None:
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
        return hum_to_tune(ctx.server_url, recording, bars, temperature, seed, instrument, seldon=ctx.seldon)

    button.click(run, [recording, bars, temperature, seed, instrument],
                 [message, heard_abc, heard_notation, tune_abc, tune_notation, audio, summary],
                 api_name="hum_to_tune",
                 api_description="Transcribe a melody and continue it into a tune; returns message, "
                                 "transcription ABC and notation, tune ABC and notation, WAV and a notes summary.")
