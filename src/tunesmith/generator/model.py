"""Generate folk tunes with the trained model, optionally with bar-aware decoding.

Every token of the canonical ABC vocabulary has a known length (see :mod:`tunesmith.music.abc`), so
the decoder can keep count of the current bar and mask what would break it:

* notes and rests longer than what is left of the bar are masked;
* a bar line is the only choice once the bar is full, and is not allowed before (except to close
  a pickup bar, or a short bar at a section end that pairs with that pickup);
* triplets are three notes of one length and never cross a bar line;
* after the requested number of bars the tune ends with ``|]`` (or ``:|``) and ``</s>``;
* header tokens (inline key or meter changes) and first/second-ending marks are never sampled;
* a soft key prior (:data:`KEY_WEIGHT`) favours notes that weigh heavily in the requested key's
  Krumhansl-Kessler profile (:func:`tunesmith.music.keys.key_profile`, the one the quality measures
  score against), so the tune centres on the requested tonic rather than on another mode of the
  same key signature.

``constrained=False`` keeps plain sampling (no masks, no key prior; it only stops at ``</s>`` or
after the requested number of bar lines) so the difference can be shown.

The sampling loop is written here rather than using ``model.generate`` because each row of a
batch must draw from its own seeded ``torch.Generator``: a tune then depends only on its own
header, seed and settings, never on which other requests share the batch.

Two loops run it (:data:`LOOPS`). ``"fast"``, the default, steps the model with
:class:`tunesmith.generator.decode.LlamaStep` (plain torch over a preallocated key/value cache) and
applies the bar rules and the key prior as one precomputed score row per distinct bar state, so a
step costs little more than the model's arithmetic. ``"transformers"`` calls the model's own
forward pass with its cache and applies :class:`BarConstraint` as a ``LogitsProcessor`` each step:
the reference. Both give the same tune, token for token, for the same header, seed and settings.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from tunesmith.generator.decode import LlamaStep, UnsupportedModel, scripted

from tunesmith.music.abc import (
    BAR_TOKENS,
    TUPLET,
    UNIT,
    Header,
    NormaliseError,
    CANON_NOTE_RE,
    _lex_body,
    _pitch_number,
    canonical_key,
    canonical_meter,
    format_length,
    meter_length,
    render_tune,
    split_tune,
    symbol_length,
)
from tunesmith.generator.tokenizer import header_ids
from tunesmith.music.keys import LETTERS, NATURAL_PC, key_profile, parse_key


TICKS = 24  # integer ticks per eighth note: exact for triplets of lengths down to /8
PLAIN_BARS = ("|",)
END_BARS = ("|]", ":|")
SECTION_BARS = (":|", "||", "::")
MAX_BARS = 64
# Strength of the key prior in bar-aware decoding: note scores get KEY_WEIGHT x the log
# Krumhansl-Kessler weight of their pitch class in the requested key. Measured on 48 seeded
# tunes with the shipped checkpoint: 0 -> key correlation 0.66 (key followed 38%), 1 -> 0.83
# (85%), 2 -> 0.91 (96%, more tonal than real tunes, 0.79); 1 is the default.
KEY_WEIGHT = 1.0
LOOPS = ("fast", "transformers")  # the decoding loops, see the module docstring; the first is the default
_MEMO_LIMIT = 20_000  # score rows kept between calls (3 KB each); the memo starts over beyond it


@dataclass
class _RowState:
    bar: int  # ticks in a full bar
    bars_wanted: int
    fill: int = 0
    bars_done: int = 0
    first_bar: bool = True
    pickup: int = 0
    expect_pickup: bool = False
    tuplet_left: int = 0
    tuplet_len: int = 0
    ended: bool = False  # the final bar line has been written
    finished: bool = False  # </s> has been written


@functools.lru_cache(maxsize=8)
def _token_tables(tokenizer) -> dict:
    """Per-token facts :class:`BarConstraint` reads (shared, never written): lengths in ticks, bar
    lines, triplet marks, pitches. Building them parses every token (about 20 ms), so it is done once
    per tokenizer rather than once per call."""
    vocab = tokenizer.get_vocab()
    size = max(vocab.values()) + 1
    length = np.full(size, -1, dtype=np.int64)  # ticks, -1 for non-notes
    is_rest = np.zeros(size, dtype=bool)
    for token, idx in vocab.items():
        value = symbol_length(token)
        if value is not None:
            ticks = value * TICKS
            if ticks.denominator == 1:
                length[idx] = int(ticks)
            is_rest[idx] = token.startswith("z")
    note_mask = length > 0
    letter = np.full(size, -1, dtype=np.int64)
    number = np.zeros(size, dtype=np.int64)
    explicit = np.full(size, 99, dtype=np.int64)
    for token, idx in vocab.items():
        m = CANON_NOTE_RE.match(token)
        if m:
            accidental, name, octave, _ = m.groups()
            letter[idx] = LETTERS.index(name.upper())
            number[idx] = _pitch_number(name, octave)
            if accidental:
                explicit[idx] = {"^": 1, "^^": 2, "_": -1, "__": -2, "=": 0}[accidental]
    for array in (length, is_rest, note_mask, letter, number, explicit):
        array.flags.writeable = False
    return {
        "length": length, "is_rest": is_rest, "note_mask": note_mask,
        "bar_ids": {t: vocab[t] for t in BAR_TOKENS if t in vocab},
        "tuplet_id": vocab.get(TUPLET),
        "eos_id": tokenizer.eos_token_id,
        "id_to_token": {i: t for t, i in vocab.items()},
        # triplet notes sound for 2/3 of their written length: that must be a whole tick count
        "tuplet_ok": note_mask & ((length * 2) % 3 == 0),
        "min_note": int(length[note_mask].min()),
        "letter": letter, "number": number, "explicit": explicit,
    }


class BarConstraint:
    """Masks next-token scores so that every bar fills its meter (see the module docstring).

    It keeps one state per batch row and is fed each sampled token through :meth:`update`. Its
    ``__call__(input_ids, scores)`` has the ``LogitsProcessor`` signature, so the same rules
    can also be handed to ``model.generate`` (with per-step :meth:`update` calls).

    Args:
        tokenizer: the checkpoint's tokenizer.
        headers: one header per row; the meter sets the bar length.
        bars: full bars to generate before the tune must end; one number for every row, or one
            per row.
    """

    def __init__(self, tokenizer, headers: list[Header], bars: int | list[int], key_weight: float = 0.0):
        # what each token is (length, bar line, pitch) depends on the vocabulary only: read once per tokenizer
        self.__dict__.update(_token_tables(tokenizer))
        per_row = list(bars) if isinstance(bars, (list, tuple)) else [bars] * len(headers)
        self.states = [
            _RowState(bar=int(meter_length(h.meter) / UNIT * TICKS), bars_wanted=int(b))
            for h, b in zip(headers, per_row)
        ]
        # key prior: each note token's pitch class under the row's key signature and the
        # accidentals held in the current bar, scored by the key's Krumhansl-Kessler profile
        self.key_weight = float(key_weight)
        self.signatures = []
        self.log_profiles = []
        for h in headers:
            key = parse_key(h.key)
            self.signatures.append(np.array([key.signature.get(letter, 0) for letter in LETTERS]))
            logp = np.log(key_profile(key.tonic_pc, key.minor))
            self.log_profiles.append(logp - logp.mean())
        self.carry: list[dict[int, int]] = [{} for _ in headers]  # diatonic number -> alteration
        self._natural = np.array(NATURAL_PC)
        self.keys = [h.key for h in headers]

    def state_key(self, row: int) -> tuple:
        """Everything :meth:`allowed` and :meth:`key_bias` read for row ``row``, as a hashable value.

        Rows (and steps) with equal keys get equal masks and priors, so the fast loop computes a
        score row once per key and looks it up afterwards.
        """
        s = self.states[row]
        prior = (self.keys[row], self.key_weight, tuple(sorted(self.carry[row].items()))) if self.key_weight else ()
        if s.ended or s.finished:
            return (True, *prior)
        return (s.bar, s.fill, s.tuplet_left, s.tuplet_len, s.bars_done + 1 >= s.bars_wanted, s.first_bar,
                s.expect_pickup, s.pickup, *prior)

    def adjustment(self, row: int) -> torch.Tensor:
        """What :meth:`__call__` does to row ``row``'s scores, as one row to add: the key prior where
        a token is allowed, ``-inf`` where it is not."""
        if self.key_weight:
            adjust = torch.from_numpy(self.key_bias(row)).to(torch.float32)
        else:
            adjust = torch.zeros(len(self.note_mask))
        return adjust.masked_fill(~torch.from_numpy(self.allowed(row)), float("-inf"))

    def key_bias(self, row: int) -> np.ndarray:
        """Per-token score bonus: ``key_weight`` x log key-profile weight of its pitch class."""
        bias = np.zeros(len(self.letter))
        notes = self.letter >= 0
        letters = self.letter[notes]
        alteration = np.where(self.explicit[notes] != 99, self.explicit[notes], self.signatures[row][letters])
        if self.carry[row]:
            plain = self.explicit[notes] == 99
            numbers = self.number[notes]
            for number, alter in self.carry[row].items():
                alteration = np.where(plain & (numbers == number), alter, alteration)
        pcs = (self._natural[letters] + alteration) % 12
        bias[notes] = self.key_weight * self.log_profiles[row][pcs]
        return bias

    def allowed(self, row: int) -> np.ndarray:
        """Boolean mask over the vocabulary of what row ``row`` may write next."""
        s = self.states[row]
        mask = np.zeros_like(self.note_mask)
        if s.ended or s.finished:
            mask[self.eos_id] = True
            return mask
        left = s.bar - s.fill
        if s.tuplet_left:
            written = s.tuplet_len if s.tuplet_left < 3 else None
            if written is None:
                mask |= self.tuplet_ok & (self.length * 2 <= left)  # three notes of 2/3 length
            else:
                mask |= self.length == written
            if not mask.any():
                mask |= self.note_mask
            return mask
        last_bar = s.bars_done + 1 >= s.bars_wanted
        if left == 0:
            self._allow(mask, END_BARS if last_bar else ("|", "||", "|:", ":|", "::"))
            return mask
        mask |= self.note_mask & (self.length <= left)
        if self.tuplet_id is not None and left >= 2 * self.min_note:
            mask[self.tuplet_id] = True
        if s.fill > 0:
            if s.first_bar:  # a pickup
                self._allow(mask, ("|", "|:"))
            elif s.expect_pickup and s.fill == s.pickup:
                self._allow(mask, ("|", "|:"))
            elif s.pickup and not s.expect_pickup and s.fill == s.bar - s.pickup:
                self._allow(mask, END_BARS if last_bar else SECTION_BARS)
        if not mask.any():  # nothing fits: give up on this bar rather than stall
            self._allow(mask, ("|",))
        return mask

    def _allow(self, mask: np.ndarray, tokens) -> None:
        for token in tokens:
            if token in self.bar_ids:
                mask[self.bar_ids[token]] = True

    def update(self, row: int, token_id: int) -> None:
        """Advance row ``row``'s bar count by the token just written."""
        s = self.states[row]
        if token_id == self.eos_id:
            s.finished = True
            return
        if s.ended:
            return
        token = self.id_to_token.get(token_id, "")
        if token in BAR_TOKENS:
            self.carry[row].clear()
            if token.startswith("["):
                return
            full = s.fill >= s.bar
            expecting, s.expect_pickup = s.expect_pickup, False
            if s.first_bar and not full:
                s.pickup = s.fill
            elif not (expecting and s.fill == s.pickup):
                s.bars_done += 1
                if not full and s.pickup and token in SECTION_BARS:
                    s.expect_pickup = True
            s.first_bar = False
            s.fill = 0
            if s.bars_done >= s.bars_wanted:
                s.ended = True
            return
        if token == TUPLET:
            s.tuplet_left = 3
            s.tuplet_len = 0
            return
        length = int(self.length[token_id]) if token_id < len(self.length) else -1
        if length <= 0:
            return
        if self.explicit[token_id] != 99:
            self.carry[row][int(self.number[token_id])] = int(self.explicit[token_id])
        if s.tuplet_left:
            if s.tuplet_left == 3:
                s.tuplet_len = length
            s.tuplet_left -= 1
            s.fill += length * 2 // 3
        else:
            s.fill += length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``LogitsProcessor`` interface: set disallowed scores to ``-inf``."""
        masks = torch.from_numpy(np.stack([self.allowed(r) for r in range(scores.shape[0])]))
        if self.key_weight:
            bias = np.stack([self.key_bias(r) for r in range(scores.shape[0])])
            scores = scores + torch.from_numpy(bias).to(scores.dtype)
        return scores.masked_fill(~masks, float("-inf"))


class TuneGenerator:
    """A trained tune model plus tokenizer, with batched, seeded, bar-aware generation.

    Args:
        model: a causal LM over the canonical ABC vocabulary.
        tokenizer: the matching tokenizer.
        key_weight: strength of the key prior used with ``constrained=True`` (0 turns it off).
        loop: ``"fast"`` (default) or ``"transformers"`` (the reference), see the module docstring;
            a model that :class:`~tunesmith.generator.decode.LlamaStep` cannot step (not a Llama)
            gets the reference loop. The attribute can be changed between calls.

    Attributes:
        max_bars: the largest ``bars`` that :meth:`generate` accepts.
        meters, keys, rhythms: the header values the model was trained with; other meters and
            keys raise ``ValueError``, other rhythms condition as "no rhythm given" (or raise, see
            :meth:`check_header`).
    """

    max_bars = MAX_BARS

    def __init__(self, model, tokenizer, key_weight: float = KEY_WEIGHT, loop: str = LOOPS[0]):
        if loop not in LOOPS:
            raise ValueError(f"loop must be one of {', '.join(LOOPS)}, got {loop!r}")
        self.model = model.eval()
        self.key_weight = key_weight
        self.tokenizer = tokenizer
        try:
            self.step = LlamaStep(self.model)
        except UnsupportedModel:
            self.step = None
            loop = "transformers"
        self.loop = loop
        self._memo: dict[tuple, torch.Tensor] = {}  # state_key -> score row, for the fast loop
        self.vocab = vocab = tokenizer.get_vocab()  # a fresh dict per call of get_vocab(): read once
        self.meters = sorted(t[2:] for t in vocab if t.startswith("M:"))
        self.keys = sorted(t[2:] for t in vocab if t.startswith("K:"))
        self.rhythms = sorted(t[2:].replace("-", " ") for t in vocab if t.startswith("R:") and t != "R:none")
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 1024))

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, threads: int | None = None, loop: str = LOOPS[0]) -> "TuneGenerator":
        """Load model and tokenizer with the transformers Auto classes.

        Args:
            path_or_id: a checkpoint folder (model.safetensors, config.json, tokenizer files).
            threads: when given, ``torch.set_num_threads(threads)``.
            loop: the decoding loop, ``"fast"`` or ``"transformers"``.

        Returns:
            The generator, in eval mode.
        """
        # imported here: a process that only imports this module (MLServer's main process imports
        # every runtime module, the workers load the models) skips transformers' model classes
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(int(threads))
        model = AutoModelForCausalLM.from_pretrained(str(path_or_id))
        tokenizer = AutoTokenizer.from_pretrained(str(path_or_id))
        return cls(model, tokenizer, loop=loop)

    def check_header(self, header: Header, *, strict_rhythm: bool = False) -> Header:
        """Canonicalise a header (``"Dmaj"`` -> ``"D"``, ``"C"`` -> ``"4/4"``, ``"Reel"`` -> ``"reel"``) and check it.

        Args:
            header: the meter, key and rhythm asked for.
            strict_rhythm: refuse a rhythm the model was not trained with. Use it for ready-made
                headers (a program's ``R:polka`` the model does not know is a mistake to report);
                without it such a rhythm conditions as "no rhythm given", which suits free text.

        Returns:
            The header as the model knows it.

        Raises:
            ValueError: naming the problem when the model cannot generate ``header``.
        """
        try:
            header = Header(meter=canonical_meter(str(header.meter)), key=canonical_key(str(header.key)),
                            rhythm=header.rhythm, unit=header.unit)
        except NormaliseError as exc:
            raise ValueError(str(exc)) from None
        if header.rhythm is not None and (not isinstance(header.rhythm, str) or not header.rhythm.isprintable()):
            raise ValueError(f"unsupported rhythm {header.rhythm!r}")
        if header.rhythm is not None:
            named = " ".join(header.rhythm.replace("-", " ").lower().split())
            if named in self.rhythms:
                header = replace(header, rhythm=named)
            elif strict_rhythm:
                raise ValueError(f"unknown rhythm {header.rhythm!r}; the model knows: {', '.join(self.rhythms)}")
        if header.meter not in self.meters:
            raise ValueError(f"unsupported meter {header.meter!r}; supported: {', '.join(self.meters)}")
        if header.key not in self.keys:
            raise ValueError(f"unsupported key {header.key!r}; supported: {', '.join(self.keys)}")
        if header.unit != "1/8":
            raise ValueError(f"unsupported unit {header.unit!r}; the model writes L:1/8")
        return header

    def prefix_symbols(self, prefix: str, header: Header) -> list[str]:
        """Read an ABC opening into the canonical symbols the model continues from.

        ``prefix`` is either a tune body (``"A2B c2d | e2f g2e |"``, in ``L:1/8`` unless it says
        otherwise) or a whole tune with its own header lines; then its ``M:`` and ``K:`` must agree
        with ``header`` (the model cannot continue a 3/4 opening as a 6/8 jig). The body goes
        through the same normaliser as the training corpus, so any ABC the corpus reader accepts
        (broken rhythms, chords reduced to their top note, decorations dropped) works here too. A
        final ``|]`` becomes ``|``: the opening is not the end of the tune.

        Args:
            prefix: the opening, as ABC text.
            header: the (canonical) header of the tune to generate.

        Returns:
            Canonical symbols; an opening that stops inside a bar ends without a bar line.

        Raises:
            ValueError: naming what cannot be read, a header that disagrees, or a symbol the
                model does not know.
        """
        text = str(prefix).strip()
        if not text:
            raise ValueError("prefix is empty")
        unit = UNIT
        if any(line.strip().startswith("K:") for line in text.splitlines()):
            fields, body = split_tune(text)
            try:
                if "M" in fields and canonical_meter(fields["M"]) != header.meter:
                    raise ValueError(f"prefix meter M:{fields['M']} differs from the requested {header.meter}")
                if "K" in fields and canonical_key(fields["K"]) != header.key:
                    raise ValueError(f"prefix key K:{fields['K']} differs from the requested {header.key}")
            except NormaliseError as exc:
                raise ValueError(f"prefix: {exc}") from None
            if "L" in fields:
                num, _, den = fields["L"].partition("/")
                if not (num.strip().isdigit() and den.strip().isdigit() and int(num) > 0 and int(den) > 0):
                    raise ValueError(f"prefix: unsupported unit L:{fields['L']}")
                unit = Fraction(int(num), int(den))
            text = body.strip()
            if not text:
                raise ValueError("prefix has a header but no notes")
        # the corpus reader skips ABC decoration letters; in an opening typed by hand, a word such
        # as "hello" is a mistake, not decorations, so letters that are not notes are refused
        stray = re.search(r"[h-tw-yIK-NQ-SU-Y]", re.sub(r'"[^"]*"|![^!]*!|\[[A-Za-z]:[^\]]*\]', "", text))
        if stray:
            raise ValueError(f"prefix cannot be read: {stray.group(0)!r} at {text[stray.start():stray.start() + 10]!r} is not a note")
        ends_with_bar = text.rstrip()[-1] in "|]:"
        # the corpus normaliser wants a complete tune of at least four bars: close the opening
        # with a bar line and four bars of rest, then take them off again
        bar = meter_length(header.meter)
        rest = "z" + format_length(bar / unit)
        lines = [line.split("%", 1)[0] for line in text.splitlines()]
        lines[-1] += " |" + f" {rest} |" * 4
        try:
            symbols = _lex_body(lines, unit, bar)
        except NormaliseError as exc:
            raise ValueError(f"prefix cannot be read: {exc}") from None
        symbols = symbols[:-8]
        if not ends_with_bar:
            symbols = symbols[:-1]
        elif symbols and symbols[-1] == "|]":
            symbols[-1] = "|"
        if not any(symbol_length(s) for s in symbols):
            raise ValueError("prefix has no notes")
        unknown = [s for s in symbols if s not in self.vocab]
        if unknown:
            raise ValueError(f"prefix uses {unknown[0]!r}, which the model does not know")
        return symbols

    @torch.inference_mode()
    def generate(
        self,
        headers: list[Header],
        seeds: list[int],
        temperature: float | list[float] = 1.0,
        bars: int | list[int] = 16,
        titles: list[str] | None = None,
        constrained: bool = True,
        prefixes: list[str | None] | None = None,
    ) -> list[str]:
        """Generate one tune per header, rows sharing a prompt length in one batched pass per step.

        Args:
            headers: meter, key and rhythm of each tune.
            seeds: one seed per tune; same inputs give the same tune, bit for bit.
            temperature: softmax temperature (> 0); lower is safer, higher more adventurous. One
                value for all rows, or one per row.
            bars: full bars per tune (1 to :attr:`max_bars`), counting those of a prefix; a pickup
                bar is extra. One value for all rows, or one per row.
            titles: ``T:`` line per tune; defaults to ``"Tune <seed>"``.
            constrained: bar-aware decoding (default) or plain sampling.
            prefixes: per row, an ABC opening to continue (see :meth:`prefix_symbols`) or
                ``None``; the tune then starts with the opening's notes. With ``constrained``
                the opening must itself keep the meter.

        Returns:
            Complete ABC tunes (``X:``, ``T:``, ``M:``, ``L:``, ``R:`` when known, ``K:``, body).

        Raises:
            ValueError: mismatched list lengths, unsupported meter/key, out-of-range settings,
                or a prefix that cannot be read or continued.
        """
        n = len(headers)
        if len(seeds) != n:
            raise ValueError(f"got {n} headers but {len(seeds)} seeds")
        if titles is not None and len(titles) != n:
            raise ValueError(f"got {n} headers but {len(titles)} titles")
        if prefixes is not None and len(prefixes) != n:
            raise ValueError(f"got {n} headers but {len(prefixes)} prefixes")
        temperatures = _per_row(temperature, n, "temperature")
        bars_per_row = _per_row(bars, n, "bars")
        for value in bars_per_row:
            if isinstance(value, bool) or int(value) != value or not 1 <= int(value) <= self.max_bars:
                raise ValueError(f"bars must be between 1 and {self.max_bars}, got {value}")
        for value in temperatures:
            if not (value > 0 and value <= 10):
                raise ValueError(f"temperature must be in (0, 10], got {value}")
        if not headers:
            return []
        headers = [self.check_header(header) for header in headers]
        bars_per_row = [int(b) for b in bars_per_row]
        temperatures = [float(t) for t in temperatures]
        openings = [
            self.prefix_symbols(p, h) if p is not None else [] for p, h in zip(prefixes or [None] * n, headers)
        ]

        # rows whose prompts have the same length share one batch (no padding, so a row's tune
        # never depends on the other rows); without prefixes that is every row
        groups: dict[int, list[int]] = {}
        for row, opening in enumerate(openings):
            groups.setdefault(len(opening), []).append(row)
        bodies: list[list[str]] = [[] for _ in range(n)]
        for rows in groups.values():
            out = self._sample(
                [headers[r] for r in rows], [seeds[r] for r in rows], [temperatures[r] for r in rows],
                [bars_per_row[r] for r in rows], [openings[r] for r in rows], constrained,
            )
            for r, symbols in zip(rows, out):
                bodies[r] = symbols

        tunes = []
        for row, header in enumerate(headers):
            symbols = bodies[row]
            if not symbols or symbols[-1] not in BAR_TOKENS:
                symbols.append("|]")
            title = " ".join(str(titles[row]).split()) if titles is not None else f"Tune {seeds[row]}"
            tunes.append(render_tune(header, symbols, title=title, index=1))
        return tunes

    def _sample(self, headers, seeds, temperatures, bars, openings, constrained) -> list[list[str]]:
        """The decoding loop for rows whose prompts (header + opening) have the same length."""
        n = len(headers)
        generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        constraint = BarConstraint(self.tokenizer, headers, bars, key_weight=self.key_weight if constrained else 0.0)
        vocab = self.vocab
        plain_bars = [0] * n
        for row, opening in enumerate(openings):
            written = sum(symbol in BAR_TOKENS for symbol in opening)
            if written >= bars[row]:
                raise ValueError(f"prefix already has {written} bars; ask for more bars than that")
            for i, symbol in enumerate(opening):
                token = vocab[symbol]
                if constrained and not constraint.allowed(row)[token]:
                    raise ValueError(
                        f"prefix symbol {i + 1} ({symbol!r}) does not fit bar {constraint.states[row].bars_done + 1} "
                        f"of {headers[row].meter} (bars must fill the meter)"
                    )
                constraint.update(row, token)
                plain_bars[row] += symbol in BAR_TOKENS[:6]
            if constrained and constraint.states[row].ended:
                raise ValueError(
                    f"prefix already has {constraint.states[row].bars_done} bars; ask for more bars than that"
                )
            if not constrained and plain_bars[row] >= bars[row]:
                raise ValueError(f"prefix already has {plain_bars[row]} bars; ask for more bars than that")
        header_prompts = {h: header_ids(self.tokenizer, h) for h in dict.fromkeys(headers)}  # rows often share one
        prompts = [header_prompts[h] + [vocab[s] for s in opening] for h, opening in zip(headers, openings)]
        eos = self.tokenizer.eos_token_id
        special = [self.tokenizer.convert_tokens_to_ids(t) for t in ("<pad>", "<s>", "<unk>")]
        header_tokens = [i for t, i in vocab.items() if t[:2] in ("M:", "K:", "R:")]
        banned = torch.tensor(special + header_tokens, dtype=torch.long)
        scale = torch.tensor(temperatures, dtype=torch.float32)[:, None]

        max_new = max(min(self.max_positions - len(prompts[0]), max(bars) * 40 + 40), 0)
        outputs: list[list[int]] = [[vocab[s] for s in opening] for opening in openings]
        done = [False] * n
        plain_bar_ids = {vocab[t] for t in BAR_TOKENS[:6] if t in vocab}

        def write(row: int, token: int) -> None:
            """Record row ``row``'s sampled token: the bar count, the output, whether the row is done."""
            constraint.update(row, token)
            if token == eos:
                done[row] = True
                return
            outputs[row].append(token)
            if not constrained and token in plain_bar_ids:
                plain_bars[row] += 1
                if plain_bars[row] > bars[row]:
                    done[row] = True

        if self.loop == "fast" and self.step is not None:
            self._fast_loop(prompts, generators, scale, constraint, constrained, banned, max_new, done, write)
        else:
            self._transformers_loop(prompts, generators, scale, constraint, constrained, banned, max_new, done, write)
        return [self.tokenizer.convert_ids_to_tokens(ids) for ids in outputs]

    def _transformers_loop(self, prompts, generators, scale, constraint, constrained, banned, max_new, done, write):
        """The reference: the model's own forward pass and cache, the rules as a ``LogitsProcessor``."""
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor(prompts, dtype=torch.long)
        cache = None
        for _ in range(max_new):
            out = self.model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1)
            cache = out.cache
            logits = out.logits[:, -1, :].float() / scale
            logits[:, banned] = float("-inf")
            if constrained:
                logits = constraint(None, logits)
            probs = torch.softmax(logits, dim=-1)
            next_ids = []
            for row in range(len(prompts)):
                if done[row]:
                    next_ids.append(pad)
                    continue
                token = int(torch.multinomial(probs[row], 1, generator=generators[row]))
                write(row, token)
                next_ids.append(token)
            if all(done):
                break
            input_ids = torch.tensor(next_ids, dtype=torch.long)[:, None]

    def _fast_loop(self, prompts, generators, scale, constraint, constrained, banned, max_new, done, write):
        """:class:`~tunesmith.generator.decode.LlamaStep` over a static cache; rules as memoised score rows.

        Each row's mask and key prior depend only on its bar state (:meth:`BarConstraint.state_key`),
        so they are computed once per state as one row of additions (``-inf`` for what is not
        allowed) and kept. Sampling is ``torch.multinomial``'s own method written out for the
        batch: for one sample it takes the argmax of ``probs / q`` with ``q`` exponential noise from
        the row's generator, so drawing ``q`` row by row and dividing once gives the same tokens.
        """
        n = len(prompts)
        if len(self._memo) > _MEMO_LIMIT:
            self._memo.clear()
        if constrained:
            def adjustment(row: int) -> torch.Tensor:
                key = constraint.state_key(row)
                found = self._memo.get(key)
                if found is None:
                    found = self._memo[key] = constraint.adjustment(row)
                return found
        else:
            plain = torch.zeros(len(constraint.note_mask))
            plain[banned] = float("-inf")
            adjustment = lambda row: plain  # noqa: E731 - one row for every state
        cache = self.step.new_cache(n, len(prompts[0]) + max_new)
        logits = self.step(torch.tensor(prompts, dtype=torch.long), cache)
        noise = torch.ones(n, logits.shape[-1])
        rows = range(n)
        for i in range(max_new):
            adjust = torch.stack([adjustment(row) for row in rows]) if n > 1 else adjustment(0)[None]
            active = [row for row in rows if not done[row]]
            for row in active:
                noise[row].exponential_(generator=generators[row])
            chosen = _choose(logits, scale, adjust, noise)
            picks = chosen.tolist()
            for row in active:
                write(row, picks[row])
            if all(done) or i + 1 == max_new:
                break
            # finished rows are fed their own last pick rather than padding: a row's logits never
            # depend on another row's tokens, and a finished row's logits are no longer read
            logits = self.step(chosen.view(n, 1), cache)


def _choose_eager(logits: torch.Tensor, scale: torch.Tensor, adjust: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Each row's sampled token: the argmax of ``probs / noise`` (see ``TuneGenerator._fast_loop``)."""
    return (torch.softmax(logits / scale + adjust, dim=-1) / noise).argmax(dim=-1)


_choose = scripted(_choose_eager)


def _per_row(value, n: int, name: str) -> list:
    """One value for every row, or a list with one value per row."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"got {n} headers but {len(value)} values of {name}")
        return list(value)
    return [value] * n
