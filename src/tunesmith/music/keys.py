"""Keys: what a key name means (tonic, mode, key signature) and the Krumhansl-Kessler key profiles.

The corpus reader, the transposer, the generator's bar-aware decoder (its key prior), the quality
measures and the transcriber all need to know what ``"F#m"`` or ``"A Dorian"`` means. They read
it here, one way, so that a key one part accepts means the same to every other part, and so the
profiles the decoder steers by are the very ones the quality measures score against.

Key names follow ABC's ``K:`` field: a tonic letter (either case), optionally ``#`` or ``b``, then
an optional mode word of which, as the ABC standard says, the first three letters count (``m``,
``min``, ``minor``, ``Dorian``, ``mixo``...). The *canonical* name is the tonic plus one of the
suffixes ``""`` (major), ``m``, ``dor``, ``phr``, ``lyd``, ``mix`` and ``loc``: ``"A Dorian"``
is ``"Ador"``, ``"Emin"`` is ``"Em"``. Keys without a tonic (``K:HP``, ``K:none``) are not keys
here; a caller that meets them decides what they mean to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

LETTERS = "CDEFGAB"
"""The natural note letters, in scale order from C."""
NATURAL_PC = (0, 2, 4, 5, 7, 9, 11)
"""Pitch class of each letter of :data:`LETTERS` without accidental."""
LETTER_FIFTHS = {"F": -1, "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5}
"""Place of each natural letter on the line of fifths (C = 0); a sharp moves seven places right."""

MODES = {
    "": "", "maj": "", "major": "", "ion": "", "ionian": "",
    "m": "m", "min": "m", "minor": "m", "aeo": "m", "aeolian": "m",
    "dor": "dor", "dorian": "dor", "mix": "mix", "mixolydian": "mix",
    "lyd": "lyd", "lydian": "lyd", "phr": "phr", "phrygian": "phr", "loc": "loc", "locrian": "loc",
}
"""Mode word (lower case) -> canonical mode suffix."""
MINOR_MODES = ("m", "dor", "phr", "loc")
"""Mode suffixes whose third is minor: the minor profile describes them better than the major one."""

# Krumhansl & Kessler (1982) probe-tone ratings, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
KK_MAJOR.setflags(write=False)
KK_MINOR.setflags(write=False)

# mode suffix -> (scale degree of the relative major its tonic sits on, semitones above that major tonic)
_RELATIVE_MAJOR = {"": (0, 0), "dor": (1, 2), "phr": (2, 4), "lyd": (3, 5), "mix": (4, 7), "m": (5, 9), "loc": (6, 11)}
_KEY_RE = re.compile(r"\s*([A-Ga-g])([#b]?)\s*([A-Za-z]*)")
_TRAILING_RE = re.compile(r"\s*")


class KeyNameError(ValueError):
    """Text that does not name a key, or names one that no key signature can write."""


@dataclass(frozen=True)
class Key:
    """A key and its key signature.

    Attributes:
        name: the canonical name, e.g. ``"F#m"``, ``"Ador"``.
        tonic: letter plus accidental, e.g. ``"F#"``.
        mode: canonical mode suffix (``""`` for major).
        tonic_pc: pitch class of the tonic, 0..11 (C = 0).
        minor: the mode has a minor third (see :data:`MINOR_MODES`).
        fifths: sharps (positive) or flats (negative) in the key signature.
        signature: letter -> alteration in semitones for every letter the signature alters.
    """

    name: str
    tonic: str
    mode: str
    tonic_pc: int
    minor: bool
    fifths: int
    signature: dict


def split_key(text: str, *, allow_trailing: bool = False) -> tuple[str, str]:
    """``"a dorian"`` -> ``("A", "dor")``: the tonic and the canonical mode suffix of a key name.

    Args:
        text: a key name.
        allow_trailing: ignore what follows the key name, as an ABC ``K:`` field may go on with a
            clef or other settings after the key (``"Gm clef=bass"``).

    Raises:
        KeyNameError: no tonic A-G, or a mode word that is not a mode.
    """
    m = _KEY_RE.match(text) if isinstance(text, str) else None
    word = m.group(3).lower() if m else ""
    if word not in MODES and len(word) >= 3 and word[:3] in MODES:
        word = word[:3]
    if not m or word not in MODES or not (allow_trailing or _TRAILING_RE.fullmatch(text, m.end())):
        raise KeyNameError(
            f"key {text!r} is not a key: give a tonic A-G, optionally # or b, then an optional mode "
            "(m, dor, phr, lyd, mix, loc), e.g. 'D', 'Em', 'Bb', 'Ador'"
        )
    return m.group(1).upper() + m.group(2), MODES[word]


def tonic_pc(key: str) -> int:
    """Pitch class (C = 0) of a key's tonic: ``"Bb"`` -> 10, ``"F#m"`` -> 6."""
    tonic, _ = split_key(key)
    return (NATURAL_PC[LETTERS.index(tonic[0])] + {"#": 1, "b": -1}.get(tonic[1:2], 0)) % 12


def tonic_and_mode(key: str) -> tuple[int, bool]:
    """``"F#m"`` -> ``(6, True)``: the tonic's pitch class and whether the minor profile applies."""
    _, mode = split_key(key)
    return tonic_pc(key), mode in MINOR_MODES


def parse_key(text: str) -> Key:
    """Read a key name such as ``"D"``, ``"F#m"``, ``"Bb"``, ``"Ador"`` or ``"E minor"``.

    Raises:
        KeyNameError: not a key with a tonic and a known mode, or one needing more than 7 sharps
            or flats (``"G#"``: write ``"Ab"``).
    """
    tonic, mode = split_key(text)
    pc = tonic_pc(tonic)
    degree, offset = _RELATIVE_MAJOR[mode]
    # The relative major: the letter `degree` steps below the tonic's, `offset` semitones below.
    major_letter = LETTERS[(LETTERS.index(tonic[0]) - degree) % 7]
    major_alter = ((pc - offset - NATURAL_PC[LETTERS.index(major_letter)] + 6) % 12) - 6
    fifths = LETTER_FIFTHS[major_letter] + 7 * major_alter
    if abs(fifths) > 7:
        raise KeyNameError(f"key {text!r} would need {abs(fifths)} sharps or flats; use its enharmonic twin")
    if fifths >= 0:
        signature = {letter: 1 for letter in "FCGDAEB"[:fifths]}
    else:
        signature = {letter: -1 for letter in "BEADGCF"[:-fifths]}
    return Key(tonic + mode, tonic, mode, pc, mode in MINOR_MODES, fifths, signature)


def key_signature(key: str) -> dict[str, int]:
    """Letter -> alteration in semitones for a key (``"Ador"`` -> ``{"F": 1}``; C major -> ``{}``).

    Raises:
        KeyNameError: see :func:`parse_key`.
    """
    return dict(parse_key(key).signature)


def key_profile(tonic: int, minor: bool) -> np.ndarray:
    """The Krumhansl-Kessler profile of a key, rotated so that index 0 is pitch class C.

    Args:
        tonic: the tonic's pitch class, e.g. from :func:`tonic_and_mode`.
        minor: use the minor profile (for every mode in :data:`MINOR_MODES`).
    """
    return np.roll(KK_MINOR if minor else KK_MAJOR, tonic)
