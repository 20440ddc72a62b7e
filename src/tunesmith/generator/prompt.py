"""Turn a free-text request ("a lively jig in D major") into the headers that condition generation.

This is a small keyword parser on purpose and stays behind one function, :func:`parse_prompt`:
a later stage swaps it for an embedding-based encoder without touching the generator. It never
raises on text; whatever it does not recognise falls back to :data:`DEFAULT`.
"""

from __future__ import annotations

import re

from tunesmith.music.abc import Header

DEFAULT = Header(meter="4/4", key="D", rhythm=None)

# tune type -> usual meter; longer names first so "slip jig" wins over "jig". Reels and
# hornpipes are 2/2: the corpus writes them in 2/2 or 2/4 (with L:1/8, 2/2 is the same bars in
# eighths), never in 4/4, so a 4/4 "reel" would ask the generator for a pairing it never saw.
RHYTHM_METERS = {
    "slip jig": "9/8",
    "single jig": "6/8",
    "double jig": "6/8",
    "jig": "6/8",
    "reel": "2/2",
    "hornpipe": "2/2",
    "strathspey": "4/4",
    "waltz": "3/4",
    "polka": "2/4",
    "march": "2/4",
    "slide": "12/8",
    "mazurka": "3/4",
    "schottische": "4/4",
    "air": "3/4",
}
_RHYTHM_NAMES = {"single jig": "jig", "double jig": "jig", "slipjig": "slip jig"}

_MODE_WORDS = {
    "major": "", "maj": "", "ionian": "",
    "minor": "m", "min": "m", "m": "m", "aeolian": "m",
    "dorian": "dor", "dor": "dor", "mixolydian": "mix", "mix": "mix",
    "lydian": "lyd", "phrygian": "phr", "locrian": "loc",
}
_ACCIDENTALS = {"#": "#", "sharp": "#", "♯": "#", "b": "b", "flat": "b", "♭": "b"}

_ACC = r"(?:\s*(#|♯|♭|sharp|flat|b(?![a-z])))?"
_MODE = r"(?:\s*(major|minor|maj|min|dorian|dor|mixolydian|mix|lydian|phrygian|locrian|aeolian|ionian|m(?![a-z])))?"
_KEY_AFTER_IN = re.compile(r"\b(?:in|key of)\s+(?:the\s+)?([A-Ga-g])(?![a-z#♯♭])" + _ACC + _MODE, re.IGNORECASE)
_KEY_WITH_MODE = re.compile(r"\b([A-G])" + _ACC + r"\s*(major|minor|dorian|mixolydian|lydian|phrygian|locrian)\b")
_KEY_SYMBOL = re.compile(r"(?<![\w/])([A-G])(#|b)?(m|dor|mix)?(?![\w/#])")
_METER = re.compile(r"\b(\d{1,2})\s*/\s*(\d{1,2})\b")


def parse_prompt(text: str) -> Header:
    """Read meter, key and tune type from a request.

    Args:
        text: free text such as ``"a slow waltz in A minor"`` or ``"reel, Em"``.

    Returns:
        The :class:`~tunesmith.music.abc.Header` to generate with. A named tune type sets the rhythm and
        its usual meter; an explicit ``6/8`` overrides the meter; the key defaults to D major and
        the meter to 4/4.

    Examples:
        >>> parse_prompt("a lively jig in D major")
        Header(meter='6/8', key='D', rhythm='jig', unit='1/8')
        >>> parse_prompt("a slow waltz in A minor")
        Header(meter='3/4', key='Am', rhythm='waltz', unit='1/8')
    """
    if not isinstance(text, str):
        text = str(text)
    lowered = text.lower()
    rhythm = None
    meter = DEFAULT.meter
    for name, usual in RHYTHM_METERS.items():
        # whole words only, and not part of a hyphenated word ("an open-air dance" is no air)
        if re.search(r"(?<![\w-])" + name.replace(" ", r"\s*") + r"s?(?![\w-])", lowered):
            rhythm = _RHYTHM_NAMES.get(name, name)
            meter = usual
            break
    m = _METER.search(text)
    if m and int(m.group(1)) > 0 and int(m.group(2)) in (1, 2, 4, 8, 16):
        meter = f"{int(m.group(1))}/{int(m.group(2))}"
    elif re.search(r"\bcommon time\b", lowered):
        meter = "4/4"
    return Header(meter=meter, key=_key(text) or DEFAULT.key, rhythm=rhythm)


def _key(text: str) -> str | None:
    # a lower-case letter after "in" is a key only with an accidental or mode, or at the end of a
    # phrase ("polka in g"); "a reel in a hurry" is not in A
    candidates = [
        m for m in _KEY_AFTER_IN.finditer(text)
        if m.group(1).isupper() or m.group(2) or m.group(3) or text[m.end():].strip()[:1] in ("", ",", ".", "!", ";", ")")
    ]
    m = candidates[0] if candidates else _KEY_WITH_MODE.search(text)
    if m:
        tonic = m.group(1).upper()
        accidental = _ACCIDENTALS.get((m.group(2) or "").lower(), "")
        mode = _MODE_WORDS.get((m.group(3) or "").lower(), "")
        return tonic + accidental + mode
    for m in _KEY_SYMBOL.finditer(text):
        if m.group(2) or m.group(3) or m.start() > 0:
            return m.group(1) + (m.group(2) or "") + (m.group(3) or "")
    return None
