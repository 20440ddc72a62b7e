"""Test signals for the transcriber: a tune rendered the way a person might hum it.

A transcriber is tested with recordings whose notes are known. :func:`tunesmith.audio.synth.render`
plays a tune in perfect time and tune, which is too easy; :func:`voice_like` adds what makes
real performances hard (a drifting tempo, notes a little sharp or flat, glides, vibrato, breath
noise), seeded so every test and evaluation hears the same performance. :func:`excerpt_tune`
cuts a tune to its opening bars, so a round trip stays short.

The served model (:mod:`tunesmith.transcriber.model`) needs none of this; the evaluation, the
tests and the notebooks do.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfilt

from tunesmith.audio import synth
from tunesmith.audio.io import peak_normalise

_VOICE_HARMONICS = (1.0, 0.45, 0.2, 0.1, 0.05)  # a hum or a soft flute: strong fundamental
_LEAD_SECONDS = 0.3  # breath noise before the first note and after the last, as a recording has


def voice_like(
    abc,
    *,
    seed: int = 0,
    tempo: float | None = None,
    vibrato_cents: float = 35.0,
    noise_db: float = -30.0,
    tempo_drift: float = 0.06,
    detune_cents: float = 12.0,
    timing_jitter: float = 0.015,
    sample_rate: int = 22050,
    max_seconds: float = 120.0,
) -> np.ndarray:
    """Render a tune the way a person might hum or whistle it, to test the transcriber.

    Unlike :func:`tunesmith.audio.synth.render`, which plays in perfect time and tune, this adds what
    makes real performances hard to transcribe: a tempo that drifts slowly (two sine waves with
    periods of 16 to 48 beats and random phases, together within +/- ``tempo_drift``, warp the
    beat-to-seconds mapping), onsets a few milliseconds early
    or late, notes a little sharp or flat, glides between notes, vibrato, breath noise (also in
    the 0.3 s before and after the melody), and notes released early by a varying amount. One
    continuous oscillator (a hum-like harmonic spectrum) sings all notes, as one voice does.
    Everything random comes from ``seed``.

    Args:
        abc: an ABC tune, or a :class:`tunesmith.audio.synth.Tune`.
        seed: seed of every random choice.
        tempo: quarter notes per minute; ``None`` uses the tune's Q: field or the synth's default.
        vibrato_cents: vibrato depth (peak deviation), cents.
        noise_db: breath noise level relative to the melody's RMS, dB.
        tempo_drift: largest relative tempo deviation (0.06 is +/-6%).
        detune_cents: standard deviation of each note's pitch error, cents.
        timing_jitter: standard deviation of each onset's timing error, seconds.
        sample_rate: output rate in Hz.
        max_seconds: refuse tunes whose rendering would be longer.

    Returns:
        Mono float32 samples with peak 0.9.

    Raises:
        tunesmith.audio.synth.SynthError: the ABC cannot be played or would be too long.
    """
    return _voice_like(
        abc, seed=seed, tempo=tempo, vibrato_cents=vibrato_cents, noise_db=noise_db, tempo_drift=tempo_drift,
        detune_cents=detune_cents, timing_jitter=timing_jitter, sample_rate=sample_rate, max_seconds=max_seconds,
    )[0]


def _voice_like(
    abc, *, seed, tempo, vibrato_cents, noise_db, tempo_drift, detune_cents, timing_jitter, sample_rate, max_seconds
) -> tuple[np.ndarray, list[float]]:
    """:func:`voice_like`, also returning each note's onset in seconds (for checking the timing)."""
    tune = abc if isinstance(abc, synth.Tune) else synth.parse_tune(abc)
    bpm = float(tempo or tune.tempo or synth.DEFAULT_TEMPO)
    rng = np.random.default_rng(seed)
    notes = [e for e in tune.events if not e.is_rest]
    if not notes:
        raise synth.NotABCError("the tune has no notes to sing")

    # Beats to seconds through a slowly drifting tempo.
    beat_grid = np.arange(0.0, tune.quarter_length + 1.0, 0.01)
    periods, phases = rng.uniform(16.0, 48.0, 2), rng.uniform(0.0, 2 * np.pi, 2)
    curve = (np.sin(2 * np.pi * beat_grid / periods[0] + phases[0])
             + 0.5 * np.sin(2 * np.pi * beat_grid / periods[1] + phases[1])) / 1.5
    seconds_per_cell = 60.0 / (bpm * (1.0 + tempo_drift * curve)) * 0.01
    beat_seconds = np.concatenate([[0.0], np.cumsum(seconds_per_cell[:-1])])

    def at(beat: float) -> float:
        return _LEAD_SECONDS + float(np.interp(beat, beat_grid, beat_seconds))

    total_seconds = at(tune.quarter_length) + _LEAD_SECONDS + 0.2
    if total_seconds > max_seconds:
        raise synth.RenderTooLongError(f"the rendering would be {total_seconds:.1f} s long, above {max_seconds:g} s")
    n = int(total_seconds * sample_rate)
    t = np.arange(n) / sample_rate

    midi = np.full(n, float(notes[0].pitch))
    envelope = np.zeros(n)
    glide = int(0.04 * sample_rate)
    attack, release = int(0.04 * sample_rate), int(0.05 * sample_rate)
    previous = None
    onsets = []
    for k, e in enumerate(notes):
        on = at(e.onset) + float(np.clip(rng.normal(0.0, timing_jitter), -2.5 * timing_jitter, 2.5 * timing_jitter))
        length = at(e.end) - at(e.onset)
        off = on + length - min(rng.uniform(0.03, 0.09), 0.3 * length)
        onsets.append(on)
        start, stop = int(on * sample_rate), min(n, int(off * sample_rate))
        following = int(at(notes[k + 1].onset) * sample_rate) if k + 1 < len(notes) else n
        target = e.pitch + float(np.clip(rng.normal(0.0, detune_cents / 100.0), -0.25, 0.25))
        midi[start:following] = target
        if previous is not None:  # glide in from the previous note
            ramp = min(glide, following - start)
            midi[start : start + ramp] = previous + (target - previous) * np.linspace(0.0, 1.0, ramp)
        previous = target
        level = e.velocity * rng.uniform(0.8, 1.0)
        body = np.full(max(0, stop - start), level)
        rise = min(attack, len(body))
        body[:rise] *= np.linspace(0.0, 1.0, rise)
        tail = level * np.linspace(1.0, 0.0, release)
        envelope[start:stop] = np.maximum(envelope[start:stop], body)
        end = min(n, stop + release)
        envelope[stop:end] = np.maximum(envelope[stop:end], tail[: end - stop])

    rate = rng.uniform(5.0, 6.5)
    wobble = 1.0 + 0.1 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi))
    midi = midi + (vibrato_cents / 100.0) * wobble * np.sin(2 * np.pi * rate * t)
    frequency = 440.0 * 2.0 ** ((midi - 69.0) / 12.0)
    phase = 2 * np.pi * np.cumsum(frequency) / sample_rate
    tone = np.zeros(n)
    for h, amplitude in enumerate(_VOICE_HARMONICS, start=1):
        tone += amplitude * np.sin(h * phase) * (h * frequency < 0.45 * sample_rate)
    tone *= envelope

    noise = sosfilt(butter(2, [500.0, min(5000.0, 0.45 * sample_rate)], btype="bandpass", fs=sample_rate, output="sos"),
                    rng.standard_normal(n))
    noise /= np.sqrt(np.mean(noise**2)) or 1.0
    sounding = envelope > 0.1
    level = np.sqrt(np.mean(tone[sounding] ** 2)) if np.any(sounding) else 1.0
    noise *= level * 10.0 ** (noise_db / 20.0) * (0.4 + 0.6 * envelope / (envelope.max() or 1.0))
    return peak_normalise(tone + noise, 0.9), onsets


def excerpt_tune(abc: str, bars: int = 8, max_quarters: float = 40.0) -> synth.Tune:
    """The first ``bars`` bars of a tune (repeats expanded) as a :class:`tunesmith.audio.synth.Tune`.

    Counting starts at the first note, so a pickup counts towards the first bar. Tunes in long
    bars (4/2, 6/2, 4/1) are cut after ``max_quarters`` quarter notes instead, so no excerpt
    lasts much more than 25 seconds at the evaluation's tempos.

    It returns the parsed tune rather than ABC text because its events are the reference notes a
    transcription is scored against.
    """
    tune = synth.parse_tune(abc)
    beats, unit = (int(v) for v in (tune.meter or "4/4").split("/"))
    end = min(bars * 4.0 * beats / unit, max_quarters)
    events = tuple(e for e in tune.events if e.onset < end - 1e-6)
    return synth.Tune(events=events, tempo=None, meter=tune.meter, repeats_expanded=tune.repeats_expanded)
