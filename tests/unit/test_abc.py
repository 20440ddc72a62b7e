"""The ABC normaliser and the canonical form."""

from fractions import Fraction

import pytest

from tunesmith.music.abc import (
    Header,
    NormaliseError,
    bar_checks,
    dance_tempo,
    canonical_key,
    normalise_tune,
    parse_length,
    read_body,
    read_tune,
    render_tune,
)

RYAN_STYLE = """X:1
T:Some Strathspey -- Strathspey
R:strathspey
M:C
L:1/8
K:Am
u"4"e|\\
v(c<A)(A>.B) (c<A) (A>.f) | {d}c2 [EA]2 G2 (3efg |
!trill!a4 a2 g2 | a8 :|
w: some words
"""


def test_normalises_decorations_broken_rhythm_chords_and_triplets():
    header, symbols = normalise_tune(RYAN_STYLE)
    assert header == Header(meter="4/4", key="Am", rhythm="strathspey")
    # pickup, c<A expanded, grace and chord symbol gone, chord reduced to its top note
    assert symbols[:6] == ["e", "|", "c/2", "A3/2", "A3/2", "B/2"]
    assert "(3" in symbols and symbols[-1] == ":|"
    assert all(not s.startswith('"') for s in symbols)
    assert "A2" in symbols  # [EA]2 -> A2


def test_every_bar_of_the_normalised_tune_is_checked_right():
    header, symbols = normalise_tune(RYAN_STYLE)
    assert all(bar_checks(symbols, header.meter))


def test_essen_lines_without_bar_lines_get_one_when_the_bar_is_full():
    text = "X:1\nM:4/4\nL:1/4\nK:G\nG2A2\nB2c2|d4|e4|]\n"
    _, symbols = normalise_tune(text)
    assert symbols == ["G4", "A4", "|", "B4", "c4", "|", "d8", "|", "e8", "|]"]


def test_render_and_read_back_round_trip():
    header, symbols = normalise_tune(RYAN_STYLE)
    abc = render_tune(header, symbols, title="T", index=3)
    again_header, again_symbols = read_tune(abc)
    assert again_symbols == symbols
    assert again_header == header
    assert abc.startswith("X:3\nT:T\nM:4/4\nL:1/8\nR:strathspey\nK:Am\n")


@pytest.mark.parametrize(
    "text", [
        "X:1\nM:none\nL:1/8\nK:D\nABcd|ABcd|ABcd|ABcd|\n",  # no meter
        "X:1\nM:2/4\nL:1/8\nK:D\nAB|cd|\nM:3/4\nABc|ABc|ABc|\n",  # meter change
        "X:1\nM:2/4\nL:1/8\nK:D\n(5ABcde|cd|AB|cd|\n",  # quintuplet
        "X:1\nM:2/4\nL:1/8\nK:D\nAB|cd|\n",  # too short
    ],
)
def test_tunes_the_canonical_form_cannot_express_are_refused(text):
    with pytest.raises(NormaliseError):
        normalise_tune(text)


def test_lengths_and_keys():
    assert parse_length("") == 1 and parse_length("/") == Fraction(1, 2)
    assert parse_length("3/2") == Fraction(3, 2) and parse_length("//") == Fraction(1, 4)
    assert canonical_key("A Dorian") == "Ador" and canonical_key("Emin") == "Em"
    assert canonical_key("F#m") == "F#m"


def test_bar_checks_allow_pickups_and_short_section_ends_only():
    assert bar_checks(read_body("A | B4 c4 | d4 e3 :|"), "4/4") == [True, True, True]
    assert bar_checks(read_body("A8 | B4 | c8 |]"), "4/4") == [True, False, True]
    assert bar_checks(read_body("A8 | B4 c4 d | c8 |]"), "4/4") == [True, False, True]


def test_transposition_respells_accidentals_for_the_new_key():
    from tunesmith.music.pitch import pitches, transpose

    header = Header(meter="4/4", key="D")
    symbols = read_body("D2 F2 A2 ^c2 | =c2 c2 B2 _B2 | d8 |]")
    new_header, new_symbols = transpose(header, symbols, 2)
    assert new_header.key == "E"
    assert new_symbols == read_body("E2 G2 B2 d2 | =d2 d2 c2 =c2 | e8 |]")
    before = [p for p, _ in pitches(header, symbols)]
    after = [p for p, _ in pitches(new_header, new_symbols)]
    assert after == [p + 2 for p in before]


def test_minor_tunes_written_under_a_major_signature_are_named_minor():
    text = "X:1\nM:3/4\nL:1/8\nK:G\nE2 G2 B2 | e4 B2 | G2 F2 E2 | B,2 E4 | E2 G2 B2 | e6 | B2 G2 F2 | E6 |]\n"
    header, _ = normalise_tune(text)
    assert header.key == "Em"


@pytest.mark.parametrize(
    "fields, tempo",
    [
        ("M:2/2\nR:reel", 220),  # 55 bars a minute, 4 quarter notes a bar
        ("M:2/4\nR:Reel", 110),  # a reel written in 2/4: the same bars, half the quarter notes
        ("M:6/8\nR:jig", 168),
        ("M:9/8\nR:slip-jig", 182),
        ("M:C|\nR:hornpipe", 160),
        ("M:3/4\nR:waltz", None),  # no dance tempo known: the caller's own default applies
        ("M:3/4", None),
        ("M:none\nR:reel", None),
    ],
)
def test_dance_tempo_plays_each_rhythm_at_its_dance_speed(fields, tempo):
    assert dance_tempo(f"X:1\n{fields}\nL:1/8\nK:D\nABcd|") == tempo


def test_a_header_block_reads_back_as_the_header_that_wrote_it():
    for header in (Header(meter="6/8", key="D", rhythm="jig"), Header(meter="3/4", key="Am"), Header(rhythm="slip jig")):
        assert Header.from_abc(header.to_abc(title="A title", index=3)) == header
    tune = "X:1\nT:t\nM:C\nL:1/16\nR:\nK:Dmaj\nABcd|"
    assert Header.from_abc(tune) == Header(meter="C", key="Dmaj", rhythm=None, unit="1/16")  # as written, body ignored


@pytest.mark.parametrize("text", ["M:6/8", "K:D", "R:jig\nL:1/8", "", "a jig in D"])
def test_a_header_without_meter_or_key_is_refused_not_guessed(text):
    with pytest.raises(ValueError) as err:
        Header.from_abc(text)
    assert str(err.value) == f"{text!r} needs M: and K: lines"
