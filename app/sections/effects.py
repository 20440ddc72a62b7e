"""The Effects section: an audio file through the effect chain (tempo, pitch, delay, reverb, gain), with
spectrograms before and after (stage 2).

Its button is the ``/effects`` API endpoint, whose arguments are named after the effect settings.
"""

from __future__ import annotations

import inspect
import math

import gradio as gr

from app.common import AUDIO_SOURCES, AppContext, audio_bytes, no_audio_message, or_skip
from tunesmith.audio.effects import PARAM_RANGES, EffectParams
from tunesmith.audio.io import decode_audio
from tunesmith.audio.plots import spectrogram
from tunesmith.serving.client import ClientError, MusicClient

LABEL = "Effects"
NEEDS = ("audio-fx",)
"""Models that must be loaded before the app offers this section."""
EFFECT_NAMES = tuple(PARAM_RANGES)
"""The effect settings, in the order of the chain (and of the ``/effects`` endpoint's arguments)."""


def _step(low: float, high: float, default: float) -> float:
    """A slider step: a tenth of the range's order of magnitude (0.1 for 0.5-2, 1 for -12..12),
    finer when the default (no change) would fall between two steps."""
    step = 10 ** math.floor(math.log10(high - low)) / 10
    while abs(round((default - low) / step) * step - (default - low)) > 1e-9:
        step /= 10
    return step


def apply_effects(server_url: str, recording: str | None, *settings: float, seldon: bool | None = None):
    """Run the effect chain on a file; what the Apply button runs.

    Args:
        server_url: base URL of the inference server.
        recording: path of the audio file (the last composed tune, an upload or a recording).
        *settings: the values of :data:`EFFECT_NAMES`, in that order.
        seldon: whether ``server_url`` is a Seldon endpoint; ``None``: ``$TUNESMITH_SELDON``.

    Returns:
        ``(message, wav_bytes, before_spectrogram, after_spectrogram)``.
    """
    if not recording:
        return no_audio_message("audio (or compose a tune and use it)"), None, None, None
    params = dict(zip(EFFECT_NAMES, (float(v) for v in settings)))
    data = audio_bytes(recording)
    with MusicClient(server_url, seldon=seldon) as client:
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


def build(ctx: AppContext) -> None:
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
        return apply_effects(ctx.server_url, recording, *settings, seldon=ctx.seldon)

    # The endpoint's arguments are named after the effect settings (recording, tempo_rate, ...),
    # read from PARAM_RANGES like the sliders, so API callers can pass them by name.
    run.__signature__ = inspect.Signature(
        [inspect.Parameter("recording", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in EFFECT_NAMES]
    )

    use_last.click(or_skip, ctx.last_tune, recording, api_visibility="private")
    button.click(run, [recording, *sliders], [message, after, before_plot, after_plot], api_name="effects",
                 api_description="Apply the effect chain; returns message, WAV and before/after spectrograms.")
