"""ABC notation: the header dataclass, a normaliser for the corpus and the canonical form.

The generator reads and writes a *canonical* ABC dialect that this module defines, because a
language model learns a regular notation far more easily than the many hand-typed styles of the
printed collections, and because the bar-aware decoder needs every symbol to have a known length:

* headers ``M:``, ``L:1/8`` (always), ``R:`` (when known), ``K:`` (tonic plus mode);
* notes are one symbol each: accidental, pitch letter, octave marks, explicit length in eighths
  (``^F``, ``c'2``, ``B,3/2``, ``e/2``); rests are ``z`` plus a length;
* chords are reduced to their highest note, broken rhythm (``A>B``) is written out as lengths,
  triplets are ``(3`` followed by three notes, ties/slurs/decorations/grace notes/chord symbols
  are gone;
* bar lines come from a closed set (:data:`BAR_TOKENS`) and one is inserted where a source line
  ends on a full bar without one (the Essen files do that).

The hand-written lexer exists because music21's ABC reader is far too slow to run over 13,000
tunes in seconds and does not give back a symbol stream to train on; music21 is still the judge
of whether a generated tune parses (see :mod:`tunesmith.generator.quality`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

from tunesmith.music.keys import (
    LETTERS,
    NATURAL_PC,
    KeyNameError,
    key_profile,
    key_signature,
    split_key,
    tonic_and_mode,
)

UNIT = Fraction(1, 8)  # the canonical default note length, L:1/8

BAR_TOKENS = ("|", "||", "|]", "|:", ":|", "::", "[1", "[2")
SECTION_END = frozenset({":|", "::", "||", "|]"})  # a short bar may stand before these
SECTION_START = frozenset({"|:", "::", "||", ":|"})  # ... or after these (a pickup)
TUPLET = "(3"
_ALTER = {"": 0, "^": 1, "^^": 2, "_": -1, "__": -2, "=": 0}  # accidental -> semitones

_NOTE_RE = re.compile(r"(\^{1,2}|_{1,2}|=)?([A-Ga-g])([,']*)(\d*(?:/+\d*)?)")
CANON_NOTE_RE = re.compile(r"^(\^{1,2}|_{1,2}|=)?([A-Ga-g])([,']*)(\d*(?:/\d+)?)$")
CANON_REST_RE = re.compile(r"^z(\d*(?:/\d+)?)$")
_CANON_TOKEN_RE = re.compile(
    r"\(3|\|\]|\|\||\|:|:\||::|\[1|\[2|\||"
    r"(?:\^{1,2}|_{1,2}|=)?[A-Ga-g][,']*\d*(?:/\d+)?|z\d*(?:/\d+)?"
)


class NormaliseError(ValueError):
    """A tune uses notation the canonical form cannot express; the corpus skips such tunes."""


@dataclass(frozen=True)
class Header:
    """The musical headers that condition generation.

    Attributes:
        meter: time signature as written after ``M:``, e.g. ``"6/8"``.
        key: tonic plus optional mode as written after ``K:``, e.g. ``"D"``, ``"Em"``, ``"Ador"``.
        rhythm: tune type such as ``"jig"`` or ``"slip jig"``; ``None`` when unknown.
        unit: default note length; the canonical form always uses ``"1/8"``.
    """

    meter: str = "4/4"
    key: str = "D"
    rhythm: str | None = None
    unit: str = "1/8"

    def to_abc(self, title: str | None = None, index: int = 1) -> str:
        """Render the header block, ``K:`` last as ABC requires.

        Args:
            title: the ``T:`` line; omitted when ``None``.
            index: the ``X:`` reference number.

        Returns:
            The header lines joined by newlines, without a trailing newline.
        """
        lines = [f"X:{index}"]
        if title is not None:
            lines.append(f"T:{title}")
        lines += [f"M:{self.meter}", f"L:{self.unit}"]
        if self.rhythm:
            lines.append(f"R:{self.rhythm}")
        lines.append(f"K:{self.key}")
        return "\n".join(lines)

    @classmethod
    def from_abc(cls, text: str) -> Header:
        """Read a header block back (the inverse of :meth:`to_abc`), e.g. one a program sent.

        Unlike :func:`read_tune`, which fills in a missing meter or key for a tune already in the
        canonical form, this refuses them: a header written by someone else that leaves out ``M:``
        or ``K:`` is a mistake to report, and any default would generate a tune nobody asked for.
        Values are taken as written (``"Dmaj"`` stays ``"Dmaj"``): canonicalising and checking
        them belongs to the model that will use them.

        Args:
            text: ABC header lines (``M:``, ``K:``, optionally ``L:`` and ``R:``; others are
                ignored), or a whole tune, whose body is ignored.

        Raises:
            ValueError: when the ``M:`` or ``K:`` line is missing; the message quotes ``text``.
        """
        fields, _ = split_tune(text)
        if "M" not in fields or "K" not in fields:
            raise ValueError(f"{text!r} needs M: and K: lines")
        return cls(meter=fields["M"], key=fields["K"], rhythm=fields.get("R") or None, unit=fields.get("L", "1/8"))

    def tokens(self) -> list[str]:
        """The conditioning symbols that open every training sequence: meter, key, rhythm.

        Returns:
            ``["M:<meter>", "K:<key>", "R:<rhythm or none>"]``; spaces in a rhythm become ``-``
            so that each header is one whitespace-free symbol.
        """
        rhythm = (self.rhythm or "none").replace(" ", "-")
        return [f"M:{self.meter}", f"K:{self.key}", f"R:{rhythm}"]

    @property
    def bar_length(self) -> Fraction:
        """The length of one full bar as a fraction of a whole note."""
        return meter_length(self.meter)


def meter_length(meter: str) -> Fraction:
    """Length of a full bar of ``meter`` in whole notes (``"6/8"`` -> 3/4, ``"C"`` -> 1).

    Raises:
        NormaliseError: for ``none``, free or compound meters such as ``"2/4 3/4"``.
    """
    meter = meter.strip()
    if meter == "C":
        return Fraction(1)
    if meter == "C|":
        return Fraction(1)
    m = re.fullmatch(r"(\d+)/(\d+)", meter)
    if not m or int(m.group(1)) == 0 or int(m.group(2)) == 0:
        raise NormaliseError(f"unsupported meter {meter!r}")
    return Fraction(int(m.group(1)), int(m.group(2)))


def canonical_meter(meter: str) -> str:
    """``C`` -> ``4/4``, ``C|`` -> ``2/2``, anything else checked and stripped."""
    meter = meter.strip()
    if meter == "C":
        return "4/4"
    if meter == "C|":
        return "2/2"
    meter_length(meter)
    return meter


def canonical_key(key: str) -> str:
    """Reduce a ``K:`` value to tonic plus mode suffix (``"A Dorian"`` -> ``"Ador"``).

    What follows the key name (a clef, a comment) is ignored; the name is read by
    :func:`tunesmith.music.keys.split_key`.

    Raises:
        NormaliseError: for keys without a tonic (``K:HP``, ``K:none``) or unknown modes.
    """
    key = key.split("%")[0].strip()
    try:
        tonic, mode = split_key(key, allow_trailing=True)
    except KeyNameError:
        raise NormaliseError(f"unsupported key {key!r}") from None
    return tonic + mode


def parse_length(text: str) -> Fraction:
    """ABC length suffix -> multiple of the unit (``""`` 1, ``"3"`` 3, ``"/"`` 1/2, ``"3/2"``)."""
    if not text:
        return Fraction(1)
    if "/" not in text:
        return Fraction(int(text))
    num, _, rest = text.partition("/")
    slashes = 1 + len(rest) - len(rest.lstrip("/"))
    rest = rest.lstrip("/")
    numerator = int(num) if num else 1
    denominator = int(rest) if rest else 2 ** slashes
    return Fraction(numerator, denominator)


def format_length(units: Fraction) -> str:
    """Inverse of :func:`parse_length` in the canonical spelling (1 -> ``""``, 1/2 -> ``"/2"``)."""
    if units == 1:
        return ""
    if units.denominator == 1:
        return str(units.numerator)
    if units.numerator == 1:
        return f"/{units.denominator}"
    return f"{units.numerator}/{units.denominator}"


def _pitch_number(letter: str, octave: str) -> int:
    """Diatonic step number (C=0 ... B=6, c=7) for choosing the highest note of a chord."""
    step = "CDEFGAB".index(letter.upper()) + (7 if letter.islower() else 0)
    return step + 7 * octave.count("'") - 7 * octave.count(",")


def _canonical_pitch(letter: str, octave: str) -> str:
    number = _pitch_number(letter, octave)
    octave_index, step = divmod(number, 7)
    name = "CDEFGAB"[step]
    if octave_index <= 0:
        return name + "," * (-octave_index)
    return name.lower() + "'" * (octave_index - 1)


def _map_bar(text: str) -> list[str]:
    """Map a source bar line (``:|2``, ``|1``, ``[|``, ``:||:`` ...) onto :data:`BAR_TOKENS`."""
    m = re.fullmatch(r"(\[?)([:|\]\[]*?)(\d?)", text)
    ending = ""
    core = text
    if m and m.group(3):
        ending = m.group(3)
        core = text[: -len(ending)]
    core = core.replace("[|", "||").strip("[") or "|"
    left = core.startswith(":")
    right = core.endswith(":")
    if left and right:
        tokens = ["::"]
    elif left:
        tokens = [":|"]
    elif right:
        tokens = ["|:"]
    elif core.endswith("]"):
        tokens = ["|]"]
    elif core.count("|") >= 2:
        tokens = ["||"]
    else:
        tokens = ["|"]
    if ending:
        if ending not in ("1", "2"):
            raise NormaliseError(f"unsupported ending {text!r}")
        tokens.append("[" + ending)
    return tokens


_BODY_RE = re.compile(
    r"""
    (?P<space>\s+)
    |(?P<quote>"[^"]*")
    |(?P<deco>![^!\n]*!|\+[^+\n]*\+)
    |(?P<grace>\{[^}]*\})
    |(?P<field>\[[A-Za-z]:[^\]]*\])
    |(?P<bar>:*\[?\|[|\]]?:*\d?|::\d?|\[\d|:+)
    |(?P<chord>\[[^\]]*\](\d*(?:/+\d*)?))
    |(?P<tuplet>\(\d(?::\d*)*)
    |(?P<note>(?:\^{1,2}|_{1,2}|=)?[A-Ga-g][,']*\d*(?:/+\d*)?)
    |(?P<rest>[zx]\d*(?:/+\d*)?)
    |(?P<mrest>Z\d*)
    |(?P<broken>[<>]{1,3})
    |(?P<ignore>[()\-\\`.~HIJLMNOPRSTUVWYhijklmnopqrstuvwy*#$@;?]|\])
    """,
    re.VERBOSE,
)


def normalise_tune(text: str) -> tuple[Header, list[str]]:
    """Turn one raw ABC tune (``X:`` to the blank line) into a header and canonical symbols.

    Args:
        text: the tune as found in a corpus file.

    Returns:
        The musical header (rhythm only when ``R:`` names a known tune type) and the body as a
        list of canonical symbols (notes, rests, ``(3`` and bar tokens).

    Raises:
        NormaliseError: when the tune cannot be expressed canonically (no meter, meter or key
            changes, unusual tuplets, multi-voice, odd lengths, fewer than four bars ...).
    """
    fields: dict[str, str] = {}
    titles: list[str] = []
    body_lines: list[str] = []
    in_body = False
    unit: Fraction | None = None
    for raw in text.splitlines():
        line = raw.split("%", 1)[0].rstrip() if not raw.startswith("%%") else ""
        if not line.strip():
            continue
        field = re.match(r"^([A-Za-z]):(.*)$", line)
        if field:
            name, value = field.group(1), field.group(2).strip()
            if not in_body:
                if name == "T":
                    titles.append(value)
                elif name in "MLKR" and name not in fields:
                    fields[name] = value
                if name == "K":
                    in_body = True
                continue
            if name in "wWNPQIZ":
                continue
            if name in "LMKV":
                raise NormaliseError(f"{name}: change inside the tune")
            continue
        if in_body:
            body_lines.append(line)
    if "K" not in fields or "M" not in fields:
        raise NormaliseError("missing K: or M:")
    meter = canonical_meter(fields["M"])
    key = canonical_key(fields["K"])
    unit_text = fields.get("L", "")
    if unit_text:
        m = re.fullmatch(r"\s*(\d+)/(\d+)\s*", unit_text)
        if not m:
            raise NormaliseError(f"unsupported unit {unit_text!r}")
        unit = Fraction(int(m.group(1)), int(m.group(2)))
    else:
        unit = Fraction(1, 16) if meter_length(meter) < Fraction(3, 4) else Fraction(1, 8)
    rhythm = rhythm_name(fields.get("R", ""), titles)
    symbols = _lex_body(body_lines, unit, meter_length(meter))
    header = Header(meter=meter, key=modal_key(key, symbols), rhythm=rhythm)
    return header, symbols


# final note's diatonic step above a major key's tonic -> the mode that makes it the tonic
_FINAL_MODES = {5: "m", 1: "dor", 4: "mix"}


def modal_key(key: str, symbols: list[str]) -> str:
    """Name the mode of a tune written under a major key signature from its final note.

    Many encodings (the Essen files above all) write only the key *signature* in ``K:``, so a
    tune in E minor reads ``K:G``. Folk tunes end on their tonic, so a final note on the sixth
    degree makes it minor, on the second Dorian, on the fifth Mixolydian. The signature - and
    so every written accidental - stays the same; only the name changes.

    Args:
        key: canonical key (tonic plus mode suffix).
        symbols: canonical body symbols.

    Returns:
        The key, renamed when it was major and the tune ends on one of those degrees.
    """
    if key[1:].lstrip("#b"):
        return key
    notes = [s for s in symbols if CANON_NOTE_RE.match(s)]
    if not notes:
        return key
    last = CANON_NOTE_RE.match(notes[-1])
    if last.group(1):  # an explicit accidental on the last note: leave the key alone
        return key
    step = ("CDEFGAB".index(last.group(2).upper()) - "CDEFGAB".index(key[0])) % 7
    mode = _FINAL_MODES.get(step)
    if mode is None:
        return key
    # the tonic of the mode is the final note's letter with the key signature's alteration
    letter = last.group(2).upper()
    candidate = letter + {1: "#", -1: "b"}.get(_major_signature(key).get(letter, 0), "") + mode
    # trust the final note only when the notes themselves fit the new key better
    hist = _pitch_classes(symbols, key)
    if _fit(hist, candidate) > _fit(hist, key):
        return candidate
    return key


def _major_signature(key: str) -> dict[str, int]:
    """The key signature of a major key as written in a source, empty when none can write it.

    A source may name a major key no signature has (``K:G#``); its notes are then read as written.
    """
    try:
        return key_signature(key)
    except KeyNameError:
        return {}


def _pitch_classes(symbols: list[str], key: str) -> list[float]:
    """Duration-weighted pitch-class histogram (accidentals not carried through the bar)."""
    signature = _major_signature(key)
    hist = [0.0] * 12
    for symbol in symbols:
        m = CANON_NOTE_RE.match(symbol)
        if not m:
            continue
        letter = m.group(2).upper()
        shift = _ALTER[m.group(1)] if m.group(1) else signature.get(letter, 0)
        hist[(NATURAL_PC[LETTERS.index(letter)] + shift) % 12] += float(parse_length(m.group(4)))
    return hist


def _fit(hist: list[float], key: str) -> float:
    """Correlation of a histogram with the Krumhansl-Kessler profile of a key (modes -> maj/min)."""
    prof = [float(p) for p in key_profile(*tonic_and_mode(key))]
    n = 12
    mh, mp = sum(hist) / n, sum(prof) / n
    cov = sum((h - mh) * (p - mp) for h, p in zip(hist, prof))
    vh = sum((h - mh) ** 2 for h in hist) ** 0.5
    vp = sum((p - mp) ** 2 for p in prof) ** 0.5
    return cov / (vh * vp) if vh and vp else 0.0


RHYTHMS = {
    "reel": "reel", "double jig": "jig", "single jig": "jig", "jig": "jig",
    "slip jig": "slip jig", "slipjig": "slip jig", "hop jig": "slip jig", "hornpipe": "hornpipe",
    "strathspey": "strathspey", "waltz": "waltz", "polka": "polka", "march": "march",
    "quickstep": "march", "quick step": "march", "air": "air", "slide": "slide",
    "clog": "hornpipe", "highland fling": "strathspey", "fling": "strathspey",
    "schottische": "schottische", "mazurka": "mazurka", "set dance": "set dance",
}


def rhythm_name(value: str, titles: list[str] | tuple[str, ...] = ()) -> str | None:
    """Map an ``R:`` value (or, failing that, a ``-- Polka`` style title suffix) to a tune type.

    Returns:
        One of the values of :data:`RHYTHMS`, or ``None`` for anything else (the Essen genre
        words, empty fields).
    """
    value = value.strip().lower()
    if value in RHYTHMS:
        return RHYTHMS[value]
    for title in titles:
        m = re.search(r"--\s*([A-Za-z ]+?)\.?\s*$", title)
        if m and m.group(1).strip().lower() in RHYTHMS:
            return RHYTHMS[m.group(1).strip().lower()]
    return None


def _lex_body(lines: list[str], unit: Fraction, bar_length: Fraction) -> list[str]:
    """Lex body lines into canonical symbols; see :func:`normalise_tune`."""
    # events: [kind, payload, length in whole notes, tuplet flag]
    events: list[list] = []
    pending_broken: Fraction | None = None
    tuplet_left = 0
    for line in lines:
        pos = 0
        while pos < len(line):
            m = _BODY_RE.match(line, pos)
            if not m:
                raise NormaliseError(f"cannot read {line[pos:pos + 10]!r}")
            pos = m.end()
            kind = m.lastgroup
            token = m.group(0)
            if kind in ("space", "quote", "deco", "grace", "ignore"):
                continue
            if kind == "field":
                if token[1] in "KMLV":
                    raise NormaliseError("inline field change")
                continue
            if kind == "bar":
                if set(token) <= {":"}:
                    continue
                if tuplet_left:
                    raise NormaliseError("bar line inside a triplet")
                for bar in _map_bar(token):
                    events.append(["bar", bar, Fraction(0), False])
                continue
            if kind == "tuplet":
                spec = token[1:].split(":")
                if spec[0] != "3" or any(s not in ("", "2", "3") for s in spec[1:]):
                    raise NormaliseError(f"unsupported tuplet {token!r}")
                if tuplet_left:
                    raise NormaliseError("nested tuplet")
                events.append(["tuplet", TUPLET, Fraction(0), False])
                tuplet_left = 3
                continue
            if kind == "broken":
                if not events or events[-1][0] not in ("note", "rest"):
                    raise NormaliseError("broken rhythm without a note")
                n = len(token)
                short = Fraction(1, 2 ** n)
                long_ = 2 - short
                first, second = (long_, short) if token[0] == ">" else (short, long_)
                events[-1][2] *= first
                pending_broken = second
                continue
            if kind == "mrest":
                count = int(token[1:] or 1)
                for _ in range(count):
                    events.append(["rest", "z", bar_length, False])
                    events.append(["bar", "|", Fraction(0), False])
                continue
            if kind == "note":
                nm = _NOTE_RE.fullmatch(token)
                pitch = (nm.group(1) or "") + _canonical_pitch(nm.group(2), nm.group(3))
                length = parse_length(nm.group(4)) * unit
            elif kind == "rest":
                pitch = "z"
                length = parse_length(token[1:]) * unit
            else:  # chord: keep the highest note
                inner = token[1: token.rindex("]")]
                notes = list(_NOTE_RE.finditer(inner))
                if not notes:
                    raise NormaliseError("empty chord")
                top = max(notes, key=lambda n: _pitch_number(n.group(2), n.group(3)))
                pitch = (top.group(1) or "") + _canonical_pitch(top.group(2), top.group(3))
                length = parse_length(notes[0].group(4)) * parse_length(m.group("chord")[len(inner) + 2:]) * unit
                kind = "note"
            if pending_broken is not None:
                length *= pending_broken
                pending_broken = None
            in_tuplet = tuplet_left > 0
            if in_tuplet:
                tuplet_left -= 1
            events.append([kind, pitch, length, in_tuplet])
    if tuplet_left:
        raise NormaliseError("unfinished triplet")
    return _to_symbols(events, bar_length)


def _to_symbols(events: list[list], bar_length: Fraction) -> list[str]:
    symbols: list[str] = []
    fill = Fraction(0)
    for kind, payload, length, in_tuplet in events:
        if kind == "bar":
            if fill == 0 and symbols and symbols[-1] in BAR_TOKENS and not payload.startswith("["):
                # two bar lines in a row: keep the stronger one
                prev = symbols.pop()
                payload = _merge_bars(prev, payload)
            symbols.append(payload)
            fill = Fraction(0)
            continue
        # a full bar that runs straight into the next note (a source line ending without a
        # bar line, as in the Essen files) gets its bar line
        if fill == bar_length:
            symbols.append("|")
            fill = Fraction(0)
        if kind == "tuplet":
            symbols.append(TUPLET)
            continue
        units = length / UNIT
        if units.denominator not in (1, 2, 4, 8) or units <= 0:
            raise NormaliseError(f"unsupported length {length}")
        symbols.append(payload + format_length(units))
        fill += length * (Fraction(2, 3) if in_tuplet else 1)
    while symbols and symbols[0] in ("|", "||"):
        symbols.pop(0)
    if not symbols:
        raise NormaliseError("empty tune")
    if symbols[-1] not in BAR_TOKENS:
        symbols.append("|]")
    elif symbols[-1] == "|":
        symbols[-1] = "|]"
    if sum(1 for s in symbols if s in BAR_TOKENS) < 4:
        raise NormaliseError("fewer than four bars")
    return symbols


def _merge_bars(first: str, second: str) -> str:
    if first.startswith("[") or second.startswith("["):
        return second if second.startswith("[") else first
    pair = {first, second}
    if pair == {":|", "|:"}:
        return "::"
    for strong in ("::", ":|", "|:", "|]", "||"):
        if strong in pair:
            return strong
    return "|"


# ---------------------------------------------------------------------------------------------
# the canonical form: symbol lengths, rendering, reading back


def symbol_length(symbol: str) -> Fraction | None:
    """Nominal length of a canonical note or rest in eighths, ``None`` for other symbols.

    A note inside a triplet sounds for two thirds of this; see :func:`bars_of`.
    """
    m = CANON_NOTE_RE.match(symbol)
    if m:
        return parse_length(m.group(4))
    m = CANON_REST_RE.match(symbol)
    if m:
        return parse_length(m.group(1))
    return None


def timed(symbols: list[str]) -> Iterator[tuple[str, Fraction | None]]:
    """Each bar line (length ``None``) and each note or rest with the length it lasts, in eighths.

    A triplet mark makes the next three notes last two thirds of their written length; the mark
    itself and anything that is neither a note, a rest nor a bar line are left out.
    """
    tuplet_left = 0
    for symbol in symbols:
        if symbol in BAR_TOKENS:
            yield symbol, None
            continue
        if symbol == TUPLET:
            tuplet_left = 3
            continue
        length = symbol_length(symbol)
        if length is None:
            continue
        if tuplet_left:
            length, tuplet_left = length * Fraction(2, 3), tuplet_left - 1
        yield symbol, length


def bars_of(symbols: list[str]) -> list[tuple[Fraction, str | None, str | None]]:
    """Split a canonical body into bars.

    Args:
        symbols: canonical body symbols.

    Returns:
        One ``(length in eighths, bar line before, bar line after)`` per bar; ``None`` stands for
        the start or an unterminated end of the tune.
    """
    bars = []
    fill = Fraction(0)
    before: str | None = None
    content = False
    for symbol, length in timed(symbols):
        if length is None:  # a bar line
            if symbol in ("[1", "[2"):
                continue
            if content or fill:
                bars.append((fill, before, symbol))
            before = symbol
            fill = Fraction(0)
            content = False
            continue
        fill += length
        content = True
    if content:
        bars.append((fill, before, None))
    return bars


def bar_checks(symbols: list[str], meter: str) -> list[bool]:
    """Whether each bar is right: full, or short only as a pickup / at a section boundary.

    Args:
        symbols: canonical body symbols.
        meter: the tune's meter.

    Returns:
        One boolean per bar, in order.
    """
    full = meter_length(meter) / UNIT
    checks = []
    for fill, before, after in bars_of(symbols):
        if fill == full:
            checks.append(True)
        elif fill < full:
            boundary = before is None or before in SECTION_START or after is None or after in SECTION_END
            checks.append(boundary)
        else:
            checks.append(False)
    return checks


def read_body(body: str) -> list[str]:
    """Split a canonical ABC body back into symbols (the inverse of :func:`render_body`)."""
    return _CANON_TOKEN_RE.findall(body)


def render_body(symbols: list[str], meter: str, bars_per_line: int = 4) -> str:
    """Write canonical symbols as readable ABC: beamed by beat, four bars a line.

    Args:
        symbols: canonical body symbols.
        meter: the tune's meter, which sets the beat used for beaming.
        bars_per_line: bar lines per output line.

    Returns:
        The body text.
    """
    try:
        bar = meter_length(meter) / UNIT
    except NormaliseError:
        bar = Fraction(8)
    num = int(meter.split("/")[0]) if "/" in meter else 4
    beat = Fraction(3) if (num % 3 == 0 and num > 3 and meter.endswith("/8")) else Fraction(2)
    if meter.endswith("/2"):
        beat = Fraction(4)
    out: list[str] = []
    fill = Fraction(0)
    bars = 0
    tuplet_left = 0
    for symbol in symbols:
        if symbol in BAR_TOKENS:
            if symbol in ("[1", "[2"):
                out.append(symbol)
                continue
            out.append(f" {symbol}")
            fill = Fraction(0)
            bars += 1
            if bars % bars_per_line == 0:
                out.append("\n")
            else:
                out.append(" ")
            continue
        if symbol == TUPLET:
            if out and fill and fill % beat == 0 and not out[-1].endswith((" ", "\n")):
                out.append(" ")
            out.append(symbol)
            tuplet_left = 3
            continue
        length = symbol_length(symbol) or Fraction(0)
        if tuplet_left:
            length *= Fraction(2, 3)
            tuplet_left -= 1
        elif fill and fill % beat == 0 and out and not out[-1].endswith((" ", "\n")):
            out.append(" ")
        out.append(symbol)
        fill += length
        if fill > bar:
            fill = bar
    return "".join(out).strip() + "\n"


def render_tune(header: Header, symbols: list[str], title: str | None = None, index: int = 1) -> str:
    """A complete canonical tune: :meth:`Header.to_abc` then :func:`render_body`."""
    return header.to_abc(title=title, index=index) + "\n" + render_body(symbols, header.meter)


def split_tune(abc: str) -> tuple[dict[str, str], str]:
    """Separate a tune into its header fields and body text.

    Returns:
        ``({"M": ..., "K": ..., ...}, body)`` where the body is everything after ``K:``.
    """
    fields: dict[str, str] = {}
    body: list[str] = []
    in_body = False
    for line in abc.splitlines():
        if not in_body:
            m = re.match(r"^([A-Za-z]):(.*)$", line)
            if m:
                fields.setdefault(m.group(1), m.group(2).strip())
                if m.group(1) == "K":
                    in_body = True
            continue
        body.append(line)
    return fields, "\n".join(body)


DANCE_BARS_PER_MINUTE = {"reel": (50.0, 60.0), "jig": (50.0, 62.0), "hornpipe": (35.0, 45.0), "slip jig": (36.0, 45.0)}
"""Usual dance tempos in bars per minute: reel 100-120 half notes, jig 100-125 dotted quarters,
hornpipe 70-90 half notes, slip jig 108-135 dotted quarters per minute. Bars (not quarter notes)
because the corpus writes reels and hornpipes both in 2/2 with eighths and in 2/4 with sixteenths:
a bar is the same stretch of music either way."""


def dance_tempo(abc: str) -> int | None:
    """The tempo to play a dance tune at: the middle of its rhythm's usual range.

    A reel played at a synthesizer's all-purpose 120 quarter notes per minute runs at 30 bars a
    minute, half its dance speed, and sounds (to people and to the style classifier) like a
    hornpipe; this gives each rhythm its own speed.

    Args:
        abc: an ABC tune; its ``R:`` field names the rhythm, its ``M:`` field converts bars to
            quarter notes.

    Returns:
        Quarter notes per minute (a 2/2 reel 220, a 6/8 jig 168, a 9/8 slip jig 182), or ``None``
        when the rhythm is not in :data:`DANCE_BARS_PER_MINUTE` or the meter is unreadable.
    """
    fields, _ = split_tune(abc if isinstance(abc, str) else "")
    rhythm = " ".join((fields.get("R") or "").replace("-", " ").lower().split())
    if rhythm not in DANCE_BARS_PER_MINUTE:
        return None
    try:
        quarters_per_bar = 4 * meter_length(fields.get("M", "4/4"))
    except NormaliseError:
        return None
    low, high = DANCE_BARS_PER_MINUTE[rhythm]
    return round((low + high) / 2 * quarters_per_bar)


def read_tune(abc: str) -> tuple[Header, list[str]]:
    """Read a canonical tune back into its header and symbols."""
    fields, body = split_tune(abc)
    header = Header(meter=fields.get("M", "4/4"), key=fields.get("K", "C"), rhythm=fields.get("R") or None)
    return header, read_body(body)
