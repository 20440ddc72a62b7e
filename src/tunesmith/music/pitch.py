"""Pitch in a canonical tune: the sounding pitch of each note, and transposition to another key.

Both follow ABC's rule that an accidental holds to the end of the bar for the same letter and
octave, on top of the key signature. Transposition augments the training data (every tune in
several keys); :func:`pitches` feeds the quality and realism measures.
"""

from __future__ import annotations

from tunesmith.music.abc import (
    _ALTER,
    BAR_TOKENS,
    CANON_NOTE_RE,
    CANON_REST_RE,
    Header,
    NormaliseError,
    _pitch_number,
)
from tunesmith.music.keys import LETTERS, NATURAL_PC, KeyNameError, key_signature, split_key, tonic_pc

_ALTER_TEXT = {1: "^", 2: "^^", -1: "_", -2: "__", 0: "="}


def transposed_key(key: str, semitones: int) -> str:
    """The key ``semitones`` higher, spelt with the simplest signature (``"D", 2`` -> ``"E"``)."""
    tonic, mode = split_key(key)
    target_pc = (tonic_pc(tonic) + semitones) % 12
    best = None
    for letter in LETTERS:
        for accidental in ("", "#", "b"):
            candidate = letter + accidental + mode
            if tonic_pc(letter + accidental) != target_pc:
                continue
            try:
                size = len(key_signature(candidate))
            except KeyNameError:
                continue
            if best is None or size < best[0]:
                best = (size, candidate)
    if best is None:
        raise NormaliseError(f"cannot transpose {key!r} by {semitones}")
    return best[1]


def transpose(header: Header, symbols: list[str], semitones: int) -> tuple[Header, list[str]]:
    """Transpose a canonical tune, respelling accidentals for the new key signature.

    Accidentals hold to the end of the bar for the same letter and octave, in the source as in
    the result, so both are tracked bar by bar.

    Args:
        header: the tune's header.
        symbols: canonical body symbols.
        semitones: interval, positive is up.

    Returns:
        The new header (only the key differs) and symbols.

    Raises:
        NormaliseError: when a note would need a triple sharp or flat.
    """
    new_key = transposed_key(header.key, semitones)
    steps = (LETTERS.index(new_key[0]) - LETTERS.index(header.key[0])) % 7
    if semitones < 0 and steps:
        steps -= 7
    if semitones >= 0 and steps == 0 and semitones > 6:
        steps = 7
    try:
        source_sig = key_signature(header.key)
    except KeyNameError as exc:
        raise NormaliseError(str(exc)) from None
    target_sig = key_signature(new_key)
    source_carry: dict[tuple[str, int], int] = {}
    target_carry: dict[tuple[str, int], int] = {}
    out = []
    for symbol in symbols:
        if symbol in BAR_TOKENS:
            source_carry.clear()
            target_carry.clear()
            out.append(symbol)
            continue
        m = CANON_NOTE_RE.match(symbol)
        if not m:
            out.append(symbol)
            continue
        accidental, letter, octave, length = m.groups()
        number = _pitch_number(letter, octave)
        base = letter.upper()
        if accidental:
            alter = _ALTER[accidental]
            source_carry[(base, number)] = alter
        else:
            alter = source_carry.get((base, number), source_sig.get(base, 0))
        semitone = 12 * (number // 7) + NATURAL_PC[number % 7] + alter + semitones
        new_number = number + steps
        new_base = LETTERS[new_number % 7]
        new_alter = semitone - (12 * (new_number // 7) + NATURAL_PC[new_number % 7])
        if abs(new_alter) > 2:
            raise NormaliseError("transposition needs a triple accidental")
        expected = target_carry.get((new_base, new_number), target_sig.get(new_base, 0))
        text = ""
        if new_alter != expected:
            text = _ALTER_TEXT[new_alter]
            target_carry[(new_base, new_number)] = new_alter
        octave_index, step = divmod(new_number, 7)
        name = LETTERS[step]
        pitch = name + "," * (-octave_index) if octave_index <= 0 else name.lower() + "'" * (octave_index - 1)
        out.append(text + pitch + length)
    return Header(meter=header.meter, key=new_key, rhythm=header.rhythm, unit=header.unit), out


def pitches(header: Header, symbols: list[str]) -> list[tuple[int | None, str]]:
    """Sounding pitch (semitones, middle C = 60; ``None`` for rests) and written length per note.

    Key signature and accidentals held through the bar are applied; triplet marks and bar lines
    are left out.
    """
    try:
        signature = key_signature(header.key)
    except KeyNameError:
        signature = {}
    carry: dict[tuple[str, int], int] = {}
    out: list[tuple[int | None, str]] = []
    for symbol in symbols:
        if symbol in BAR_TOKENS:
            carry.clear()
            continue
        rest = CANON_REST_RE.match(symbol)
        if rest:
            out.append((None, rest.group(1)))
            continue
        m = CANON_NOTE_RE.match(symbol)
        if not m:
            continue
        accidental, letter, octave, length = m.groups()
        number = _pitch_number(letter, octave)
        base = letter.upper()
        if accidental:
            carry[(base, number)] = _ALTER[accidental]
        alter = carry.get((base, number), signature.get(base, 0))
        out.append((60 + 12 * (number // 7) + NATURAL_PC[number % 7] + alter, length))
    return out
