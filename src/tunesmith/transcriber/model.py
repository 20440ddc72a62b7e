"""The ``transcriber`` model: a hummed, whistled or played melody to ABC notation.

:func:`transcribe` runs four steps:

1. **Notes in seconds** (:mod:`tunesmith.audio.pitch`): pYIN pitch tracking and note segmentation.
2. **Notes in beats.** Folk tunes are written mostly in eighth notes (``L:1/8``), so the most
   common time between onsets is taken as an eighth; that fixes the tempo up to the usual
   octave ambiguity (a tune in quarter notes at 60 reads as eighths at 120), which is steered by
   keeping the eighth between 0.15 and 0.4 s (75-200 quarter notes per minute). Onsets are then
   placed on a sixteenth-note grid by a small hidden Markov model whose state is the local tempo
   and the place in the beat (see :func:`_quantise`): the Viterbi path explains all the intervals
   at once, so a singer who speeds up or slows down is followed, and one uneven note does not
   shift all the rest. Triplets are not recognised: they come out as the nearest sixteenths.
3. **Meter and key.** The meter is the one of 4/4, 3/4 and 6/8 (and the bar's starting point,
   for tunes with a pickup) whose pattern of strong and weak beats best matches where the loud
   and the long notes fall. It only tells those three apart: 2/4 and 2/2 come out as 4/4, 3/8
   and 9/8 as 3/4 or 6/8, and a melody with even notes and no accents gives the meter little to go
   on. The key signature is the one that leaves the fewest notes needing accidentals; the tonic,
   major or minor, is the one whose Krumhansl-Kessler profile correlates best with the
   duration-weighted pitch-class histogram. Modal tunes get their written signature but are named
   as the major or minor key of that signature. Key names and profiles are
   :mod:`tunesmith.music.keys`, shared with the corpus reader and the generator.
4. **ABC**: ``X:``, ``T:``, ``M:``, ``L:1/8``, ``Q:`` and ``K:`` headers, notes spelt for the
   key (with accidentals that read the same whether or not a reader carries them through the
   bar), short notes beamed by beat, notes that cross a bar line tied, and the last bar filled
   with a rest.

This module is what the served model runs, and nothing else. The tools that measure it live
beside it: :mod:`tunesmith.transcriber.voice` renders a tune the way a person might hum it, and
:mod:`tunesmith.transcriber.evaluate` scores transcriptions and runs the round trip on the test
split (``python -m tunesmith.transcriber.evaluate``). ``python -m tunesmith.transcriber FILE``
transcribes a recording.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from tunesmith.audio import pitch
from tunesmith.audio.pitch import NoteSegment, PitchError, PitchTrack
from tunesmith.music.keys import LETTER_FIFTHS, LETTERS, NATURAL_PC, Key, KeyNameError, key_profile, parse_key

DEFAULT_MAX_SECONDS = 60.0
"""Longest recording :func:`transcribe` accepts unless the caller says otherwise."""
TEMPO_RANGE = (30.0, 300.0)
"""Tempos a caller may give, in quarter notes per minute (inclusive)."""
SAMPLE_RATE_RANGE = (8000, 192000)
"""Sample rates :func:`transcribe` accepts, in Hz (inclusive)."""
METERS = ("4/4", "3/4", "6/8")
"""Meters :func:`transcribe` chooses between when the caller gives none."""
STEPS_PER_QUARTER = 4
"""The rhythm grid: sixteenth notes."""

_EIGHTH_RANGE = (0.15, 0.4)  # seconds per eighth note the tempo estimate is steered into
_TIMING_SD = 0.04  # seconds: onset detection error and the performer's unevenness, per interval
_TEMPO_DRIFT_SD = 0.03  # relative tempo change that is unremarkable over half a second
_ODD_COST = 3.0  # extra cost (in squared standard deviations) of a note on an odd sixteenth
_OFFBEAT_COST = 1.0  # ... and of a note on the off-beat eighth
_DRIFT_CAP = 1.0  # seconds: beyond this, a longer interval allows no more tempo change
_REST_STEPS = 2  # a silence of an eighth or more between notes is written as a rest
_BARS_PER_LINE = 4
_STEPS_PER_UNIT = 2  # L:1/8 is two sixteenth-note steps

# Key names for each tonic pitch class, spelt with the smaller key signature.
_MAJOR_KEYS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_KEYS = ("Cm", "C#m", "Dm", "Ebm", "Em", "Fm", "F#m", "Gm", "G#m", "Am", "Bbm", "Bm")
_METER_RE = re.compile(r"^\s*(\d{1,2})\s*/\s*(\d{1,2})\s*$")


class TranscriptionError(ValueError):
    """A recording or setting the transcriber cannot use, because of what the caller sent."""


@dataclass(frozen=True)
class TranscribedNote:
    """One note of a transcription, timed in beats (quarter notes) from the first note.

    Attributes:
        pitch: MIDI note number.
        onset: start, in quarter notes; the first note starts at 0.
        duration: length as written, in quarter notes.
        confidence: mean pYIN voiced probability over the note's frames, 0..1.
    """

    pitch: int
    onset: float
    duration: float
    confidence: float

    @property
    def end(self) -> float:
        """When the note stops, in quarter notes."""
        return self.onset + self.duration


@dataclass(frozen=True)
class Transcription:
    """The result of :func:`transcribe`.

    Attributes:
        abc: the tune as ABC text.
        notes: the notes, in order, timed in quarter notes.
        tempo: quarter notes per minute (the caller's, or estimated).
        key: ABC key, e.g. ``"D"`` or ``"Em"``.
        meter: e.g. ``"6/8"``.
        confidence: mean voiced probability over the frames of the notes (0..1): how sure the
            pitch tracker was that it heard a pitched melody.
        track: the frame-by-frame pitch track, for plotting.
        tuning_cents: how far the performance sits from A4 = 440 Hz tuning, in cents.
    """

    abc: str
    notes: tuple[TranscribedNote, ...]
    tempo: float
    key: str
    meter: str
    confidence: float
    track: PitchTrack
    tuning_cents: float

    def to_dict(self, *, with_track: bool = False) -> dict:
        """Plain lists and numbers (e.g. for a JSON response); the pitch track only if asked for.

        Unvoiced frames have ``f0`` ``None`` (JSON has no NaN).
        """
        out = {
            "abc": self.abc,
            "tempo": self.tempo,
            "key": self.key,
            "meter": self.meter,
            "confidence": self.confidence,
            "tuning_cents": self.tuning_cents,
            "notes": [
                {"pitch": n.pitch, "onset": n.onset, "duration": n.duration, "confidence": n.confidence}
                for n in self.notes
            ],
        }
        if with_track:
            out["track"] = {
                "times": [float(t) for t in self.track.times],
                "f0": [None if not np.isfinite(f) else float(f) for f in self.track.f0],
                "voiced_prob": [float(v) for v in self.track.voiced_prob],
            }
        return out


# --------------------------------------------------------------------------------------------
# Settings given by the caller
# --------------------------------------------------------------------------------------------


def _key(text: str) -> Key:
    """A key the caller gave, read as everywhere else in tunesmith (:func:`tunesmith.music.keys.parse_key`).

    Raises:
        TranscriptionError: not a key with a tonic and a known mode, or one needing more than 7
            sharps or flats.
    """
    try:
        return parse_key(text)
    except KeyNameError as exc:
        raise TranscriptionError(str(exc)) from None


def _parse_meter(text: str) -> tuple[str, int]:
    """``"6/8"`` -> (``"6/8"``, bar length in sixteenth steps); ``C`` and ``C|`` are accepted."""
    if isinstance(text, str) and text.strip() in ("C", "C|"):
        return ("4/4", 16) if text.strip() == "C" else ("2/2", 16)
    m = _METER_RE.match(text) if isinstance(text, str) else None
    if m:
        beats, unit = int(m.group(1)), int(m.group(2))
        if beats > 0 and unit in (1, 2, 4, 8, 16) and beats * 16 // unit <= 64:
            return f"{beats}/{unit}", beats * 16 // unit
    raise TranscriptionError(
        f"meter {text!r} is not a meter: give beats/unit with unit 1, 2, 4, 8 or 16 and at most 4 whole "
        "notes a bar, e.g. '4/4', '3/4', '6/8'"
    )


def _check_tempo(tempo: object) -> float:
    lo, hi = TEMPO_RANGE
    if isinstance(tempo, bool) or not isinstance(tempo, (int, float, np.integer, np.floating)) or not lo <= tempo <= hi:
        raise TranscriptionError(f"tempo must be a number of quarter notes per minute between {lo:g} and {hi:g}, got {tempo!r}")
    return float(tempo)


# --------------------------------------------------------------------------------------------
# Rhythm: seconds to grid steps
# --------------------------------------------------------------------------------------------


def _eighth_seconds(onsets: np.ndarray) -> float:
    """Seconds per eighth note, from the most common inter-onset interval.

    The mode is found on a log scale (a kernel density with 6% bandwidth), halved or doubled into
    ``_EIGHTH_RANGE``, then refined by least squares over the intervals that are near multiples.
    """
    gaps = np.diff(onsets)
    gaps = gaps[(gaps > 0.06) & (gaps < 3.0)]
    if gaps.size == 0:
        return 0.25
    grid = np.linspace(math.log2(0.06), math.log2(3.0), 400)
    density = np.exp(-0.5 * ((grid[:, None] - np.log2(gaps)[None, :]) / 0.085) ** 2).sum(axis=1)
    eighth = 2.0 ** grid[int(np.argmax(density))]
    while eighth > _EIGHTH_RANGE[1]:
        eighth /= 2.0
    while eighth < _EIGHTH_RANGE[0]:
        eighth *= 2.0
    for _ in range(2):  # refine: eighth = sum(d * q) / sum(q * q) over intervals of 1/2..4 eighths
        q = np.maximum(np.round(gaps / eighth * 2.0) / 2.0, 0.5)
        near = (q <= 4) & (np.abs(gaps / eighth - q) < 0.2 * q)
        if np.count_nonzero(near) >= 2:
            eighth = float(np.sum(gaps[near] * q[near]) / np.sum(q[near] ** 2))
    return eighth


def _quantise(onsets: np.ndarray, step0: float) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Grid positions (in steps, first note at 0) of the onsets, and each note's local tempo line.

    A small hidden Markov model decides the rhythm and the tempo together. Its hidden state is
    the current length of a step in seconds (51 values from 0.75 to 1.33 times ``step0``) and
    where in the beat the last note fell (which of the four sixteenths). Each interval between
    onsets is a whole number of steps at the current length, with a Gaussian timing error (onset
    detection and the performer's own unevenness); landing on an off-beat eighth costs a little
    and on an odd sixteenth more, because folk tunes move mostly in beats and eighths; between
    notes the step length may drift, by more the longer the interval (up to a second: a long note
    is no licence for a big jump in tempo). The Viterbi path finds the
    rhythm and tempo curve that explain *all* the intervals best, so the tempo around a long note
    is judged from the notes on both sides, and one uneven note does not shift the rest.

    Args:
        onsets: note onsets in seconds, increasing.
        step0: first guess of seconds per step.

    Returns:
        Integer positions, strictly increasing, and per note ``(a, b)`` with ``time = a + b * step``
        (its local tempo line, for placing the note's end).
    """
    n = len(onsets)
    if n < 2:
        return np.zeros(n, dtype=np.int64), [(float(onsets[0]), step0)] * n
    ratios = 2.0 ** np.linspace(math.log2(0.75), math.log2(1.33), 51)
    periods = step0 * ratios
    size = len(periods)
    log_periods = np.log(periods)
    change = (log_periods[:, None] - log_periods[None, :]) ** 2  # state j (row) to k (column)
    landing = np.array([0.0, _ODD_COST, _OFFBEAT_COST, _ODD_COST])
    gaps = np.diff(onsets)

    # total[k, m]: best cost so far with step length k and the last note on sixteenth m of a beat.
    total = ((np.log(ratios) / 0.15) ** 2)[:, None] + landing[None, :]  # the first note lands too
    back = np.zeros((n - 1, size, 4), dtype=np.int64)  # flattened (j, m0) of the best predecessor
    chosen = np.zeros((n - 1, size, 4, 4), dtype=np.int64)  # steps taken, by (k, m0, m1)
    for i, gap in enumerate(gaps):
        x = gap / periods  # the interval in steps at each step length
        sigma = math.hypot(_TIMING_SD, 0.01 * gap)
        # steps[d, k]: the best whole number of steps that is d modulo 4, and its timing cost
        steps = np.empty((4, size))
        timing = np.empty((4, size))
        for d in range(4):
            below = np.floor((x - d) / 4.0) * 4.0 + d
            below = np.where(below < 1, below + 4, below)
            above = below + 4
            cost_below, cost_above = ((gap - below * periods) / sigma) ** 2, ((gap - above * periods) / sigma) ** 2
            steps[d] = np.where(cost_below <= cost_above, below, above)
            timing[d] = np.minimum(cost_below, cost_above)
        d_index = (np.arange(4)[None, :] - np.arange(4)[:, None]) % 4  # [m0, m1] -> d
        emission = timing[d_index].transpose(2, 0, 1) + landing[None, None, :]  # (k, m0, m1)
        drift = _TEMPO_DRIFT_SD**2 * min(max(gap, 0.1), _DRIFT_CAP) / 0.5
        # cost[j, m0, k, m1] = total[j, m0] + change[j, k] / drift + emission[k, m0, m1]
        cost = total[:, :, None, None] + (change / drift)[:, None, :, None] + emission.transpose(1, 0, 2)[None]
        flat = cost.reshape(size * 4, size, 4)
        back[i] = np.argmin(flat, axis=0)
        total = np.take_along_axis(flat, back[i][None, :, :], axis=0)[0]
        chosen[i] = steps[d_index].transpose(2, 0, 1).astype(np.int64)

    k, m = np.unravel_index(int(np.argmin(total)), total.shape)
    q = np.zeros(n - 1, dtype=np.int64)
    path = np.zeros(n - 1, dtype=np.int64)
    for i in range(n - 2, -1, -1):
        j, m0 = divmod(int(back[i, k, m]), 4)
        q[i] = chosen[i, k, m0, m]
        path[i] = k
        k, m = j, m0
    positions = np.concatenate([[0], np.cumsum(q)]).astype(np.int64)
    step_of_note = np.concatenate([[periods[path[0]]], periods[path]])
    lines = [(float(onsets[i] - step_of_note[i] * positions[i]), float(step_of_note[i])) for i in range(n)]
    return positions, lines


def _durations(notes: Sequence[NoteSegment], positions: np.ndarray, lines: list[tuple[float, float]]) -> np.ndarray:
    """Written length of each note in steps: up to the next note, unless a rest fits between."""
    n = len(notes)
    lengths = np.zeros(n, dtype=np.int64)
    for i, note in enumerate(notes):
        a, b = lines[i]
        end = max(positions[i] + 1, int(round((note.end - a) / b)) if b > 0 else positions[i] + 1)
        if i + 1 < n:
            gap = positions[i + 1] - end
            lengths[i] = end - positions[i] if gap >= _REST_STEPS else positions[i + 1] - positions[i]
        else:
            lengths[i] = end - positions[i]
    return lengths


# --------------------------------------------------------------------------------------------
# Meter and key
# --------------------------------------------------------------------------------------------


def _meter_template(meter: str, bar: int) -> np.ndarray:
    """Metrical weight of each sixteenth of a bar: downbeat, half bar, beats, eighths, the rest."""
    beats, unit = (int(v) for v in meter.split("/"))
    compound = unit == 8 and beats % 3 == 0 and beats > 3
    beat = 6 if compound else 16 // unit if unit <= 16 else 1
    template = np.zeros(bar)
    template[::2] = 1.0
    template[::beat] = 2.0
    groups = beats // 3 if compound else beats
    if groups % 2 == 0 and groups >= 2:
        template[bar // 2] = 3.0
    template[0] = 4.0
    return template


def _meter_and_phase(
    positions: np.ndarray, lengths: np.ndarray, strengths: np.ndarray, meters: Iterable[tuple[str, int]]
) -> tuple[str, int, int]:
    """The meter and bar offset whose strong beats carry the loudest and longest notes.

    Each note weighs its attack strength (relative to the median) times a slowly growing function
    of its length; a meter's score for a given offset is the weighted mean of its standardised
    template over the notes' positions in the bar. A tiny bonus for starting on the downbeat
    breaks ties in favour of no pickup.

    Returns:
        ``(meter, bar length in steps, offset)``, where the first note lies ``offset`` steps into
        its bar (a pickup of ``bar - offset`` steps when ``offset`` is not 0).
    """
    weights = strengths / (np.median(strengths) or 1.0) * np.log2(2.0 + lengths)
    best = None
    for meter, bar in meters:
        template = _meter_template(meter, bar)
        template = (template - template.mean()) / (template.std() or 1.0)
        for offset in range(bar):
            score = float(np.sum(weights * template[(positions + offset) % bar]) / np.sum(weights))
            score += 0.02 if offset == 0 else 0.0
            if best is None or score > best[0]:
                best = (score, meter, bar, offset)
    return best[1], best[2], best[3]


def estimate_key(pitches: Sequence[int], durations: Sequence[float]) -> str:
    """The key whose signature fits the notes, named by the Krumhansl-Kessler profiles.

    Two questions, answered in order. Which key signature? The one whose seven notes cover the
    most of the melody's duration, so the ABC needs the fewest accidentals; folk tunes are
    overwhelmingly diatonic, and this also gives modal tunes (Dorian, Mixolydian) their written
    signature. Which tonic? Among the major and minor keys, the correlation of the
    duration-weighted pitch-class histogram with the Krumhansl-Kessler profile of each key
    (weighted a tenth as much, so it decides between keys that share a signature, e.g. G major
    and E minor). On 120 test-split excerpts this picks the reference signature 86% of the time,
    against 72% for the profile correlation alone.

    Written here rather than taken from music21's analysis module because the histogram comes
    straight from the transcribed notes (no score to build) and the result must be an ABC key
    whose signature spells the notes; the profiles are the published ones.

    Args:
        pitches: MIDI note numbers.
        durations: their lengths (any unit); the histogram is duration-weighted.

    Returns:
        An ABC key name such as ``"D"`` or ``"Bm"``.
    """
    hist = np.zeros(12)
    for p, d in zip(pitches, durations):
        hist[int(p) % 12] += float(d)
    if not hist.any():
        return "C"
    major_scale = np.array([0, 2, 4, 5, 7, 9, 11])
    best = (-np.inf, "C")
    for tonic in range(12):
        for minor, names, relative_major in ((False, _MAJOR_KEYS, 0), (True, _MINOR_KEYS, 3)):
            cover = float(hist[(tonic + relative_major + major_scale) % 12].sum() / hist.sum())
            r = float(np.corrcoef(hist, key_profile(tonic, minor))[0, 1]) if hist.std() > 0 else 0.0
            score = cover + 0.1 * r
            if score > best[0]:
                best = (score, names[tonic])
    return best[1]


# --------------------------------------------------------------------------------------------
# ABC writing
# --------------------------------------------------------------------------------------------


def _spell(midi: int, key: Key) -> tuple[str, int, int]:
    """``(letter, alteration, octave)`` for a pitch in a key.

    A note of the key signature is written as such. A chromatic note takes the spelling nearest
    the key on the line of fifths (F C G D A E B, then the sharps to the right and the flats to the
    left), the usual rule of thumb: in C major a B flat, not an A sharp, and an F sharp, not a
    G flat. When both spellings are equally far, minor keys and sharp keys take the higher one (the
    raised leading note: G sharp in A minor, C sharp in D minor), flat major keys the lower one.
    """
    pc = midi % 12
    options = []
    for letter, natural in zip(LETTERS, NATURAL_PC):
        alter = ((pc - natural + 6) % 12) - 6
        if abs(alter) <= 1:
            options.append((letter, alter))
    choice = next((o for o in options if key.signature.get(o[0], 0) == o[1]), None)
    if choice is None:
        centre = key.fifths + 2  # the middle of the key's seven notes on the line of fifths
        higher = key.minor or key.fifths >= 0
        choice = min(
            options,
            key=lambda o: (abs(LETTER_FIFTHS[o[0]] + 7 * o[1] - centre), -o[1] if higher else o[1]),
        )
    letter, alter = choice
    octave = (midi - alter) // 12 - 1
    return letter, alter, octave


def _note_name(letter: str, octave: int) -> str:
    if octave >= 5:
        return letter.lower() + "'" * (octave - 5)
    return letter + "," * (4 - octave)


def _length_text(steps: int) -> str:
    """ABC length for ``steps`` sixteenths with L:1/8 (1 -> ``/``, 2 -> ``""``, 3 -> ``3/``)."""
    if steps % _STEPS_PER_UNIT == 0:
        units = steps // _STEPS_PER_UNIT
        return "" if units == 1 else str(units)
    return "/" if steps == 1 else f"{steps}/"


class _BarSpeller:
    """Writes pitches with the accidentals they need, bar by bar, for every ABC reader.

    The ABC standard carries an explicit accidental to the end of the bar (for the same letter and
    octave; some programs apply it to every octave), while music21, which the synthesizer and the
    tune checks use, reads each note on its own. So every note that differs from the key
    signature gets its accidental, and once a letter has carried one in a bar, every later note of
    that letter in the bar gets one too (``=`` for a natural): the result reads the same all ways.
    """

    def __init__(self, key: Key):
        self.key = key
        self.new_bar()

    def new_bar(self) -> None:
        self.touched: set[str] = set()

    def write(self, midi: int) -> str:
        letter, alter, octave = _spell(midi, self.key)
        prefix = ""
        if alter != self.key.signature.get(letter, 0) or letter in self.touched:
            prefix = {1: "^", -1: "_", 0: "="}[alter]
            self.touched.add(letter)
        return prefix + _note_name(letter, octave)


def _beam_group(meter: str, bar: int) -> int:
    """Steps per beamed group: a dotted quarter in compound meters, a quarter in x/4, a half in x/2."""
    beats, unit = (int(v) for v in meter.split("/"))
    if unit == 8 and beats % 3 == 0:
        return 6
    return max(1, min(bar, 16 // unit if unit <= 4 else 4))


def _join_bar(tokens: list[tuple[str, int, int, bool]], group: int) -> str:
    """One bar's text: notes shorter than a quarter are beamed (written without a space) within
    a beat, as ABC players write ``dAF DFA``; rests and longer notes stand apart."""
    text = ""
    previous = None
    for token in tokens:
        name, position, length, is_note = token
        if previous is not None:
            _, p_position, p_length, p_note = previous
            beamed = is_note and p_note and length < 4 and p_length < 4 and p_position // group == position // group
            text += "" if beamed else " "
        text += name
        previous = token
    return text


def _abc_body(
    items: Sequence[tuple[int | None, int, int]], key: Key, meter: str, bar: int, offset: int
) -> str:
    """Body text for ``(pitch or None for a rest, start step, length in steps)`` items.

    Items are cut at bar lines (notes tied across), the last bar is filled with a rest.
    """
    speller = _BarSpeller(key)
    bars: list[list[tuple[str, int, int, bool]]] = [[]]
    cursor = offset  # position within the current bar
    for pitch_, start, length in items:
        remaining = length
        while remaining > 0:
            part = min(remaining, bar - cursor)
            remaining -= part
            if pitch_ is None:
                bars[-1].append(("z" + _length_text(part), cursor, part, False))
            else:
                name = speller.write(pitch_) + _length_text(part) + ("-" if remaining > 0 else "")
                bars[-1].append((name, cursor, part, True))
            cursor += part
            if cursor == bar:
                bars.append([])
                speller.new_bar()
                cursor = 0
    if cursor:
        bars[-1].append(("z" + _length_text(bar - cursor), cursor, bar - cursor, False))
    elif not bars[-1]:
        bars.pop()
    group = _beam_group(meter, bar)
    lines = []
    for i in range(0, len(bars), _BARS_PER_LINE):
        chunk = bars[i : i + _BARS_PER_LINE]
        lines.append(" | ".join(_join_bar(tokens, group) for tokens in chunk))
    return " |\n".join(lines) + " |]"


def notes_to_abc(
    notes: Sequence[TranscribedNote],
    *,
    key: str,
    meter: str,
    tempo: float,
    title: str = "Transcription",
    pickup: float = 0.0,
) -> str:
    """Write notes timed in quarter notes (on a sixteenth grid) as an ABC tune.

    Args:
        notes: notes in order; onsets and durations are rounded to sixteenths. A gap between one
            note's end and the next onset becomes a rest.
        key: ABC key for the K: field; the notes are spelt for its signature.
        meter: e.g. ``"6/8"`` for the M: field; bar lines follow it.
        tempo: quarter notes per minute, for the Q: field.
        title: the T: field.
        pickup: quarter notes before the first bar line (0 when the tune starts on a downbeat).

    Returns:
        ABC text with X:, T:, M:, L:1/8, Q: and K: headers.

    Raises:
        TranscriptionError: the key or meter cannot be read, or the notes overlap.
    """
    parsed_key = _key(key)
    meter, bar = _parse_meter(meter)
    pickup_steps = int(round(pickup * STEPS_PER_QUARTER)) % bar
    offset = (bar - pickup_steps) % bar
    items: list[tuple[int | None, int, int]] = []
    cursor = None
    for note in notes:
        start = int(round(note.onset * STEPS_PER_QUARTER))
        length = max(1, int(round(note.duration * STEPS_PER_QUARTER)))
        if cursor is not None and start < cursor:
            raise TranscriptionError("notes overlap: this writes one melody line, one note at a time")
        if cursor is not None and start > cursor:
            items.append((None, cursor, start - cursor))
        items.append((int(note.pitch), start, length))
        cursor = start + length
    clean_title = " ".join(str(title).split()) or "Transcription"
    header = [
        "X:1",
        f"T:{clean_title}",
        f"M:{meter}",
        "L:1/8",
        f"Q:1/4={int(round(tempo))}",
        f"K:{parsed_key.name}",
    ]
    return "\n".join(header) + "\n" + _abc_body(items, parsed_key, meter, bar, offset) + "\n"


# --------------------------------------------------------------------------------------------
# The transcriber
# --------------------------------------------------------------------------------------------


def _check_sample_rate(sample_rate: object) -> int:
    lo, hi = SAMPLE_RATE_RANGE
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or not lo <= sample_rate <= hi:
        raise TranscriptionError(f"sample_rate must be an integer between {lo} and {hi} Hz, got {sample_rate!r}")
    return int(sample_rate)


def transcribe(
    samples: np.ndarray,
    sample_rate: int,
    *,
    tempo: float | None = None,
    meter: str | None = None,
    key: str | None = None,
    title: str = "Transcription",
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> Transcription:
    """Transcribe a monophonic melody (hummed, sung, whistled or played) to ABC.

    Args:
        samples: audio, ``(frames,)`` or ``(frames, channels)`` (channels-first is recognised),
            float in [-1, 1] or integer PCM such as a microphone's int16. Silence before and
            after the melody is trimmed.
        sample_rate: in Hz, within :data:`SAMPLE_RATE_RANGE`.
        tempo: quarter notes per minute, if known (within :data:`TEMPO_RANGE`); estimated otherwise.
        meter: e.g. ``"3/4"``, if known; otherwise one of :data:`METERS` is estimated.
        key: an ABC key such as ``"G"`` or ``"Em"``, if known; estimated otherwise.
        title: the T: field of the ABC.
        max_seconds: refuse recordings longer than this.

    Returns:
        The :class:`Transcription`.

    Raises:
        TranscriptionError: the audio is unusable or too long, a setting is invalid, or no melody
            was found (silence, noise, speech without sustained pitches).
    """
    rate = _check_sample_rate(sample_rate)
    if tempo is not None:
        tempo = _check_tempo(tempo)
    fixed_meter = _parse_meter(meter) if meter is not None else None
    fixed_key = _key(key) if key is not None else None
    if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) or not max_seconds > 0:
        raise TranscriptionError(f"max_seconds must be a positive number, got {max_seconds!r}")
    try:
        audio = pitch.as_mono_float(samples)
    except PitchError as exc:
        raise TranscriptionError(str(exc)) from None
    seconds = len(audio) / rate
    if seconds > max_seconds:
        raise TranscriptionError(f"the recording is {seconds:.1f} s long, longer than the limit of {max_seconds:g} s")

    analysis = pitch.analyse(audio, rate)
    segments = analysis.notes
    if not segments:
        voiced = float(np.mean(analysis.track.voiced_prob > 0.5)) if analysis.track.voiced_prob.size else 0.0
        raise TranscriptionError(
            f"no melody found in {seconds:.1f} s of audio ({voiced:.0%} of it sounded pitched): hum, sing, "
            "whistle or play one note at a time, close to the microphone, in a quiet room"
        )

    onsets = np.array([s.start for s in segments])
    step0 = 60.0 / tempo / STEPS_PER_QUARTER if tempo is not None else _eighth_seconds(onsets) / _STEPS_PER_UNIT
    positions, lines = _quantise(onsets, step0)
    lengths = _durations(segments, positions, lines)

    if tempo is None:
        if len(segments) >= 2 and positions[-1] > 0:
            seconds_per_step = float(np.polyfit(positions.astype(float), onsets, 1)[0])
        else:
            seconds_per_step = step0
        tempo = float(np.clip(60.0 / (seconds_per_step * STEPS_PER_QUARTER), *TEMPO_RANGE))

    strengths = np.array([s.strength for s in segments])
    candidates = [fixed_meter] if fixed_meter else [_parse_meter(m) for m in METERS]
    meter_name, bar, offset = _meter_and_phase(positions, lengths, strengths, candidates)

    pitches = [s.pitch for s in segments]
    key_name = fixed_key.name if fixed_key else estimate_key(pitches, lengths)

    notes = tuple(
        TranscribedNote(
            pitch=int(s.pitch),
            onset=float(p) / STEPS_PER_QUARTER,
            duration=float(n) / STEPS_PER_QUARTER,
            confidence=float(s.confidence),
        )
        for s, p, n in zip(segments, positions, lengths)
    )
    pickup = ((bar - offset) % bar) / STEPS_PER_QUARTER
    abc = notes_to_abc(notes, key=key_name, meter=meter_name, tempo=tempo, title=title, pickup=pickup)
    frames = np.array([max(s.end - s.start, 1e-3) for s in segments])
    confidence = float(np.sum(frames * np.array([s.confidence for s in segments])) / np.sum(frames))
    return Transcription(
        abc=abc,
        notes=notes,
        tempo=round(tempo, 1),
        key=key_name,
        meter=meter_name,
        confidence=confidence,
        track=analysis.track,
        tuning_cents=round(100.0 * analysis.tuning, 1),
    )
