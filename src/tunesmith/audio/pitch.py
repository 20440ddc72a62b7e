"""Melody audio to notes in seconds: preparation, pYIN pitch tracking and note segmentation.

This is the signal-processing half of the transcriber (:mod:`tunesmith.transcriber.model` turns the notes
into beats, a key, a meter and ABC). It works on whatever a learner records: any sample rate, mono
or stereo, integer or float samples, silence before and after.

**Pitch tracking** uses ``librosa.pyin`` (probabilistic YIN): a hidden Markov model over pitch
candidates that gives a smooth f0 track *and* a per-frame voicing probability, which is what
separates a hummed note from breath and room noise. Its cost is dominated by the Viterbi pass over
``pitch bins x 2`` states, so the settings trade a little precision for a lot of speed:

* audio is resampled to 11.025 kHz (the melody's fundamental is at most 2.1 kHz, C7), which halves
  the work of the YIN difference function at no cost in accuracy;
* 1024-sample frames (93 ms, enough for two periods of the lowest note, C2 at 65 Hz) with a hop of
  256 samples (23 ms, five frames in a sixteenth note at 120 quarter notes per minute);
* pitch bins a quarter of a semitone apart instead of librosa's tenth: 4x fewer states, 16x
  less Viterbi work, and a 25-cent grid is still twice as fine as the semitone decision made later.

**Segmentation** turns frames into notes. The singer's overall tuning offset is removed first.
Within a voiced run a new note starts when the pitch stays more than 0.6 semitone away from the
current note's recent median for three frames (hysteresis, so vibrato on a slightly sharp note
does not flip between two semitones); very short pieces (glides between notes, two notes heard at
once as a pitch in between) go to their neighbours. A repeated note has no pitch change to split
on, so a note is also split at an *attack*: an energy dip followed by a swell, or a sudden peak
of spectral flux (with SuperFlux's vibrato suppression), which is how a re-tongued, re-bowed or
re-sung note shows itself. Every note's onset is finally placed on its steepest rise in energy,
so onsets found from pitch changes and from attacks agree with each other to a frame or two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from tunesmith.audio.io import mono_samples

ANALYSIS_RATE = 11025
"""Sample rate the melody is analysed at, in Hz."""
FRAME_LENGTH = 1024
"""pYIN frame, in samples at :data:`ANALYSIS_RATE` (93 ms)."""
HOP_LENGTH = 256
"""Frame step, in samples at :data:`ANALYSIS_RATE` (23 ms)."""
FMIN = 65.406  # C2
"""Lowest pitch tracked, in Hz (C2: a low male hum)."""
FMAX = 2093.0  # C7
"""Highest pitch tracked, in Hz (C7: a high whistle)."""
RESOLUTION = 0.25
"""Spacing of pYIN's pitch bins, in semitones."""

_TRIM_DB = 40.0  # leading/trailing audio quieter than this below the peak is silence
_FLOOR_DB = 45.0  # frames quieter than this below the loudest frame are not part of a note
_MIN_NOTE_FRAMES = 3  # 70 ms: shorter pieces are glides or glitches, not notes
_SPLIT_SEMITONES = 0.6  # a pitch this far from the current note's for a while is a new note
_RECENT_FRAMES = 20  # 0.46 s of a held note (several vibrato cycles) set its reference pitch
_OWN_ATTACK_FRAMES = 6  # 139 ms: a run's own attack shows up this long after pYIN hears the pitch
_GLIDE_FRAMES = 4  # 93 ms: a run this short between a lower and a higher note is a glide
_MIN_NOTE_SECONDS = 0.06  # shorter notes are dropped
_SAME_ATTACK_FRAMES = 4  # 93 ms: a dip and a flux peak this close together are one attack
_DIP_DB = 3.0  # an energy dip this deep (dB) scores 1
_ATTACK_THRESHOLD = 0.8  # attack score above which a same-pitch run is split
_RISE_DB = 2.0  # an onset is moved to the steepest energy rise near it if that rise is this steep (dB per 2 frames)
_SWELL_DB = 1.0  # an attack raises the energy by at least this much over the frames around its dip
_NEW_NOTE_DB = 10.0  # a new attack is followed by sound at most this far below the note's loudest
_FLUX_SHARE = 0.4  # onset strength is measured in this share of the recording's strong attacks


