"""tunesmith.transcriber and tunesmith.audio.pitch: melody audio to ABC, and the tools that measure it."""

import numpy as np
import pytest

from tunesmith.audio import synth
from tunesmith.audio.pitch import PitchTrack
from tunesmith.audio.synth import NoteEvent, note_events
from tunesmith.transcriber.evaluate import note_accuracy
from tunesmith.transcriber.model import (
    TranscribedNote,
    Transcription,
    TranscriptionError,
    estimate_key,
    notes_to_abc,
    transcribe,
)
from tunesmith.transcriber.voice import voice_like

RATE = 22050
FOUR_BARS = """X:1
T:Four bars
M:4/4
L:1/8
K:G
G2 AB c2 BA | G2 B2 d4 | e2 dc B2 AG | A2 G2 G4 |]
"""
D_SCALE = """X:1
T:D major scale
M:4/4
L:1/4
K:D
D E F G | A B c d |]
"""


@pytest.fixture(scope="module")
def four_bars_audio():
    return synth.render(FOUR_BARS, tempo=120, instrument="flute", sample_rate=RATE)


@pytest.fixture(scope="module")
def four_bars(four_bars_audio):
    return transcribe(four_bars_audio, RATE)


def pitches(notes):
    return [n.pitch for n in notes if n.pitch is not None]


# ---- the round trip ----------------------------------------------------------------------------


def test_synthesised_tune_transcribes_with_high_note_accuracy(four_bars):
    assert isinstance(four_bars, Transcription)
    assert note_accuracy(note_events(FOUR_BARS), four_bars.notes) >= 0.9
    assert four_bars.tempo == pytest.approx(120, rel=0.05)
    assert four_bars.meter == "4/4"
    assert four_bars.key in ("G", "Em")
    assert 0.5 < four_bars.confidence <= 1.0


def test_abc_has_the_headers_and_reads_back_as_the_same_notes(four_bars):
    lines = four_bars.abc.splitlines()
    for field in ("X:", "T:", "M:4/4", "L:1/8", "Q:1/4=", "K:"):
        assert any(line.startswith(field) for line in lines), field
    back = [e for e in note_events(four_bars.abc) if not e.is_rest]
    assert [e.pitch for e in back] == [n.pitch for n in four_bars.notes]
    assert [e.onset - back[0].onset for e in back] == pytest.approx([n.onset for n in four_bars.notes])


def test_bars_fill_the_meter(four_bars):
    tune = synth.parse_tune(four_bars.abc, expand_repeats=False)
    assert tune.quarter_length % 4 == pytest.approx(0)  # the last bar is filled up


def test_pitch_track_is_there_for_plotting(four_bars):
    track = four_bars.track
    assert isinstance(track, PitchTrack)
    assert len(track.times) == len(track.f0) == len(track.voiced_prob) > 100
    voiced = track.voiced_prob > 0.5
    assert np.nanmedian(track.f0[voiced]) == pytest.approx(440, rel=0.3)  # the tune sits around A4


def test_to_dict_is_json_ready(four_bars):
    import json

    plain = json.loads(json.dumps(four_bars.to_dict(with_track=True), allow_nan=False))
    assert plain["abc"] == four_bars.abc and len(plain["notes"]) == len(four_bars.notes)
    assert None in plain["track"]["f0"]  # unvoiced frames
    assert "track" not in four_bars.to_dict()


def test_key_of_a_d_major_scale_is_d():
    audio = synth.render(D_SCALE, tempo=100, instrument="sine", sample_rate=RATE)
    result = transcribe(audio, RATE)
    assert pitches(result.notes) == [62, 64, 66, 67, 69, 71, 73, 74]
    assert result.key == "D"
    assert "K:D\n" in result.abc
    assert estimate_key([62, 64, 66, 67, 69, 71, 73, 74], [1] * 8) == "D"


