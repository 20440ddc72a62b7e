"""Audio bytes in and out: WAV encoding and tolerant decoding of uploaded audio.

Every model that returns sound (the synthesizer, later the effects) sends a WAV file, and every
model that takes sound (the classifier, the transcriber) accepts whatever a learner uploads. Both
directions go through libsndfile (via ``soundfile``), which reads WAV, FLAC, OGG/Vorbis and more in
memory, so no temporary files and no ffmpeg are needed.

Decoding *converts* rather than refuses: stereo is mixed down to mono and other sample rates are
resampled, because a learner's recording at 44.1 kHz stereo is perfectly good input. What cannot be
used (bytes that are not audio, no samples, too long, NaN/inf samples) raises a subclass of
:class:`AudioError` whose message names the problem, so a serving runtime can answer with a 400.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import soxr


class AudioError(ValueError):
    """Audio that cannot be used, because of what the caller sent."""


class NotAudioError(AudioError):
    """The bytes are not in any audio format libsndfile can read."""


class EmptyAudioError(AudioError):
    """The audio file holds no samples."""


class AudioTooLongError(AudioError):
    """The audio is longer than the caller allows."""


class NonFiniteAudioError(AudioError):
    """The samples contain NaN or infinity (possible in float WAV files)."""


def _check_sample_rate(sample_rate: object, what: str) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise AudioError(f"{what} must be a positive integer number of Hz, got {sample_rate!r}")
    return int(sample_rate)


def peak_normalise(samples: np.ndarray, peak: float = 0.9) -> np.ndarray:
    """Scale audio so its largest absolute sample equals ``peak``.

    Normalising to a fixed peak below 1.0 makes every rendering equally loud and leaves headroom,
    so 16-bit encoding never clips. Silence stays silence (there is nothing to scale).

    Args:
        samples: audio of any shape, float.
        peak: the target peak, in (0, 1].

    Returns:
        A float32 copy with ``max(abs(x)) == peak`` (or all zeros).
    """
    if not 0.0 < peak <= 1.0:
        raise ValueError(f"peak must be in (0, 1], got {peak}")
    out = np.asarray(samples, dtype=np.float32)
    top = float(np.max(np.abs(out))) if out.size else 0.0
    if top == 0.0:
        return out.copy()
    return (out * np.float32(peak / top)).astype(np.float32, copy=False)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Mix ``(frames, channels)`` audio down to one channel by averaging; 1-D input is returned as is.

    Averaging (rather than summing) cannot push a mix of in-range channels out of [-1, 1].
    """
    samples = np.asarray(samples)
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise AudioError(f"audio must be 1-D (mono) or 2-D (frames, channels), got shape {samples.shape}")
    return samples.mean(axis=1, dtype=np.float64).astype(samples.dtype, copy=False)



