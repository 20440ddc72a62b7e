"""tunesmith.music.keys: every way tunesmith writes a key, read one way, with the Krumhansl-Kessler profiles.

The expected values are what the four readers this module replaces gave (the corpus reader's
``canonical_key``, the transposer's ``key_signature``, the quality measures' ``tonic_and_mode``
and the transcriber's ``parse_key``), so moving to one reader changed no answer.
"""

import numpy as np
import pytest

from tunesmith.music.abc import NormaliseError, canonical_key
from tunesmith.music.keys import (
    KK_MAJOR,
    KK_MINOR,
    KeyNameError,
    key_profile,
    key_signature,
    parse_key,
    split_key,
    tonic_and_mode,
    tonic_pc,
)

SHARPS = {"F": 1, "C": 1, "G": 1, "D": 1, "A": 1, "E": 1, "B": 1}
FLATS = {"B": -1, "E": -1, "A": -1, "D": -1, "G": -1, "C": -1, "F": -1}


def sharps(n):
    return dict(list(SHARPS.items())[:n])


def flats(n):
    return dict(list(FLATS.items())[:n])


# text -> canonical name, tonic pitch class, minor profile, sharps (+) or flats (-), signature
KEYS = [
    ("D", "D", 2, False, 2, sharps(2)),
    ("Dmaj", "D", 2, False, 2, sharps(2)),
    ("G major", "G", 7, False, 1, sharps(1)),
    ("Edor", "Edor", 4, True, 2, sharps(2)),
    ("A dorian", "Ador", 9, True, 1, sharps(1)),
    ("Amin", "Am", 9, True, 0, {}),
    ("Am", "Am", 9, True, 0, {}),
    ("E minor", "Em", 4, True, 1, sharps(1)),
    ("F#m", "F#m", 6, True, 3, sharps(3)),
    ("c#m", "C#m", 1, True, 4, sharps(4)),
    ("Bb", "Bb", 10, False, -2, flats(2)),
    ("bb", "Bb", 10, False, -2, flats(2)),
    ("Ebm", "Ebm", 3, True, -6, flats(6)),
    ("Gmix", "Gmix", 7, False, 0, {}),
    ("Dmixolydian", "Dmix", 2, False, 1, sharps(1)),
    ("Flyd", "Flyd", 5, False, 0, {}),
    ("Ephr", "Ephr", 4, True, 0, {}),
    ("Bloc", "Bloc", 11, True, 0, {}),
    ("Cb", "Cb", 11, False, -7, flats(7)),
    ("C#", "C#", 1, False, 7, sharps(7)),
]


@pytest.mark.parametrize("text, name, tonic, minor, fifths, signature", KEYS)
def test_every_form_reads_as_before(text, name, tonic, minor, fifths, signature):
    key = parse_key(text)
    assert (key.name, key.tonic_pc, key.minor, key.fifths, key.signature) == (name, tonic, minor, fifths, signature)
    assert key.tonic + key.mode == name and split_key(text) == (key.tonic, key.mode)
    assert canonical_key(text) == name
    assert key_signature(name) == signature
    assert tonic_and_mode(name) == (tonic, minor) and tonic_pc(name) == tonic


@pytest.mark.parametrize(
    "key, name, signature",
    [("D", "D", {"F": 1, "C": 1}), ("Bb", "Bb", {"B": -1, "E": -1}), ("F#m", "F#m", {"F": 1, "C": 1, "G": 1}),
     ("A dorian", "Ador", {"F": 1}), ("Gmix", "Gmix", {}), ("Ebm", "Ebm", {"B": -1, "E": -1, "A": -1, "D": -1, "G": -1, "C": -1})],
)
def test_parse_key_gives_the_signature(key, name, signature):
    parsed = parse_key(key)
    assert parsed.name == name and parsed.signature == signature


def test_tonic_and_mode():
    assert tonic_and_mode("F#m") == (6, True)
    assert tonic_and_mode("Bb") == (10, False)
    assert tonic_and_mode("Ador") == (9, True)


def test_mode_words_count_by_their_first_three_letters_as_abc_says():
    assert split_key("Dmixo") == ("D", "mix") and split_key("A Dorian") == ("A", "dor")
    assert split_key("Emin") == ("E", "m") and split_key("Cionian") == ("C", "")


@pytest.mark.parametrize("text", ["HP", "none", "H minor", "", "Dxyz", "D clef=treble", 3])
def test_what_is_not_a_key_is_refused_by_every_reader(text):
    with pytest.raises(KeyNameError, match="is not a key"):
        parse_key(text)
    with pytest.raises(KeyNameError):
        split_key(text)
    if isinstance(text, str):
        with pytest.raises(NormaliseError, match="unsupported key"):
            canonical_key(text)


def test_a_key_field_may_go_on_after_the_key_but_a_key_name_may_not():
    assert canonical_key("Gm clef=bass") == "Gm" and canonical_key("D % comment") == "D"
    assert split_key("Gm clef=bass", allow_trailing=True) == ("G", "m")
    with pytest.raises(KeyNameError):
        split_key("Gm clef=bass")


@pytest.mark.parametrize("text, count", [("G#", 8), ("Fb", 8), ("D#", 9), ("Gbm", 9)])
def test_keys_no_signature_can_write_have_a_tonic_but_no_signature(text, count):
    assert canonical_key(text) == text and tonic_and_mode(text)[0] == tonic_pc(text)
    with pytest.raises(KeyNameError, match=f"would need {count} sharps or flats"):
        parse_key(text)
    with pytest.raises(KeyNameError):
        key_signature(text)
    assert parse_key("Abm").fifths == -7


def test_profiles_are_the_published_ratings_rotated_to_the_tonic():
    assert list(KK_MAJOR) == [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]
    assert list(KK_MINOR) == [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17]
    assert np.array_equal(key_profile(0, False), KK_MAJOR) and np.array_equal(key_profile(0, True), KK_MINOR)
    d_major, b_minor = key_profile(*tonic_and_mode("D")), key_profile(*tonic_and_mode("Bm"))
    assert d_major[2] == 6.35 and d_major[9] == 5.19 and d_major[1] == 2.88
    assert b_minor[11] == 6.33 and b_minor[2] == 5.38 and b_minor[10] == 3.17
    for tonic in range(12):
        for minor in (False, True):
            expected = [(KK_MINOR if minor else KK_MAJOR)[(i - tonic) % 12] for i in range(12)]
            assert list(key_profile(tonic, minor)) == expected


def test_the_shared_profiles_cannot_be_changed_by_accident():
    with pytest.raises(ValueError):
        KK_MAJOR[0] = 1.0
    profile = key_profile(2, False)
    profile[0] = 0.0
    assert key_profile(2, False)[0] == 2.29