def test_stereo_48k_int16_with_silence_around_it_works(four_bars_audio, four_bars):
    import soxr

    mono = soxr.resample(four_bars_audio, RATE, 48000)
    quiet = np.zeros(48000)  # a second of silence before and after, as a microphone records
    padded = np.concatenate([quiet, mono, quiet])
    stereo = np.stack([padded, 0.8 * padded], axis=1)
    pcm = np.round(stereo * 32767 * 0.5).astype(np.int16)
    result = transcribe(pcm, 48000)
    assert pitches(result.notes) == pitches(four_bars.notes)
    assert result.track.times[0] >= 0.5  # the silence was trimmed, times still count from the start
    channels_first = transcribe(pcm.T, 48000)
    assert pitches(channels_first.notes) == pitches(four_bars.notes)


def test_voice_like_rendering_transcribes_well():
    audio = voice_like(FOUR_BARS, seed=3, tempo=110)
    result = transcribe(audio, RATE)
    assert note_accuracy(note_events(FOUR_BARS), result.notes) >= 0.8


def test_hints_are_used(four_bars_audio):
    result = transcribe(four_bars_audio, RATE, tempo=120, meter="3/4", key="Em", title="Mine")
    assert result.tempo == 120 and result.meter == "3/4" and result.key == "Em"
    assert "M:3/4\n" in result.abc and "K:Em\n" in result.abc and "T:Mine\n" in result.abc
    assert synth.parse_tune(result.abc).meter == "3/4"


# ---- what cannot be transcribed ----------------------------------------------------------------


def test_silence_is_no_melody():
    with pytest.raises(TranscriptionError, match="no melody found"):
        transcribe(np.zeros(2 * RATE), RATE)


def test_noise_is_no_melody():
    noise = 0.3 * np.random.default_rng(1).standard_normal(3 * RATE)
    with pytest.raises(TranscriptionError, match="no melody found"):
        transcribe(noise, RATE)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tempo": 10}, "tempo"),
        ({"tempo": "fast"}, "tempo"),
        ({"meter": "7/5"}, "meter"),
        ({"key": "H minor"}, "key"),
        ({"max_seconds": 0.5}, "longer than the limit"),
    ],
)
def test_bad_settings_are_refused_by_name(four_bars_audio, kwargs, match):
    with pytest.raises(TranscriptionError, match=match):
        transcribe(four_bars_audio[: 2 * RATE], RATE, **kwargs)


@pytest.mark.parametrize(
    "samples, rate, match",
    [
        (np.zeros(0), RATE, "no samples"),
        (np.array([0.0, np.nan, 0.0]), RATE, "NaN"),
        (np.zeros((2, 3, 4)), RATE, "shape"),
        (np.zeros(RATE), 100, "sample_rate"),
        (np.array(["a", "b"]), RATE, "numbers"),
    ],
)
def test_unusable_audio_is_refused(samples, rate, match):
    with pytest.raises(TranscriptionError, match=match):
        transcribe(samples, rate)


# ---- ABC writing and keys ----------------------------------------------------------------------


def test_accidentals_read_the_same_everywhere_and_ties_cross_bar_lines():
    notes = [
        TranscribedNote(66, 0.0, 1.0, 1.0),  # F# in C: ^F
        TranscribedNote(66, 1.0, 1.0, 1.0),  # still F#: signed again (music21 does not carry it)
        TranscribedNote(65, 2.0, 1.0, 1.0),  # F natural again: =F
        TranscribedNote(54, 3.0, 2.0, 1.0),  # F#3, another octave, crossing the bar line
        TranscribedNote(70, 5.0, 0.5, 1.0),  # Bb in a sharp-free key: _B
    ]
    abc = notes_to_abc(notes, key="C", meter="4/4", tempo=100)
    body = abc.split("K:C\n")[1]
    assert body.startswith("^F2 ^F2 =F2 ^F,2- | ^F,2 _B")
    back = [e for e in note_events(abc) if not e.is_rest]
    assert [(e.pitch, e.onset, e.duration) for e in back] == [
        (66, 0.0, 1.0), (66, 1.0, 1.0), (65, 2.0, 1.0), (54, 3.0, 2.0), (70, 5.0, 0.5)
    ]


