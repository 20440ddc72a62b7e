"""Drift in what users ask for: are today's prompts still the prompts the platform was built for?

A model is only as good as the match between its training data and what it is asked. The tune
generator learned folk tunes; the prompt encoder maps requests such as "a lively jig in D" onto
their headers. If users start asking for "a heavy metal guitar solo", or a client sends speech or
garbage, every model still answers (with a folk tune), so no error rate moves. A **drift detector**
notices instead that the *inputs* no longer look like the reference.

How, here:

* **Feature.** Each prompt becomes its all-MiniLM-L6-v2 sentence embedding (384 numbers, unit
  length), the model the prompt encoder already uses (:mod:`tunesmith.generator.prompt_encoder`).
* **Reference.** :func:`reference_prompts` writes prompts the way users of this platform do, from
  the headers of the *training* split (tune type, key, mode, meter) and the prompt encoder's own
  labelled phrases. Their embeddings are computed once, offline, and saved beside the detector
  (:func:`build_reference`), as Seldon's detectors carry their reference data in the artifact.
* **Test.** The maximum mean discrepancy (MMD) between the reference and a sliding window of the
  last ``window`` prompts, with a Gaussian kernel whose width is the median distance between
  reference embeddings; its p-value is a permutation test (``scipy.stats.permutation_test``: how
  often does a random split of reference + window into two groups of the same sizes give an MMD
  at least as large?). The alarm rings when the p-value falls below ``threshold``.

Why written with scipy: Seldon's drift samples use alibi-detect (``MMDDrift`` does exactly this
test), but alibi-detect requires numpy < 2 and cannot be installed beside this project's stack
(numpy 2, torch, MLServer 1.7). The test is a few lines of numpy on top of scipy's permutation
test, and :class:`DriftResult` keeps alibi-detect's output names (``is_drift``, ``p_val``,
``distance``, ``threshold``) so a client written for Seldon's detectors reads it unchanged.

Why a window inside the detector: Seldon's sample pipeline (``samples/pipelines/cifar10.yaml``)
batches 20 requests for a stateless detector with the step's ``batch.size``; the local gateway
does not batch steps, so this detector keeps the last ``window`` prompts itself and tests after
every request. With one MLServer worker (``parallel_workers: 1``) it sees every request; with
several workers or replicas each would keep a window of its own share.

Figures (:func:`measure`, printed by ``python -m tunesmith.monitoring.drift``) are in notebook 3.7.
"""

from __future__ import annotations

import argparse
import json
import logging
import string
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from scipy.stats import permutation_test

from tunesmith.generator.prompt_encoder import PROTOTYPES_FILE

log = logging.getLogger(__name__)

WINDOW = 20
"""Prompts per test: the batch size of Seldon's drift sample (``cifar10.yaml``)."""
THRESHOLD = 0.01
"""The alarm rings below this p-value: about one window in a hundred of normal traffic alarms."""
PERMUTATIONS = 1000
"""Random splits per test; the smallest p-value it can give is 1/1001."""
REFERENCE_SIZE = 200
REFERENCE_FILE = "reference.npz"

Embed = Callable[[list[str]], np.ndarray]


# --- prompts ---------------------------------------------------------------------------------

_TYPE_WORDS = {"reel": ["reel"], "jig": ["jig", "double jig"], "hornpipe": ["hornpipe"],
               "slip jig": ["slip jig"], "strathspey": ["strathspey"], "air": ["slow air", "air"],
               "waltz": ["waltz"], "slide": ["slide"]}
_SONG_WORDS = ["song", "folk song", "tune", "melody", "ballad", "folk tune", "lullaby", "march", "air"]
_TEMPO_WORDS = ["", "", "", "lively", "slow", "fast", "gentle", "bouncy", "brisk", "stately"]
_MOOD_WORDS = ["", "", "", "happy", "sad", "cheerful", "wistful", "joyful", "mournful", "merry"]
_ENDINGS = ["", "", "", "", " for dancing", " for a wedding", " for a session", " for the fiddle",
            " for a ceilidh", " to sing to", " for a summer evening"]
_MODE_NAMES = {"m": "minor", "min": "minor", "dor": "dorian", "mix": "mixolydian", "lyd": "lydian",
               "phr": "phrygian", "loc": "locrian", "": "major"}

