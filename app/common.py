"""What more than one section of the app needs: the context every section is built with, the
instrument list, and the handling of recordings and uploads on their way to the server.

Each helper lives here once so that the sections (:mod:`app.sections`) stay small and agree on
the same rules, e.g. how a seed field is read or how a 48 kHz microphone recording is sent.
"""

from __future__ import annotations

import io
from pathlib import Path

import gradio as gr
import soundfile

from tunesmith.audio.io import AudioError, decode_audio, encode_wav
from tunesmith.serving.client import MusicClient, seldon_from_env

UPLOAD_RATE = 22050
"""Recordings above this rate are resampled before they are sent. A browser microphone records
48 kHz (often stereo); the models analyse at 22.05 kHz mono or less, so sending the original would
quadruple the base64 request for nothing."""
AUDIO_SOURCES = ["microphone", "upload"]
# The synthesizer's instruments (tunesmith.audio.synth.INSTRUMENTS). Listed here rather than imported
# so that the UI does not load the synthesizer's code; a test keeps the two lists equal.
INSTRUMENTS = ("fiddle", "flute", "whistle", "harp", "piano", "sine")
DEFAULT_INSTRUMENT = "fiddle"


class AppContext:
    """What every tab needs: where the server is, a way to call it, and the app (for page-load events).

    Args:
        server_url: the inference server, or a Seldon endpoint (``tunesmith gateway``, a cluster's mesh).
        demo: the app.
        seldon: whether ``server_url`` is a Seldon endpoint (models named per version, pipelines);
            ``None``: as ``$TUNESMITH_SELDON`` says (``tunesmith up`` sets it when it runs the gateway).
    """

    def __init__(self, server_url: str, demo: gr.Blocks, seldon: bool | None = None):
        self.server_url = server_url
        self.demo = demo
        self.seldon = seldon_from_env() if seldon is None else bool(seldon)
        # The last composed tune's WAV file (a path in Gradio's cache), for the Effects and
        # Classify tabs; one per browser session.
        self.last_tune = gr.State(None)

    def client(self) -> MusicClient:
        """A fresh client per event: Gradio runs events in threads, and a client is per thread."""
        return MusicClient(self.server_url, seldon=self.seldon)


def seed_or_none(seed: float | str | None) -> int | None:
    """The seed to send: a whole number 0 or more repeats a result; -1 or an empty field asks for a new one."""
    return None if seed is None or seed == "" or int(seed) < 0 else int(seed)


def or_skip(value):
    """``value``, or ``gr.skip()`` when there is none, so an empty result leaves the component as it is."""
    return value if value else gr.skip()


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
    """What a section says when its button is pressed with no audio in: what to give it, and in which formats."""
    return f"Record or upload {what} first (WAV, FLAC, OGG or MP3)."


def served_by(reply) -> str:
    """Who answered a call, in Markdown: ``Answered by `tune-generator-v1` (route `:tune-generator-v1_1:`).``

    Args:
        reply: the client's :class:`tunesmith.serving.client.Reply` of the call, or ``None``.
    """
    if reply is None:
        return ""
    if reply.kind == "pipeline":
        who = f"the `{reply.name}` pipeline"
    elif reply.route:
        who = ", ".join(f"`{name}`" for name in reply.models)
    else:
        who = f"`{reply.name}`" + (f" {reply.model_version}" if reply.model_version else "")
    route = f" (route {' → '.join(f'`{entry}`' for entry in reply.route)})" if reply.route else ""
    return f"Answered by {who}{route}."
