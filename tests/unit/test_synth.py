"""tunesmith.audio.synth: ABC parsing into note events, rendering, and the errors a runtime turns into 400s."""

import numpy as np
import pytest

from tunesmith.audio import synth
from tunesmith.audio.synth import (
    DEFAULT_TEMPO,
    INSTRUMENTS,
    TAIL_SECONDS,
    NoteEvent,
    NotABCError,
    RenderSettingsError,
    RenderTooLongError,
    SynthError,
    TempoError,
    UnknownInstrumentError,
    duration_seconds,
    note_events,
    parse_tune,
    render,
)

JIG = """X:1
T:Test
M:6/8
L:1/8
R:jig
K:D
|:dAF DFA|dfe dcB|AFD DFA|BGE E3:|
"""
RATE = 22050


def abc(body, *, meter="4/4", length="1/4", extra=""):
    return f"X:1\nT:t\nM:{meter}\nL:{length}\n{extra}K:C\n{body}\n"


A4_WHOLE = abc("A4|A4|")  # two bars of the A above middle C, 440 Hz


def harmonic_profile(samples, frequency, count=8):
    """Amplitudes of the first ``count`` harmonics, relative to the fundamental."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / RATE)
    amps = np.array([spectrum[np.abs(freqs - h * frequency) < 8].max() for h in range(1, count + 1)])
    return amps / amps[0]


def steady_part(samples):
    """The middle of a long note: past the attack, before the release."""
    return samples[int(0.5 * RATE) : int(2.5 * RATE)]


# ---- parsing ---------------------------------------------------------------------------------


def test_jig_events_expand_the_repeat():
    events = note_events(JIG)
    assert len(events) == 44  # 22 notes, played twice
    assert [e.pitch for e in events[:6]] == [74, 69, 66, 62, 66, 69]  # d A F D F A in D major
    assert all(e.duration == 0.5 for e in events[:21])
    assert events[21] == NoteEvent(64, 10.5, 1.5, events[21].velocity)  # E3: a dotted quarter
    assert events[22].onset == 12.0 and events[22].pitch == 74
    assert parse_tune(JIG).repeats_expanded


def test_repeats_can_be_left_as_written():
    tune = parse_tune(JIG, expand_repeats=False)
    assert len(tune.events) == 22 and not tune.repeats_expanded
    assert tune.quarter_length == 12.0


def test_tune_without_repeat_marks_counts_as_expanded():
    assert parse_tune(abc("CDEF|GABc|"), expand_repeats=False).repeats_expanded


def test_badly_formed_repeats_play_as_written():
    tune = parse_tune(abc("|:CDEF|GABc|"))
    assert not tune.repeats_expanded
    assert [e.pitch for e in tune.events] == [60, 62, 64, 65, 67, 69, 71, 72]


def test_first_and_second_endings():
    pitches = [e.pitch for e in note_events(abc("|:CDEF|1 GGGG:|2 cccc||"))]
    assert pitches == [60, 62, 64, 65, 67, 67, 67, 67, 60, 62, 64, 65, 72, 72, 72, 72]


def test_ties_are_merged_and_rests_kept():
    events = note_events(abc("C2-C2|D4-|D2 z2|"))
    assert events == [
        NoteEvent(60, 0.0, 4.0, 1.0),
        NoteEvent(62, 4.0, 6.0, 1.0),
        NoteEvent(None, 10.0, 2.0, 0.0),
    ]


def test_chords_are_simultaneous_and_grace_notes_dropped():
    events = note_events(abc("[CEG]4|{d}c4|"))
    assert [(e.pitch, e.onset) for e in events] == [(60, 0.0), (64, 0.0), (67, 0.0), (72, 4.0)]


def test_triplets_and_pickup_accents():
    events = note_events(abc("G|(3cde f g4|", length="1/8"))
    assert [round(e.onset, 4) for e in events[:4]] == [0.0, 0.5, 0.8333, 1.1667]
    # The pickup G is an off-beat; the first note of the full bar is the downbeat.
    assert events[0].velocity < events[1].velocity == 1.0


def test_voices_play_together():
    text = "X:1\nM:4/4\nL:1/4\nK:C\nV:1\nCDEF|GABc|\nV:2\nC,D,E,F,|G,A,B,C|\n"
    events = note_events(text)
    assert [e.pitch for e in events if e.onset == 0.0] == [48, 60]


def test_only_the_first_tune_of_several_is_used():
    text = abc("CDEF|") + "\n" + abc("cdef|").replace("X:1", "X:2")
    assert [e.pitch for e in note_events(text)] == [60, 62, 64, 65]


def test_q_field_sets_the_tempo():
    assert parse_tune(abc("C4|", extra="Q:1/4=60\n")).tempo == 60
    assert parse_tune(JIG.replace("K:D", "Q:3/8=120\nK:D")).tempo == 180  # dotted quarters
    assert parse_tune(JIG).tempo is None


def test_duration_seconds():
    assert duration_seconds(JIG) == pytest.approx(24 * 60 / DEFAULT_TEMPO)
    assert duration_seconds(JIG, 240) == pytest.approx(6.0)
    assert duration_seconds(abc("C4|C4|", extra="Q:1/4=60\n")) == pytest.approx(8.0)


# ---- rendering -------------------------------------------------------------------------------


@pytest.mark.parametrize("tempo", [None, 90, 240])
def test_render_length_follows_tempo(tempo):
    audio = render(JIG, tempo=tempo, instrument="sine")
    assert len(audio) == round((duration_seconds(JIG, tempo) + TAIL_SECONDS) * RATE)


def test_render_output_is_float32_mono_within_full_scale():
    audio = render(JIG, sample_rate=16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.all(np.isfinite(audio))
    assert 0.5 < np.max(np.abs(audio)) <= 1.0


def test_render_is_deterministic_and_accepts_a_parsed_tune():
    tune = parse_tune(JIG)
    np.testing.assert_array_equal(render(tune, instrument="flute"), render(JIG, instrument="flute"))


def test_sine_a4_is_440_hz_without_overtones():
    audio = render(A4_WHOLE, instrument="sine", tempo=120)
    segment = steady_part(audio)
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
    assert np.fft.rfftfreq(len(segment), 1 / RATE)[np.argmax(spectrum)] == pytest.approx(440, abs=1)
    assert np.all(harmonic_profile(segment, 440)[1:] < 0.01)


@pytest.mark.parametrize("instrument", INSTRUMENTS)
def test_every_instrument_plays_the_written_pitch(instrument):
    segment = steady_part(render(A4_WHOLE, instrument=instrument, tempo=120))
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
    freqs = np.fft.rfftfreq(len(segment), 1 / RATE)
    assert freqs[np.argmax(spectrum)] == pytest.approx(440, abs=5)


def test_instruments_have_different_spectra():
    profiles = {
        name: harmonic_profile(render(A4_WHOLE, instrument=name, tempo=120)[: int(0.5 * RATE)], 440)
        for name in INSTRUMENTS
    }
    decibels = {name: 20 * np.log10(np.maximum(p, 1e-3)) for name, p in profiles.items()}  # floor -60 dB
    names = list(profiles)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert np.abs(decibels[a] - decibels[b]).max() > 6, (a, b)  # some harmonic differs by 2x
    assert profiles["fiddle"][1:3].min() > 0.2  # a bowed string is rich in overtones
    assert profiles["whistle"][1:].max() < profiles["fiddle"][1:].max()


def test_plucked_instruments_decay_while_wind_sustains():
    def late_over_early(name):
        audio = render(A4_WHOLE, instrument=name, tempo=120)
        rms = lambda a, b: np.sqrt(np.mean(audio[int(a * RATE) : int(b * RATE)] ** 2))  # noqa: E731
        return rms(1.5, 1.9) / rms(0.1, 0.5)

    assert late_over_early("harp") < 0.4 and late_over_early("piano") < 0.6
    assert late_over_early("flute") > 0.7 and late_over_early("whistle") > 0.7


# ---- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,match",
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("Hello, this is a sentence and not a tune.", "no K:"),
        ('{"prompt": "a jig"}', "no K:"),
        ("/etc/passwd", "no K:"),
        ("X:1\nK:D\nABc|", "music21 cannot parse this ABC .*L: .*M: "),
        ("X:1\nM:4/4\nL:1/8\nK:D\n[ABc|", "music21 cannot parse"),
        ("X:1\nT:only headers\nM:4/4\nL:1/8\nK:D\n", "no notes"),
        ("X:1\nM:4/4\nL:1/8\nK:D\nz8|z8|", "no notes"),
        (b"X:1\nK:D\nABc|", "must be text"),
    ],
)
def test_text_that_is_not_a_playable_tune(text, match):
    with pytest.raises(NotABCError, match=match):
        render(text)
    with pytest.raises(NotABCError, match=match):
        note_events(text)


def test_unknown_instrument_lists_the_valid_ones():
    with pytest.raises(UnknownInstrumentError) as info:
        render(JIG, instrument="bagpipes")
    assert "'bagpipes'" in str(info.value)
    assert all(name in str(info.value) for name in INSTRUMENTS)


@pytest.mark.parametrize("tempo", [0, -60, 19, 401, 10_000, float("nan"), "fast", True])
def test_bad_tempo_names_the_range(tempo):
    with pytest.raises(TempoError, match="between 20 and 400|must be a number"):
        render(JIG, tempo=tempo)


def test_absurd_q_field_is_refused_unless_a_tempo_is_given():
    text = abc("C4|", extra="Q:1/4=2000\n")
    with pytest.raises(TempoError, match="Q: field"):
        render(text)
    assert len(render(text, tempo=120)) == round((2.0 + TAIL_SECONDS) * RATE)


def test_too_long_names_both_numbers():
    with pytest.raises(RenderTooLongError) as info:
        render(JIG, tempo=60, max_seconds=10)
    assert "24.5 s" in str(info.value) and "10 s" in str(info.value)


@pytest.mark.parametrize("kwargs", [{"sample_rate": 100}, {"sample_rate": 22050.0}, {"max_seconds": 0}])
def test_bad_render_settings(kwargs):
    with pytest.raises(RenderSettingsError):
        render(JIG, **kwargs)


def test_synth_errors_are_value_errors():
    for error in (NotABCError, UnknownInstrumentError, TempoError, RenderTooLongError, RenderSettingsError):
        assert issubclass(error, SynthError) and issubclass(error, ValueError)


def test_module_exports():
    assert {"fiddle", "flute", "whistle", "harp", "piano", "sine"} <= set(INSTRUMENTS)
    assert 20 <= DEFAULT_TEMPO <= 400
    assert synth.TEMPO_RANGE == (20, 400)


def test_an_end_repeat_without_a_start_repeats_its_own_section():
    """ABC players repeat ``A :| B :|`` as A A B B; music21 alone would play A A A B A B."""
    from tunesmith.audio.synth import balance_repeats, duration_seconds

    tune = "X:1\nT:t\nM:4/4\nL:1/4\nK:C\nCDEF|GABc:|dcBA|GFED:|\n"
    assert balance_repeats(tune).endswith("|:CDEF|GABc:||:dcBA|GFED:|\n")
    assert duration_seconds(tune, tempo=60) == 32.0
    balanced = "X:1\nT:t\nM:4/4\nL:1/4\nK:C\n|:CDEF|1GABc:|2cBAG||\n"
    assert balance_repeats(balanced) == balanced