OFF_DISTRIBUTION: dict[str, list[str]] = {
    "metal": [
        "heavy metal guitar solo", "a shredding metal riff with double kick drums",
        "distorted power chords for a thrash metal song", "a screaming electric guitar solo in drop D",
        "death metal blast beats and growled vocals", "a doom metal dirge with down-tuned guitars",
        "an eighties hair metal anthem with a long guitar solo", "a djent breakdown on a seven-string guitar",
        "speed metal with twin guitar harmonies", "black metal tremolo picking over blast beats",
        "a power ballad guitar solo with whammy bar dives", "a nu metal riff with a turntable scratch",
    ],
    "speech": [
        "please remind me to call the dentist tomorrow", "what is the weather going to be like in Paris",
        "the quarterly report is due on Friday", "turn off the lights in the living room",
        "how many calories are in a banana", "I would like to book a table for two at eight",
        "the train to Leeds is delayed by twenty minutes", "can you summarise this email for me",
        "my password does not work anymore", "set a timer for ten minutes",
        "who won the football match last night", "translate good morning into Spanish",
    ],
}
"""Prompts this platform was not built for: metal, and speech that was never meant as a prompt.
:func:`off_distribution` adds a third kind, ``noise`` (random characters)."""


def _key_words(key: str) -> str:
    tonic = key[:2] if len(key) > 1 and key[1] in "#b" else key[:1]
    mode = _MODE_NAMES.get(key[len(tonic):].lower(), "major")
    tonic = tonic.replace("#", " sharp").replace("b", " flat") if len(tonic) > 1 else tonic
    return f"{tonic} {mode}" if mode != "major" else tonic