class PitchError(ValueError):
    """Audio that cannot be analysed, because of what the caller sent."""


@dataclass(frozen=True)
class PitchTrack:
    """Frame-by-frame pitch of a recording, for plotting and for segmentation.

    Attributes:
        times: frame centres in seconds from the start of the recording as given (before trimming).
        f0: fundamental frequency in Hz, NaN where the frame is unvoiced.
        voiced_prob: pYIN's probability that the frame is voiced, 0..1.
    """

    times: np.ndarray
    f0: np.ndarray
    voiced_prob: np.ndarray


@dataclass(frozen=True)
class NoteSegment:
    """One note found in the audio, timed in seconds.

    Attributes:
        pitch: MIDI note number after removing the tuning offset.
        start: onset in seconds (from the start of the recording as given).
        end: offset in seconds.
        confidence: mean pYIN voiced probability over the note's frames.
        strength: peak short-frame RMS near the onset (linear), how strongly it was attacked.
    """

    pitch: int
    start: float
    end: float
    confidence: float
    strength: float


@dataclass(frozen=True)
class Analysis:
    """Everything the transcriber needs from the audio."""

    track: PitchTrack
    notes: list[NoteSegment]
    tuning: float  # semitones the performance sits above equal temperament at A4 = 440 Hz (-0.5..0.5)
    duration: float  # seconds of audio given


def as_mono_float(samples: object) -> np.ndarray:
    """Accept audio as a microphone or file reader hands it over and return mono float64.

    Gradio's microphone component gives ``(frames, channels)`` int16, soundfile gives float32,
    some tools give ``(channels, frames)``; all are accepted. Integer samples are scaled to
    [-1, 1] by their type's full scale. A 2-D array whose first axis is short (at most 8) and
    second long is taken as channels-first.

    Raises:
        PitchError: not numeric, not 1-D/2-D, empty, or containing NaN/inf.
    """
    try:
        x = np.asarray(samples)
    except (TypeError, ValueError) as exc:
        raise PitchError(f"the audio must be an array of numbers: {exc}") from None
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        x = (x.astype(np.float64) - (info.max + 1 + info.min) / 2) / ((info.max - info.min + 1) / 2)
    elif x.dtype.kind == "f":
        x = x.astype(np.float64)
    else:
        raise PitchError(f"the audio must be an array of numbers, got dtype {x.dtype}")
    if x.ndim == 2 and x.shape[0] <= 8 < x.shape[1]:
        x = x.T
    return mono_samples(x, error=PitchError)


def prepare(samples: object, sample_rate: int) -> np.ndarray:
    """Mono float64 audio at :data:`ANALYSIS_RATE`, DC removed, peak 1 (silence stays zero).

    Normalising the level makes every threshold below independent of the microphone gain.
    """
    x = as_mono_float(samples)
    if sample_rate != ANALYSIS_RATE:
        x = soxr.resample(x, sample_rate, ANALYSIS_RATE, quality="HQ")
    x = x - np.mean(x)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return x / peak if peak > 0 else x


def _frame_rms_db(x: np.ndarray) -> np.ndarray:
    """Energy of non-overlapping hop-long frames centred like pYIN's frames, in dB re the loudest.

    Short frames (23 ms, not pYIN's 93 ms) keep the brief energy dip between two repeated notes.
    """
    import librosa

    rms = librosa.feature.rms(y=x, frame_length=HOP_LENGTH * 2, hop_length=HOP_LENGTH, center=True)[0]
    return 20.0 * np.log10(np.maximum(rms, 1e-10) / max(float(np.max(rms)), 1e-10))


def _onset_strength(x: np.ndarray) -> np.ndarray:
    """librosa's spectral flux of a log mel spectrogram, with SuperFlux's vibrato suppression.

    A maximum filter over 3 mel bands (``max_size``) stops a vibrato's sideways movement in
    frequency from counting as new energy. 64 bands up to 5 kHz cover a melody's fundamental and
    the harmonics that carry its attacks.
    """
    import librosa

    return librosa.onset.onset_strength(
        y=x, sr=ANALYSIS_RATE, hop_length=HOP_LENGTH, n_fft=FRAME_LENGTH, max_size=3, n_mels=64, fmax=5000
    )