def test_short_notes_are_beamed_by_beat():
    jig = [TranscribedNote(p, i * 0.5, 0.5, 1.0) for i, p in enumerate([74, 69, 66, 62, 66, 69])]
    assert "K:D\ndAF DFA |]" in notes_to_abc(jig, key="D", meter="6/8", tempo=120)


def test_pickup_and_rests_are_written():
    notes = [TranscribedNote(67, 0.0, 0.5, 1.0), TranscribedNote(72, 0.5, 1.0, 1.0), TranscribedNote(74, 2.5, 3.0, 1.0)]
    abc = notes_to_abc(notes, key="G", meter="3/4", tempo=90, pickup=0.5)
    body = abc.split("K:G\n")[1]
    assert body.startswith("G | c2 z2 d2- | d4 z2 |]")


def test_note_spelling_follows_the_key():
    notes = [TranscribedNote(p, i * 0.5, 0.5, 1.0) for i, p in enumerate([66, 70, 63, 61])]
    assert "F_B ^D^C" in notes_to_abc(notes, key="G", meter="4/4", tempo=100)  # nearest on the line of fifths
    assert "_GB E_D" in notes_to_abc(notes, key="Bb", meter="4/4", tempo=100)  # beamed by quarter beats
    assert "^G" in notes_to_abc([TranscribedNote(68, 0, 1, 1)], key="Am", meter="4/4", tempo=100)
    assert "^C" in notes_to_abc([TranscribedNote(61, 0, 1, 1)], key="Dm", meter="4/4", tempo=100)


# ---- the measuring tools -----------------------------------------------------------------------


def events(*pairs):
    return [NoteEvent(p, float(o), 0.5) for p, o in pairs]


def test_note_accuracy_counts_matches_over_the_longer_list():
    ref = events((60, 0), (62, 0.5), (64, 1), (65, 1.5))
    assert note_accuracy(ref, ref) == 1.0
    assert note_accuracy(ref, events((60, 0), (62, 0.5), (63, 1), (65, 1.5))) == 0.75  # one wrong pitch
    assert note_accuracy(ref, events((60, 0), (62, 0.5), (64, 1))) == 0.75  # one missed
    assert note_accuracy(ref, events((60, 0), (62, 0.5), (64, 1), (65, 1.5), (67, 2), (69, 2.5))) == pytest.approx(4 / 6)
    assert note_accuracy(ref, events((60, 0), (62, 0.75), (64, 1), (65, 1.5))) == 0.75  # one late
    assert note_accuracy([], []) == 1.0 and note_accuracy(ref, []) == 0.0


def test_note_accuracy_aligns_start_and_tempo_and_ignores_rests():
    ref = events((60, 0), (62, 0.5), (64, 1), (65, 1.5)) + [NoteEvent(None, 2.0, 1.0)]
    doubled_and_shifted = events((60, 4), (62, 5), (64, 6), (65, 7))
    assert note_accuracy(ref, doubled_and_shifted) == 1.0
    missing_first = events((62, 0), (64, 0.5), (65, 1))
    assert note_accuracy(ref, missing_first) == 0.75


def test_voice_like_is_seeded_and_differs_from_the_clean_rendering():
    a = voice_like(FOUR_BARS, seed=1)
    b = voice_like(FOUR_BARS, seed=1)
    c = voice_like(FOUR_BARS, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[: len(c)], c[: len(a)])
    assert a.dtype == np.float32 and np.all(np.isfinite(a))
    assert np.max(np.abs(a)) == pytest.approx(0.9, rel=1e-3)
    clean_seconds = synth.duration_seconds(FOUR_BARS)
    assert abs(len(a) / RATE - clean_seconds) < 0.25 * clean_seconds + 1.0  # the drift stays modest


def test_no_drift_no_noise_voice_keeps_the_tempo():
    quiet = voice_like(FOUR_BARS, seed=0, tempo=100, tempo_drift=0.0, timing_jitter=0.0, noise_db=-80)
    assert transcribe(quiet, RATE).tempo == pytest.approx(100, rel=0.03)
