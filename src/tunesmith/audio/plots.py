"""Pictures of audio: the waveform and the spectrogram of a synthesized tune.

The functions build :class:`matplotlib.figure.Figure` objects directly instead of going through
``matplotlib.pyplot``. Pyplot keeps every figure in a global registry until it is closed and picks a
GUI backend; a web app that draws two figures per request would leak them, and a server has no
display. A bare ``Figure`` draws with the Agg (PNG) renderer, is freed like any Python object, and
still shows inline in Jupyter and in ``gr.Plot``.

Example::

    import soundfile, io
    from tunesmith.audio.plots import waveform, spectrogram
    samples, sr = soundfile.read(io.BytesIO(wav_bytes))
    waveform(samples, sr).savefig("wave.png")
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

FIGSIZE = (9.0, 2.6)


def _mono(samples) -> np.ndarray:
    """Accept mono or multi-channel audio (frames first, as soundfile returns it); mix to mono."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.ndim != 1:
        raise ValueError(f"expected mono (n,) or multi-channel (n, channels) audio, got shape {samples.shape}")
    return samples


def _check_rate(sr: int) -> int:
    if not sr or int(sr) <= 0:
        raise ValueError(f"sample rate must be a positive number of Hz, got {sr!r}")
    return int(sr)


def waveform(samples, sr: int, title: str = "Waveform", figsize: tuple[float, float] = FIGSIZE) -> Figure:
    """Plot amplitude over time.

    Args:
        samples: audio samples, shape ``(n,)`` or ``(n, channels)``.
        sr: sample rate in Hz.
        title: the axes title.
        figsize: figure size in inches.

    Returns:
        A matplotlib Figure.
    """
    import librosa.display

    samples, sr = _mono(samples), _check_rate(sr)
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    if samples.size:
        librosa.display.waveshow(samples, sr=sr, ax=ax, color="#3b6ea5")
    ax.set(title=title, xlabel="time (s)", ylabel="amplitude")
    ax.set_xlim(0, max(samples.size / sr, 1e-3))
    return fig


def spectrogram(
    samples,
    sr: int,
    title: str = "Spectrogram",
    figsize: tuple[float, float] = FIGSIZE,
    n_fft: int = 2048,
    hop_length: int = 512,
) -> Figure:
    """Plot a log-frequency spectrogram in decibels (notes show as horizontal lines).

    Args:
        samples: audio samples, shape ``(n,)`` or ``(n, channels)``.
        sr: sample rate in Hz.
        title: the axes title.
        figsize: figure size in inches.
        n_fft: FFT window length in samples (shortened for very short audio).
        hop_length: samples between frames.

    Returns:
        A matplotlib Figure with a dB colour bar.
    """
    import librosa
    import librosa.display

    samples, sr = _mono(samples), _check_rate(sr)
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    if samples.size < 2:
        ax.set(title=title + " (no audio)")
        return fig
    n_fft = min(n_fft, 1 << int(np.log2(samples.size)))
    hop_length = min(hop_length, max(n_fft // 4, 1))
    power = np.abs(librosa.stft(samples, n_fft=n_fft, hop_length=hop_length))
    db = librosa.amplitude_to_db(power, ref=np.max)
    image = librosa.display.specshow(db, sr=sr, hop_length=hop_length, x_axis="time", y_axis="log", ax=ax, cmap="magma")
    fig.colorbar(image, ax=ax, format="%+2.0f dB")
    ax.set(title=title, xlabel="time (s)", ylabel="frequency (Hz)")
    return fig