def prompts_from_headers(tunes: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """``n`` prompts as users of this platform write them, one per randomly chosen tune's header.

    A prompt names the tune type (or a song word for the many tunes without one), and at random a
    tempo or mood word, the key, the meter of a song, and an occasion; one prompt in five is
    instead one of the prompt encoder's labelled phrases ("a lullaby", "music for a funeral").

    Args:
        tunes: ABC tunes whose headers set the content (a corpus split).
        n: how many prompts.
        seed: the random seed; the same seed gives the same prompts.
    """
    from tunesmith.music.abc import Header

    rng = np.random.default_rng(seed)
    phrases = [p["text"] for p in json.loads(Path(PROTOTYPES_FILE).read_text())["prototypes"]]
    out = []
    for i in rng.choice(len(tunes), size=n, replace=len(tunes) < n):
        if rng.random() < 0.2:
            out.append(str(rng.choice(phrases)))
            continue
        header = Header.from_abc(tunes[i])
        words = _TYPE_WORDS.get(header.rhythm or "", None)
        kind = str(rng.choice(words or _SONG_WORDS))
        adjective = str(rng.choice(_TEMPO_WORDS if rng.random() < 0.5 else _MOOD_WORDS))
        text = f"{adjective} {kind}".strip()
        text = ("an " if text[0] in "aeiou" else "a ") + text
        if rng.random() < 0.6:
            text += f" in {_key_words(header.key)}"
        if words is None and rng.random() < 0.3:
            text += f" in {header.meter}"
        text += str(rng.choice(_ENDINGS))
        out.append(text)
    return out


def reference_prompts(n: int = REFERENCE_SIZE, split: str = "train", seed: int = 0) -> list[str]:
    """Prompts built from one corpus split's headers (:func:`prompts_from_headers`): ``train``
    for the reference, ``test`` (another seed) for normal traffic the detector has never seen."""
    from tunesmith.music.corpus import ensure_splits, read_split

    ensure_splits()
    return prompts_from_headers(read_split(split), n, seed)


def off_distribution(kind: str, n: int, seed: int = 0) -> list[str]:
    """``n`` prompts of one off-distribution kind: ``metal``, ``speech`` or ``noise``."""
    rng = np.random.default_rng(seed)
    if kind == "noise":
        alphabet = list(string.ascii_letters + string.digits + string.punctuation + "     ")
        return ["".join(rng.choice(alphabet, size=int(rng.integers(8, 40)))).strip() or "#" for _ in range(n)]
    if kind not in OFF_DISTRIBUTION:
        raise ValueError(f"unknown kind {kind!r}: use one of {sorted(OFF_DISTRIBUTION) + ['noise']}")
    pool = OFF_DISTRIBUTION[kind]
    return [pool[i] for i in rng.permutation(max(n, len(pool)))[:n] % len(pool)]


# --- the embedding ---------------------------------------------------------------------------


def load_embedder(threads: int | None = None) -> Embed:
    """The prompt encoder's sentence-embedding model (all-MiniLM-L6-v2, offline), as a function
    from prompts to unit-length rows. Raises if the packaged model is missing: a detector that
    cannot embed must not pretend to watch."""
    from tunesmith.generator.prompt_encoder import PromptEncoder

    model = PromptEncoder.from_pretrained(fallback=False, threads=threads).model

    def embed(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(list(texts), batch_size=max(len(texts), 1), normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=False), dtype=np.float64)

    return embed


# --- the test --------------------------------------------------------------------------------


@dataclass
class DriftResult:
    """One test, under alibi-detect's names. ``window`` is how many prompts were tested; before the
    window is full no test runs (``tested`` False, ``p_val`` 1)."""

    is_drift: bool
    p_val: float
    distance: float
    threshold: float
    window: int
    tested: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


class MMDDrift:
    """The MMD two-sample test of a window of embeddings against a fixed reference.

    Args:
        reference: ``[n, d]`` embeddings of the reference prompts.
        threshold: the p-value below which a window is drift.
        permutations: random splits for the p-value.
        sigma: the Gaussian kernel's width; default the median distance between reference rows.
        seed: the permutations' random seed, so the same window always gets the same p-value.
    """

    def __init__(self, reference: np.ndarray, *, threshold: float = THRESHOLD, permutations: int = PERMUTATIONS,
                 sigma: float | None = None, seed: int = 0):
        self.reference = np.asarray(reference, dtype=np.float64)
        if self.reference.ndim != 2 or len(self.reference) < 2:
            raise ValueError(f"the reference must be [n >= 2, d] embeddings, got shape {self.reference.shape}")
        self.threshold, self.permutations, self.seed = float(threshold), int(permutations), seed
        d2 = _squared_distances(self.reference, self.reference)
        if sigma is None:
            sigma = float(np.sqrt(np.median(d2[np.triu_indices(len(d2), 1)])))
        self.sigma = float(sigma)
        self._k_ref = self._kernel(d2)

    def _kernel(self, d2: np.ndarray) -> np.ndarray:
        return np.exp(-d2 / (2 * self.sigma**2))

    def test(self, window: np.ndarray) -> DriftResult:
        """The p-value that ``window`` comes from the reference's distribution.

        The statistic is the (biased) squared MMD between the two groups. With the kernel matrix
        ``K`` of reference + window computed once, a split's statistic needs only the window
        group's block and row sums, so a thousand permutations take milliseconds.
        """
        w = np.asarray(window, dtype=np.float64)
        if w.ndim != 2 or w.shape[1] != self.reference.shape[1] or not len(w):
            raise ValueError(f"the window must be [m, {self.reference.shape[1]}] embeddings, got shape {w.shape}")
        n, m = len(self.reference), len(w)
        cross = self._kernel(_squared_distances(self.reference, w))
        k = np.block([[self._k_ref, cross], [cross.T, self._kernel(_squared_distances(w, w))]])
        rows, total = k.sum(1), k.sum()

        def mmd2(_x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
            y = y.astype(np.intp)
            s_yy = k[y[..., :, None], y[..., None, :]].sum(axis=(-2, -1))
            s_xy = rows[y].sum(-1) - s_yy
            s_xx = total - 2 * s_xy - s_yy
            return s_xx / n**2 + s_yy / m**2 - 2 * s_xy / (n * m)

        result = permutation_test(
            (np.arange(n, dtype=float), np.arange(n, n + m, dtype=float)), mmd2, permutation_type="independent",
            vectorized=True, n_resamples=self.permutations, alternative="greater",
            random_state=np.random.default_rng(self.seed),
        )
        p = float(result.pvalue)
        return DriftResult(is_drift=p < self.threshold, p_val=p, distance=float(result.statistic),
                           threshold=self.threshold, window=m)


class DriftMonitor:
    """A sliding window of the last ``window`` prompts' embeddings, tested after every request.

    Args:
        detector: the test.
        window: how many recent prompts are compared with the reference.
    """

    def __init__(self, detector: MMDDrift, window: int = WINDOW):
        if window < 2:
            raise ValueError(f"window must be at least 2, got {window}")
        self.detector = detector
        self.recent: deque[np.ndarray] = deque(maxlen=int(window))

    @classmethod
    def load(cls, path: str | Path, *, window: int = WINDOW, threshold: float = THRESHOLD,
             permutations: int = PERMUTATIONS) -> DriftMonitor:
        """A monitor on the reference saved by :func:`build_reference` (its kernel width included)."""
        saved = np.load(Path(path))
        detector = MMDDrift(saved["embeddings"], threshold=threshold, permutations=permutations,
                            sigma=float(saved["sigma"]))
        return cls(detector, window)

    @property
    def window(self) -> int:
        return self.recent.maxlen or 0

    def observe(self, embeddings: np.ndarray) -> DriftResult:
        """Add one request's prompt embeddings (rows) and test the window once it is full."""
        for row in np.atleast_2d(embeddings):
            self.recent.append(np.asarray(row, dtype=np.float64))
        if len(self.recent) < self.window:
            return DriftResult(False, 1.0, 0.0, self.detector.threshold, len(self.recent), tested=False)
        return self.detector.test(np.stack(self.recent))

    def reset(self) -> None:
        self.recent.clear()


def build_reference(path: str | Path, *, embed: Embed | None = None, n: int = REFERENCE_SIZE, seed: int = 0) -> Path:
    """Embed :func:`reference_prompts` (the training split's) and save them, with the kernel width
    and the prompts themselves, to ``path`` (``.npz``): the detector's artifact."""
    embed = embed or load_embedder()
    prompts = reference_prompts(n, "train", seed)
    embeddings = embed(prompts)
    sigma = MMDDrift(embeddings, permutations=1).sigma
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, embeddings=embeddings.astype(np.float32), sigma=sigma, prompts=np.array(prompts))
    return path


# --- measured behaviour ----------------------------------------------------------------------


@dataclass
class Measurement:
    """What :func:`measure` found. ``false_alarm_windows``: share of disjoint windows of normal
    traffic that alarmed; ``false_alarm_tests``: share of sliding tests (one per request) that did;
    ``requests_to_alarm``: per off-distribution kind, off-distribution requests sent into a full
    window of normal traffic until the alarm rang, one number per trial (None: never, within a
    full window)."""

    window: int
    threshold: float
    windows: int
    false_alarm_windows: float
    sliding_tests: int
    false_alarm_tests: float
    requests_to_alarm: dict[str, list[int | None]]

    def summary(self) -> str:
        lines = [
            f"window {self.window} prompts, alarm below p = {self.threshold:g}",
            f"normal traffic (test split's headers): {self.false_alarm_windows:.1%} of {self.windows} disjoint windows "
            + (f"alarmed; {self.false_alarm_tests:.1%} of {self.sliding_tests} sliding tests" if self.sliding_tests else "alarmed"),
        ]
        for kind, counts in self.requests_to_alarm.items():
            found = [c for c in counts if c is not None]
            missed = len(counts) - len(found)
            lines.append(
                f"burst of {kind:6}: alarm after {int(np.median(found)) if found else '-'} requests (median), "
                f"{min(found) if found else '-'}-{max(found) if found else '-'} over {len(counts)} trials"
                + (f", {missed} never" if missed else "")
            )
        return "\n".join(lines)


def measure(detector: MMDDrift, embed: Embed, *, window: int = WINDOW, windows: int = 50, trials: int = 10,
            kinds: Iterable[str] = ("metal", "speech", "noise"), sliding: bool = True, seed: int = 1) -> Measurement:
    """The false-alarm rate on normal traffic and the requests an off-distribution burst needs to
    raise the alarm, one prompt per request.

    Normal traffic is :func:`reference_prompts` of the held-out **test** split (another seed):
    written the same way as the reference, from tunes the reference never saw. ``sliding=False``
    skips the one-test-per-request pass over it (the slowest part).
    """
    normal = embed(reference_prompts(windows * window, "test", seed))
    alarms = [detector.test(normal[i * window:(i + 1) * window]).is_drift for i in range(windows)]
    monitor = DriftMonitor(detector, window)
    tests = [r.is_drift for r in map(monitor.observe, normal) if r.tested] if sliding else []
    rng = np.random.default_rng(seed)
    bursts = {kind: embed(off_distribution(kind, window, seed)) for kind in kinds}
    to_alarm: dict[str, list[int | None]] = {}
    for kind, burst in bursts.items():
        to_alarm[kind] = []
        for _ in range(trials):
            monitor.reset()
            start = rng.integers(0, len(normal) - window)
            monitor.observe(normal[start:start + window])
            order = rng.permutation(len(burst))
            found = None
            for count, i in enumerate(order, 1):
                if monitor.observe(burst[i]).is_drift:
                    found = count
                    break
            to_alarm[kind].append(found)
    return Measurement(window, detector.threshold, windows, float(np.mean(alarms)), len(tests),
                       float(np.mean(tests)) if tests else float("nan"), to_alarm)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Measure the prompt drift detector: false alarms and time to alarm.")
    parser.add_argument("--windows", type=int, default=50, help="disjoint windows of normal traffic")
    parser.add_argument("--trials", type=int, default=10, help="bursts per off-distribution kind")
    parser.add_argument("--window", type=int, default=WINDOW)
    args = parser.parse_args(argv)
    embed = load_embedder()
    detector = MMDDrift(embed(reference_prompts()))
    print(measure(detector, embed, window=args.window, windows=args.windows, trials=args.trials).summary())


if __name__ == "__main__":
    main()
