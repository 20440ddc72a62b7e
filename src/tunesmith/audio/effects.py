"""The ``audio-fx`` model: a small effect chain on mono audio (tempo, pitch, delay, reverb, gain).

The chain runs in a fixed order, each stage feeding the next:

1. **Tempo and pitch** (``tempo_rate``, ``pitch_semitones``) in *one* phase-vocoder pass:
   ``librosa.effects.time_stretch`` followed by ``librosa.resample``. That is exactly how
   ``librosa.effects.pitch_shift`` works inside, with the two rates folded together, so a request
   that changes both costs one short-time Fourier transform instead of two and the sound is
   smeared by the phase vocoder once rather than twice. They come first because they must act on
   the dry sound: stretching a reverb tail or an echo would stretch the room and the echo time too.
2. **Delay** (``delay_time``, ``delay_feedback``, ``delay_mix``): echoes of the dry sound, each
   ``delay_feedback`` times quieter than the one before, added on top of it.
3. **Reverb** (``reverb_room``, ``reverb_mix``): convolution with a synthetic impulse response,
   exponentially decaying noise whose length follows the room size. It comes after the delay so
   the echoes sound in the same room as the notes, as they would on a stage.
4. **Gain** (``gain_db``), last, so it sets the output level whatever came before.

The output never clips: if the chain (a loud reverb, stacked echoes, positive gain) would push a
sample past full scale (1.0), the whole output is scaled down so its peak is :data:`PEAK_LIMIT`. That
changes the loudness, not the waveform's shape, which is the least surprising thing an effect can
do with too much level; otherwise ``gain_db`` is applied exactly. Delay and reverb make the output
longer than the input by their tails (echoes down to -60 dB but at most 10 s, the reverb's decay
time), so nothing is cut off mid-echo.

**Licence.** Only scipy and librosa (both BSD/ISC licensed) are used. Spotify's ``pedalboard``
would offer more effects, but it is GPLv3, which would bind the whole workshop to the GPL; the few
effects here are short enough to write with FFT convolution and librosa's phase vocoder.

Every parameter has a range in :data:`PARAM_RANGES`; :func:`validate` refuses values outside it
with an :class:`EffectError` (a ``ValueError``) that names the parameter and its range, so a
serving runtime can answer with HTTP 400 and a UI can build its sliders from the same table.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np
from scipy.signal import butter, oaconvolve, sosfilt

from tunesmith.audio.io import mono_samples

PEAK_LIMIT = 0.99
"""Peak that output louder than full scale is scaled down to (a little headroom below 1.0)."""
SAMPLE_RATE_RANGE = (8000, 96000)
"""Sample rates :func:`apply_chain` accepts, in Hz (inclusive)."""
DEFAULT_MAX_SECONDS = 60.0
"""Longest input :func:`apply_chain` accepts unless the caller says otherwise."""

_ECHO_FLOOR = 1e-3  # echoes quieter than -60 dB are not rendered
_MAX_ECHOES = 64  # at feedback 0.9 the echoes reach -60 dB after 66 repeats; 64 is close enough
_MAX_ECHO_SECONDS = 10.0  # long delays with high feedback stop after this, not minutes later
_IR_SEED = 7  # the reverb's noise is fixed, so the same settings always sound the same
_VOCODER_SECONDS = 0.093  # phase-vocoder window: 2048 samples at 22.05 kHz


class EffectError(ValueError):
    """An effect request that cannot be served because of what the caller sent."""


@dataclass(frozen=True)
class EffectParams:
    """Settings of the effect chain; the defaults leave the sound unchanged.

    Attributes:
        tempo_rate: playback speed without changing pitch; 2.0 is twice as fast, 0.5 half speed.
        pitch_semitones: transposition without changing speed, in semitones (12 = one octave up).
        delay_time: seconds between echoes.
        delay_feedback: level of each echo relative to the one before (0 = a single echo).
        delay_mix: level of the first echo relative to the dry sound; 0 turns the delay off.
        reverb_room: room size, 0 (small, 0.2 s decay) to 1 (hall, 3 s decay).
        reverb_mix: share of reverberated sound; 0 is dry only, 1 reverb only.
        gain_db: output gain in decibels.
    """

    tempo_rate: float = 1.0
    pitch_semitones: float = 0.0
    delay_time: float = 0.25
    delay_feedback: float = 0.35
    delay_mix: float = 0.0
    reverb_room: float = 0.5
    reverb_mix: float = 0.0
    gain_db: float = 0.0

    def to_dict(self) -> dict[str, float]:
        """The settings as a plain dict (e.g. for JSON or a V2 response's parameters)."""
        return asdict(self)


PARAM_RANGES: dict[str, tuple[float, float, str, str]] = {
    "tempo_rate": (0.5, 2.0, "x", "playback speed without changing pitch (1 = unchanged)"),
    "pitch_semitones": (-12.0, 12.0, "semitones", "transposition without changing speed (0 = unchanged)"),
    "delay_time": (0.02, 2.0, "s", "time between echoes"),
    "delay_feedback": (0.0, 0.9, "", "level of each echo relative to the previous one"),
    "delay_mix": (0.0, 1.0, "", "level of the first echo relative to the dry sound (0 = no delay)"),
    "reverb_room": (0.0, 1.0, "", "room size: 0 small room (0.2 s decay) to 1 hall (3 s decay)"),
    "reverb_mix": (0.0, 1.0, "", "share of reverberated sound (0 = dry, 1 = reverb only)"),
    "gain_db": (-24.0, 24.0, "dB", "output gain (0 = unchanged)"),
}
"""For each parameter of :class:`EffectParams`: ``(low, high, unit, description)``, bounds inclusive."""


def _describe(name: str) -> str:
    low, high, unit, description = PARAM_RANGES[name]
    unit = f" {unit}" if unit else ""
    return f"{name} ({description}) must be between {low:g} and {high:g}{unit}"


def validate(params: EffectParams) -> EffectParams:
    """Check every setting is a finite number inside its range in :data:`PARAM_RANGES`.

    Args:
        params: the settings to check.

    Returns:
        The same settings, so the call can be chained.

    Raises:
        EffectError: ``params`` is not an :class:`EffectParams`, or a setting is not a number or is
            out of range; the message names the setting and its allowed range.
    """
    if not isinstance(params, EffectParams):
        raise EffectError(f"effect settings must be an EffectParams, got {type(params).__name__}")
    for name in PARAM_RANGES:
        value = getattr(params, name)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise EffectError(f"{_describe(name)}; got {value!r}, which is not a number")
        low, high = PARAM_RANGES[name][:2]
        if not (low <= float(value) <= high):  # also refuses NaN
            raise EffectError(f"{_describe(name)}; got {float(value):g}")
    return params


def params_from_dict(values: Mapping[str, Any]) -> EffectParams:
    """Build validated settings from a mapping such as a request's parameters.

    Settings that are not given keep their default (no change); unknown names are refused rather
    than ignored, so a misspelt ``reverb_mx`` does not silently do nothing.

    Args:
        values: setting name to number.

    Returns:
        The validated :class:`EffectParams`.

    Raises:
        EffectError: an unknown name (the message lists the known ones) or a bad value.
    """
    if not isinstance(values, Mapping):
        raise EffectError(f"effect settings must be a mapping of name to number, got {type(values).__name__}")
    known = {f.name for f in fields(EffectParams)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise EffectError(f"unknown effect setting(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}")
    converted = {}
    for name, value in values.items():
        if isinstance(value, str):  # V2 parameters often arrive as text
            try:
                value = float(value)
            except ValueError:
                raise EffectError(f"{_describe(name)}; got {value!r}, which is not a number") from None
        converted[name] = value
    return validate(EffectParams(**converted))


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------


def _stretch_and_shift(x: np.ndarray, sample_rate: int, rate: float, semitones: float) -> np.ndarray:
    """Change speed by ``rate`` and pitch by ``semitones`` with one phase-vocoder pass.

    ``librosa.effects.pitch_shift`` time-stretches by ``1/ratio`` and resamples by ``ratio``; here
    the stretch also absorbs the tempo change, so the result is ``len(x) / rate`` samples long.
    """
    import librosa  # imported here: it takes a second to import and only these stages need it

    ratio = 2.0 ** (semitones / 12.0)
    n_fft = 2 ** int(round(math.log2(_VOCODER_SECONDS * sample_rate)))
    target = int(round(len(x) / rate))
    padded = np.pad(x, (0, max(0, n_fft - len(x))))  # the vocoder needs at least one full window
    y = librosa.effects.time_stretch(padded, rate=rate / ratio, n_fft=n_fft)
    if semitones != 0.0:
        y = librosa.resample(y, orig_sr=sample_rate * ratio, target_sr=sample_rate, res_type="soxr_hq")
    return librosa.util.fix_length(y, size=target).astype(np.float64, copy=False)


def _delay(x: np.ndarray, sample_rate: int, time: float, feedback: float, mix: float) -> np.ndarray:
    """Add echoes ``time`` apart, the k-th at level ``mix * feedback**(k-1)``, until -60 dB.

    The echoes stop after at most ``_MAX_ECHO_SECONDS`` so an extreme setting (2 s delay,
    feedback 0.9) cannot turn a short clip into minutes of audio.

    A feedback delay is a recursive filter, but with a delay of thousands of samples
    ``scipy.signal.lfilter`` would do thousands of multiplications per sample; adding a few dozen
    shifted copies of the whole array gives the same result with whole-array operations.
    """
    step = max(1, int(round(time * sample_rate)))
    count = 1 if feedback == 0 else min(_MAX_ECHOES, 1 + int(math.ceil(math.log(_ECHO_FLOOR) / math.log(feedback))))
    count = max(1, min(count, int(_MAX_ECHO_SECONDS * sample_rate) // step))
    out = np.zeros(len(x) + count * step)
    out[: len(x)] = x
    level = mix
    for k in range(1, count + 1):
        out[k * step : k * step + len(x)] += level * x
        level *= feedback
    return out


def reverb_impulse_response(sample_rate: int, room: float) -> np.ndarray:
    """The reverb's impulse response: a short pre-delay, then exponentially decaying noise.

    Real rooms reflect sound so many times that the late reverb is statistically noise whose
    level falls exponentially; a darker tone (high frequencies are absorbed first) is imitated by
    low-pass filtering the noise. The decay time to -60 dB (RT60) grows from 0.2 s for
    ``room=0`` to 3 s for ``room=1``. The response has unit energy, so the reverberated sound
    is about as loud as the dry sound and ``reverb_mix`` cross-fades between equals.

    Args:
        sample_rate: in Hz.
        room: room size in [0, 1].

    Returns:
        float64 impulse response, ``pre-delay + RT60`` seconds long.
    """
    rt60 = 0.2 + 2.8 * room
    predelay = int(round((0.005 + 0.02 * room) * sample_rate))
    t = np.arange(int(round(rt60 * sample_rate))) / sample_rate
    noise = np.random.default_rng(_IR_SEED).standard_normal(len(t))
    noise = sosfilt(butter(1, min(5000.0, 0.45 * sample_rate), fs=sample_rate, output="sos"), noise)
    ir = np.concatenate([np.zeros(predelay), noise * np.exp(-6.9078 * t / rt60)])  # ln(1000) = 6.9078
    return ir / np.sqrt(np.sum(ir**2))


def _reverb(x: np.ndarray, sample_rate: int, room: float, mix: float) -> np.ndarray:
    ir = reverb_impulse_response(sample_rate, room)
    wet = oaconvolve(x, ir)  # overlap-add FFT convolution: the fastest scipy offers for a long signal
    dry = np.zeros_like(wet)
    dry[: len(x)] = x
    return (1.0 - mix) * dry + mix * wet


# --------------------------------------------------------------------------------------------
# The chain
# --------------------------------------------------------------------------------------------


def _check_audio(samples: object, sample_rate: object, max_seconds: float) -> tuple[np.ndarray, int]:
    lo, hi = SAMPLE_RATE_RANGE
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or not lo <= sample_rate <= hi:
        raise EffectError(f"sample_rate must be an integer between {lo} and {hi} Hz, got {sample_rate!r}")
    if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) or not max_seconds > 0:
        raise EffectError(f"max_seconds must be a positive number, got {max_seconds!r}")
    x = mono_samples(samples, error=EffectError)
    seconds = x.size / sample_rate
    if seconds > max_seconds:
        raise EffectError(f"the audio is {seconds:.2f} s long, longer than the limit of {max_seconds:g} s")
    return x, int(sample_rate)


def apply_chain(
    samples: np.ndarray,
    sample_rate: int,
    params: EffectParams | None = None,
    *,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> np.ndarray:
    """Run audio through tempo/pitch, delay, reverb and gain (see the module docstring for why).

    Stages whose settings are neutral are skipped, so the default :class:`EffectParams` returns
    the input unchanged (as float32).

    Args:
        samples: mono float audio, shape ``(frames,)``; ``(frames, channels)`` is mixed to mono.
        sample_rate: in Hz, within :data:`SAMPLE_RATE_RANGE`.
        params: the settings; ``None`` means no change.
        max_seconds: refuse input longer than this. The output is at most ``1 / tempo_rate``
            times as long, plus the echo and reverb tails.

    Returns:
        1-D float32 audio at ``sample_rate``, finite, peak at most 1.0 (output that would be
        louder is scaled down to a peak of :data:`PEAK_LIMIT` rather than clipped).

    Raises:
        EffectError: a setting is out of range (the message names it and its range), or the audio
            or its sample rate is unusable.
    """
    params = validate(EffectParams() if params is None else params)
    x, rate = _check_audio(samples, sample_rate, max_seconds)

    if params.tempo_rate != 1.0 or params.pitch_semitones != 0.0:
        x = _stretch_and_shift(x, rate, float(params.tempo_rate), float(params.pitch_semitones))
    if params.delay_mix > 0.0:
        x = _delay(x, rate, float(params.delay_time), float(params.delay_feedback), float(params.delay_mix))
    if params.reverb_mix > 0.0:
        x = _reverb(x, rate, float(params.reverb_room), float(params.reverb_mix))
    if params.gain_db != 0.0:
        x = x * 10.0 ** (float(params.gain_db) / 20.0)

    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 1.0:
        x = x * (PEAK_LIMIT / peak)
    return np.ascontiguousarray(x, dtype=np.float32)