def mono_samples(samples: object, *, error: type[Exception] = AudioError, dtype=np.float64) -> np.ndarray:
    """Bring an array of samples to finite mono ``dtype``, or raise ``error`` naming the problem.

    Every audio library here (effects, transcription, style) takes samples as an array; each raises
    its own ``ValueError`` subclass so its runtime can answer 400, which is why the error class is a
    parameter rather than always :class:`AudioError`.

    Args:
        samples: mono ``(frames,)`` or ``(frames, channels)`` audio.
        error: the exception class to raise.
        dtype: the floating type of the result.
    """
    try:
        x = np.asarray(samples, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise error(f"the audio must be an array of numbers: {exc}") from None
    if x.ndim == 2:
        x = to_mono(x)
    if x.ndim != 1:
        raise error(f"the audio must be mono (frames,) or (frames, channels), got shape {x.shape}")
    if x.size == 0:
        raise error("the audio holds no samples")
    if not np.all(np.isfinite(x)):
        raise error("the audio contains NaN or infinite samples")
    return x


def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """Encode audio as a complete 16-bit PCM WAV file, in memory.

    16-bit PCM is the format every browser, notebook player and audio library plays. Samples are
    clipped to [-1, 1] first: libsndfile would otherwise wrap out-of-range floats around to the
    opposite sign, which sounds like loud crackle.

    Args:
        samples: float audio in [-1, 1], shape ``(frames,)`` for mono or ``(frames, channels)``.
        sample_rate: samples per second, e.g. 22050.

    Returns:
        The bytes of a WAV file (RIFF header included).

    Raises:
        AudioError: the samples contain NaN/inf, have the wrong shape, or the rate is not positive.
    """
    sample_rate = _check_sample_rate(sample_rate, "sample_rate")
    data = np.asarray(samples, dtype=np.float32)
    if data.ndim not in (1, 2):
        raise AudioError(f"audio must be 1-D (mono) or 2-D (frames, channels), got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise NonFiniteAudioError("audio contains NaN or infinite samples; cannot encode it as WAV")
    buf = io.BytesIO()
    sf.write(buf, np.clip(data, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def decode_audio(
    data: bytes,
    *,
    sample_rate: int | None = None,
    max_seconds: float | None = None,
) -> tuple[np.ndarray, int]:
    """Read an audio file's bytes (WAV, FLAC, OGG, ... anything libsndfile reads) as mono float32.

    The length limit is checked from the file header before the samples are decoded, so an
    oversized upload is refused without decoding it. Resampling uses soxr's high-quality mode
    (what ``librosa.resample`` uses by default) called directly, which avoids importing librosa in
    a serving process just for this.

    Args:
        data: the file's bytes.
        sample_rate: the rate the caller needs; other rates are resampled to it. ``None`` keeps the
            file's own rate.
        max_seconds: refuse audio longer than this many seconds; ``None`` for no limit.

    Returns:
        ``(samples, rate)``: 1-D float32 samples in [-1, 1] and their sample rate.

    Raises:
        NotAudioError: the bytes are not an audio file libsndfile can read.
        EmptyAudioError: the file holds no samples.
        AudioTooLongError: the audio is longer than ``max_seconds`` (the message gives both).
        NonFiniteAudioError: the samples contain NaN or infinity.
        AudioError: ``sample_rate`` or ``max_seconds`` themselves are invalid.
    """
    if sample_rate is not None:
        sample_rate = _check_sample_rate(sample_rate, "the requested sample_rate")
    if max_seconds is not None and not (max_seconds > 0):  # also refuses NaN
        raise AudioError(f"max_seconds must be positive, got {max_seconds!r}")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise NotAudioError(f"audio must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise EmptyAudioError("the audio data is empty (0 bytes)")

    try:
        with sf.SoundFile(io.BytesIO(bytes(data))) as f:
            rate, frames = f.samplerate, f.frames
            if frames <= 0:
                raise EmptyAudioError("the audio file holds no samples")
            if max_seconds is not None and frames / rate > max_seconds:
                raise AudioTooLongError(
                    f"the audio is {frames / rate:.2f} s long, longer than the limit of {max_seconds:g} s"
                )
            samples = f.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        head = bytes(data[:12])
        # libsndfile's own reason ("Format not recognised."), without the in-memory file's repr
        reason = (getattr(exc, "error_string", None) or str(exc)).strip().rstrip(".")
        raise NotAudioError(
            f"the data is not a readable audio file (WAV, FLAC, OGG, ...): {reason}; it starts with {head!r}"
        ) from exc

    if samples.shape[0] == 0:  # the header promised frames the data does not hold
        raise EmptyAudioError("the audio file holds no samples")
    if not np.all(np.isfinite(samples)):
        raise NonFiniteAudioError("the audio contains NaN or infinite samples")

    mono = to_mono(samples)
    if sample_rate is not None and sample_rate != rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
        rate = sample_rate
    # Float files may exceed full scale and resampling can overshoot slightly; scaling down (not
    # clipping) keeps the waveform's shape.
    top = float(np.max(np.abs(mono)))
    if top > 1.0:
        mono = mono / np.float32(top)
    return np.ascontiguousarray(mono, dtype=np.float32), int(rate)