def _above_local_median(flux: np.ndarray) -> np.ndarray:
    """Onset strength minus its running median over half a second: the steady flicker of breath
    noise and vibrato is removed, sudden attacks stand out."""
    from scipy.ndimage import median_filter

    return np.maximum(flux - median_filter(flux, size=21, mode="nearest"), 0.0)


def _tuning(midi: np.ndarray) -> float:
    """The performance's offset from equal temperament, as the circular mean of the frames' cents.

    A circular mean treats +0.49 and -0.49 semitones as neighbours, as they are.
    """
    if midi.size == 0:
        return 0.0
    angle = 2.0 * np.pi * (midi - np.round(midi))
    return float(np.angle(np.mean(np.exp(1j * angle))) / (2.0 * np.pi))


def _runs(labels: np.ndarray) -> list[list[int]]:
    """Run-length encoding: ``[label, start, stop]`` with ``stop`` exclusive."""
    runs: list[list[int]] = []
    for i, label in enumerate(labels.tolist()):
        if runs and runs[-1][0] == label:
            runs[-1][2] = i + 1
        else:
            runs.append([label, i, i + 1])
    return runs


def _label_notes(midi: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Label each voiced frame with the semitone of the note it belongs to (-1 when unvoiced).

    Rounding each frame on its own would let vibrato on a slightly sharp or flat note flip the
    label back and forth across the half-semitone boundary. Instead a new note starts only when
    ``_MIN_NOTE_FRAMES`` frames in a row lie more than ``_SPLIT_SEMITONES`` from the median
    of the current note's recent frames (hysteresis); each note is then labelled with its median
    pitch, rounded.
    """
    labels = np.full(len(midi), -1, dtype=int)
    for is_voiced, start, stop in _runs(voiced.astype(int)):
        if not is_voiced:
            continue
        bounds = [start]
        t, away = start + 1, 0
        while t < stop:
            recent = midi[max(bounds[-1], t - away - _RECENT_FRAMES) : t - away]
            if recent.size and abs(midi[t] - float(np.median(recent))) > _SPLIT_SEMITONES:
                away += 1
                if away >= _MIN_NOTE_FRAMES:
                    bounds.append(t - away + 1)
                    away = 0
            else:
                away = 0
            t += 1
        bounds.append(stop)
        for a, b in zip(bounds[:-1], bounds[1:]):
            labels[a:b] = int(np.round(np.median(midi[a:b])))
    return labels


def _absorb_short_runs(labels: np.ndarray, midi: np.ndarray) -> np.ndarray:
    """Relabel voiced runs too short for a note with the neighbouring label nearest in pitch.

    Short runs are the frames of a glide between two notes, a wobble of vibrato across a
    semitone boundary, or two overlapping notes (a piano's ringing string under the next note)
    read as a pitch in between; giving them to a neighbour keeps the note count right. Runs
    shorter than ``_MIN_NOTE_FRAMES`` always go; runs up to ``_GLIDE_FRAMES`` go when their pitch
    lies strictly between the notes on either side, as a glide's does.
    """
    labels = labels.copy()
    changed = True
    while changed:
        changed = False
        runs = _runs(labels)
        for k, (label, start, stop) in enumerate(runs):
            if label < 0 or stop - start > _GLIDE_FRAMES:
                continue
            neighbours = [runs[j][0] for j in (k - 1, k + 1) if 0 <= j < len(runs) and runs[j][0] >= 0]
            if not neighbours:
                continue
            between = len(neighbours) == 2 and min(neighbours) < label < max(neighbours)
            if stop - start >= _MIN_NOTE_FRAMES and not between:
                continue
            centre = float(np.median(midi[start:stop]))
            best = min(neighbours, key=lambda n: abs(n - centre))
            labels[start:stop] = best
            changed = True
            break  # the runs changed; recompute them
    return labels


def _attack_score(rms_db: np.ndarray, flux: np.ndarray) -> np.ndarray:
    """How much each frame looks like the gap just before a new attack, frame by frame.

    Two signs add up: an energy dip (how far the frame lies below the louder of the frames just
    before it and just after it, whichever is quieter, in units of ``_DIP_DB``) and a spectral-flux
    peak in the next few frames (in units of the recording's strong attacks, ``flux_scale``). A
    re-sung note dips deeply; a re-bowed fiddle note dips a little and its bow bite adds flux; a
    piano note struck again barely dips but its hammer makes a lot of flux. Vibrato makes some flux
    and no dip, and stays well below the threshold; a fading note is not followed by sound and
    scores 0.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    w = _SAME_ATTACK_FRAMES
    padded = np.pad(rms_db, (w, w), mode="edge")
    before = sliding_window_view(padded[:-w - 1], w).max(axis=1)[: len(rms_db)]
    after = sliding_window_view(padded[w + 1 :], w).max(axis=1)[: len(rms_db)]
    depth = np.maximum(np.minimum(before, after) - rms_db, 0.0)
    ahead = sliding_window_view(np.pad(flux, (0, w - 1)), w).max(axis=1)[: len(flux)]
    # A note fading out (its release before a rest) changes the spectrum too, but nothing loud
    # follows it: an attack must be followed by sound about as loud as what came before.
    fading = after < before - _DIP_DB
    return np.where(fading, 0.0, depth / _DIP_DB + ahead)


def _attacks(score: np.ndarray, rms_db: np.ndarray, start: int, stop: int) -> list[int]:
    """Frames inside ``[start, stop)`` where a new attack of the same pitch begins.

    Attacks are local maxima of :func:`_attack_score` above ``_ATTACK_THRESHOLD``, at least ``_SAME_ATTACK_FRAMES``
    apart (an attack's dip and its flux peak lie a few frames apart but are one attack). pYIN's
    93 ms window makes a voiced run start about two frames before the note's own attack, so the
    first frames of a run are not searched. The new note starts on the frame after the dip and must
    sound: its frames after the attack are no more than ``_NEW_NOTE_DB`` below the run's loudest (the flux
    of a note's own release, just before a rest, is not an attack), and the energy must swell by
    ``_SWELL_DB`` (vibrato alone makes flux but no swell).
    """
    found: list[int] = []
    w = _SAME_ATTACK_FRAMES
    loud = float(np.max(rms_db[start:stop])) - _NEW_NOTE_DB
    # Both parts must be longer than a glitch: the first frames of a run are its own attack.
    for t in range(start + _OWN_ATTACK_FRAMES, stop - _MIN_NOTE_FRAMES - 1):
        if (
            score[t] > _ATTACK_THRESHOLD
            and score[t] >= np.max(score[max(start, t - w) : t + w + 1])
            and np.min(rms_db[t + 2 : t + 2 + _MIN_NOTE_FRAMES]) >= loud
            and np.max(rms_db[t + 1 : t + 5]) - np.min(rms_db[t - 1 : t + 1]) >= _SWELL_DB
        ):
            if not found or t + 1 - found[-1] > w:
                found.append(t + 1)
    return found


def _steepest_rise(rms_db: np.ndarray, guess: int, lo: int, hi: int) -> int:
    """The frame in ``[lo, hi]`` where the energy rises fastest, or ``guess`` if it hardly rises.

    The frame where pYIN's rounded pitch changes lags a glide or leads a dip by a frame or two,
    and a split at an attack sits at the dip before it; the steepest rise is where a listener hears
    the note begin, whichever way it was found. A legato pitch change without any swell keeps its
    pitch-change frame.
    """
    lo, hi = max(lo, 1), min(hi, len(rms_db) - 2)
    if hi < lo:
        return guess
    rise = rms_db[lo + 1 : hi + 2] - rms_db[lo - 1 : hi]
    best = int(np.argmax(rise))
    return lo + best if rise[best] >= _RISE_DB else guess


def analyse(samples: object, sample_rate: int) -> Analysis:
    """Track the pitch of a monophonic recording and cut it into notes.

    Args:
        samples: audio as :func:`as_mono_float` accepts it.
        sample_rate: in Hz.

    Returns:
        The pitch track, the notes (possibly none), the tuning offset and the input's duration.

    Raises:
        PitchError: the audio is unusable (see :func:`as_mono_float`).
    """
    import librosa
    from scipy.ndimage import median_filter

    x = prepare(samples, sample_rate)
    duration = len(x) / ANALYSIS_RATE
    empty = PitchTrack(np.zeros(0), np.zeros(0), np.zeros(0))
    if not np.any(x):
        return Analysis(empty, [], 0.0, duration)

    # Leading and trailing silence cost pYIN time and carry no melody.
    _, (lo, hi) = librosa.effects.trim(x, top_db=_TRIM_DB, frame_length=FRAME_LENGTH, hop_length=HOP_LENGTH)
    lo = max(0, lo - FRAME_LENGTH)
    hi = min(len(x), hi + FRAME_LENGTH)
    y = x[lo:hi]
    if len(y) < FRAME_LENGTH:
        return Analysis(empty, [], 0.0, duration)
    offset = lo / ANALYSIS_RATE

    f0, voiced, voiced_prob = librosa.pyin(
        y, fmin=FMIN, fmax=FMAX, sr=ANALYSIS_RATE, frame_length=FRAME_LENGTH,
        hop_length=HOP_LENGTH, resolution=RESOLUTION,
    )
    times = offset + librosa.times_like(f0, sr=ANALYSIS_RATE, hop_length=HOP_LENGTH)
    track = PitchTrack(times=times, f0=f0, voiced_prob=voiced_prob)

    n = len(f0)
    rms_db = _frame_rms_db(y)[:n]
    rms_db = np.pad(rms_db, (0, n - len(rms_db)), constant_values=-120.0)
    flux = _onset_strength(y)[:n]
    flux = np.pad(flux, (0, n - len(flux)))

    voiced = voiced & np.isfinite(f0) & (rms_db > -_FLOOR_DB)
    if not np.any(voiced):
        return Analysis(track, [], 0.0, duration)
    midi = np.full(n, np.nan)
    midi[voiced] = librosa.hz_to_midi(f0[voiced])
    tuning = _tuning(midi[voiced])
    midi = midi - tuning
    smooth = midi.copy()
    smooth[voiced] = median_filter(np.nan_to_num(midi), size=3, mode="nearest")[voiced]
    labels = _absorb_short_runs(_label_notes(smooth, voiced), smooth)

    # Strong attacks (the top few per cent of the onset strength) set the scale of the flux.
    flux_scale = _FLUX_SHARE * float(np.percentile(flux[voiced], 98)) + 1e-9
    score = _attack_score(rms_db, _above_local_median(flux) / flux_scale)
    rms_lin = 10.0 ** (rms_db / 20.0)
    frame_seconds = HOP_LENGTH / ANALYSIS_RATE
    notes: list[NoteSegment] = []
    previous_onset = -_MIN_NOTE_FRAMES
    for label, start, stop in _runs(labels):
        if label < 0:
            continue
        cuts = [start, *_attacks(score, rms_db, start, stop), stop]
        for a, b in zip(cuts[:-1], cuts[1:]):
            if (b - a) * frame_seconds < _MIN_NOTE_SECONDS:
                continue
            # Every note's onset is placed the same way, on its steepest rise in energy, so that
            # onsets found from a pitch change and from an attack agree (see _steepest_rise).
            earliest = max(previous_onset + _MIN_NOTE_FRAMES, a - _SAME_ATTACK_FRAMES)
            onset = _steepest_rise(rms_db, a, earliest, min(b - 1, a + _SAME_ATTACK_FRAMES))
            previous_onset = onset
            notes.append(
                NoteSegment(
                    pitch=int(label),
                    start=float(times[onset]),
                    end=float(times[b - 1] + frame_seconds / 2),
                    confidence=float(np.mean(voiced_prob[a:b])),
                    strength=float(np.max(rms_lin[a : min(b, a + 4)])),
                )
            )
    return Analysis(track, notes, tuning, duration)
