"""Recognise the dance rhythm of a folk tune from audio: reel, jig, hornpipe or slip jig.

**Why these features.** What tells a jig from a reel is not its pitches or its instrument but the
way its notes are grouped in time: running eighths in threes (jig, 6/8), in threes three times a
bar (slip jig, 9/8), in twos and fours (reel), or in twos with dotted "lilting" pairs and
three-crotchet cadences (hornpipe). Such grouping shows up as peaks of the *autocorrelation* of
the onset-strength envelope (librosa's spectral flux) at lags of one note, one beat, one bar: a
jig has peaks at 1, 3, 6 and 12 note lengths, a reel at 1, 2, 4 and 8. The same tune played
faster moves every peak to a shorter lag by the same *factor*, so the autocorrelation is sampled
on a logarithmic lag axis (:data:`BINS_PER_OCTAVE` bins per octave from :data:`LAG_MIN` to
:data:`LAG_MAX` seconds), where a tempo change is a plain shift. The model's convolutions followed
by pooling over the whole axis then find the *pattern* of peaks wherever it lies, so the absolute
tempo is not an input: a slow reel should not be taken for a hornpipe, and a hummed tune should be
judged by its rhythm rather than its speed. (This is the idea of Holzapfel and Stylianou's
scale-transform rhythm features, which ``librosa.fmt`` computes; a learnt shift-invariant filter
bank keeps the relative *positions* of peaks, which the scale-transform magnitude blurs.) The
invariance is not complete: attacks, vibrato and reverb have fixed lengths in seconds, so their
traces sit at fixed lags and betray the speed, and a network trained on tempos that differ by class
learns to read them. :mod:`tunesmith.style.train` therefore draws half of the training tempos from
one range shared by all classes. A second channel holds the same log-lag autocorrelation of the
chroma (pitch-class) sequence, because melodic figures repeat with the beat and the bar too, and
it survives where the onsets are soft (a hummed or legato tune). Four tempo-free spectral
statistics (brightness, noisiness, dynamic range, accent contrast) join after pooling.

Audio is analysed in crops of :data:`CROP_SECONDS` (about eight bars of a reel, enough for two
full periods of the longest pattern); longer audio is cut into overlapping crops whose
probabilities (or embeddings) are averaged.

**Why this model.** A 1-D CNN of about 30k parameters: four dilated convolutions whose receptive
field spans five octaves of lag (note to two bars), mean and max pooled, then a small dense layer
whose output is the *embedding* (:data:`EMBED_DIM` numbers) and a linear layer to the classes.
The embedding summarises how a clip is rhythmically organised, which is what
:func:`frechet_distance` compares between sets of generated and real tunes.

:attr:`StyleConfig.absolute` can add a dense layer over the un-pooled features, which sees where
the peaks lie and so the absolute tempo; the shipped checkpoint's config says whether it has one.

Loading uses a JSON config and safetensors weights (no pickle), from a local folder only.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import librosa
import numpy as np
import soxr
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tunesmith.audio.io import mono_samples

FEATURE_SAMPLE_RATE = 16000
"""Audio is resampled to this rate before analysis: it keeps everything up to 8 kHz (all a fiddle
or voice needs for onsets and pitch classes) at two thirds of librosa's default cost."""
HOP = 128
"""Analysis hop in samples: 8 ms lag resolution, fine enough for the 60-130 ms notes of a reel."""
N_FFT = 2048
"""STFT window (128 ms): long enough for chroma to resolve semitones down to D4 on a fiddle."""
N_MELS = 64
CROP_SECONDS = 10.0
"""Length of one analysed crop; the model is trained on crops of this length."""
CROP_HOP_SECONDS = 5.0
"""Step between the crops of longer audio."""
MAX_CROPS = 6
"""At most this many crops are analysed (the first 35 s of a long recording)."""
MIN_SECONDS = 3.0
"""Shorter audio holds too few bars to show a rhythm and is refused."""
LAG_MIN = 0.0625
"""Shortest lag in seconds: half the length of a note in the fastest reel."""
LAG_MAX = 4.0
"""Longest lag in seconds: two bars of a slow slip jig."""
BINS_PER_OCTAVE = 24
N_LAGS = int(round(BINS_PER_OCTAVE * math.log2(LAG_MAX / LAG_MIN))) + 1
"""Points on the logarithmic lag axis (145)."""
CHANNELS = ("onset", "chroma")
"""The autocorrelation channels, in input order."""
STATS = ("log_centroid", "flatness", "dynamic_range", "accent_contrast")
"""The spectral statistics, in input order."""
EMBED_DIM = 48
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class StyleInputError(ValueError):
    """Audio the classifier cannot judge (too short, silent, not numbers ...); the message says why."""


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


def check_audio(samples: object, sample_rate: object) -> tuple[np.ndarray, int]:
    """Validate audio and bring it to mono float32 at :data:`FEATURE_SAMPLE_RATE`.

    Args:
        samples: mono ``(frames,)`` or ``(frames, channels)`` float audio.
        sample_rate: its rate in Hz (8 kHz to 96 kHz).

    Returns:
        ``(samples, FEATURE_SAMPLE_RATE)``.

    Raises:
        StyleInputError: wrong shape, non-finite samples, unusable rate, shorter than
            :data:`MIN_SECONDS` or silent.
    """
    integer = isinstance(sample_rate, (int, np.integer)) and not isinstance(sample_rate, bool)
    if not integer or not 8000 <= sample_rate <= 96000:
        raise StyleInputError(f"sample_rate must be an integer between 8000 and 96000 Hz, got {sample_rate!r}")
    x = mono_samples(samples, error=StyleInputError, dtype=np.float32)
    seconds = x.size / int(sample_rate)
    if seconds < MIN_SECONDS:
        raise StyleInputError(
            f"the audio is {seconds:.2f} s long; the rhythm classifier needs at least {MIN_SECONDS:g} s "
            f"(a few bars)"
        )
    if int(sample_rate) != FEATURE_SAMPLE_RATE:
        x = soxr.resample(x, int(sample_rate), FEATURE_SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)
    peak = float(np.max(np.abs(x)))
    if peak < 1e-4:
        raise StyleInputError("the audio is silent (peak below -80 dBFS); there is no rhythm to classify")
    return x / np.float32(peak), FEATURE_SAMPLE_RATE


def _lag_axis_frames() -> np.ndarray:
    """Bin edges of the log-lag axis, in analysis frames (``N_LAGS + 1`` values)."""
    centres = LAG_MIN * 2.0 ** (np.arange(N_LAGS) / BINS_PER_OCTAVE)
    edges = np.concatenate([centres * 2.0 ** (-0.5 / BINS_PER_OCTAVE), [centres[-1] * 2.0 ** (0.5 / BINS_PER_OCTAVE)]])
    return edges * FEATURE_SAMPLE_RATE / HOP


_EDGES = _lag_axis_frames()


def _log_lag(ac: np.ndarray) -> np.ndarray:
    """Resample a linear-lag autocorrelation onto the log-lag axis, keeping each bin's peak.

    At long lags a bin spans many frames and point sampling would miss narrow peaks; at short lags
    a bin is narrower than a frame and is interpolated. librosa has no such resampler (its
    ``fmt`` goes to the scale domain instead), hence these few lines.
    """
    out = np.empty(N_LAGS, dtype=np.float32)
    frames = np.arange(len(ac))
    for i in range(N_LAGS):
        lo, hi = _EDGES[i], _EDGES[i + 1]
        first, last = int(math.ceil(lo)), int(math.floor(hi))
        if last - first >= 1 and last < len(ac):
            out[i] = ac[first : last + 1].max()
        else:
            out[i] = np.interp(0.5 * (lo + hi), frames, ac)
    return out


def _autocorrelation(signal: np.ndarray, max_lag: int) -> np.ndarray:
    """Unbiased autocorrelation of a mean-removed signal (rows summed), normalised to 1 at lag 0.

    ``librosa.autocorrelate`` does the FFT work; dividing by the overlap at each lag removes the
    taper that would otherwise make long lags look weak in a short crop.
    """
    centred = signal - signal.mean(axis=-1, keepdims=True)
    ac = librosa.autocorrelate(centred, max_size=max_lag, axis=-1)
    if ac.ndim == 2:
        ac = ac.sum(axis=0)
    ac = ac / (centred.shape[-1] - np.arange(len(ac)))
    return ac / ac[0] if ac[0] > 0 else np.zeros_like(ac)


def crop_features(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features of one crop of audio already at :data:`FEATURE_SAMPLE_RATE` (see the module doc).

    Args:
        samples: mono float32 audio, at most :data:`CROP_SECONDS` long is intended.

    Returns:
        ``(lags, stats)``: float32 arrays of shape ``(len(CHANNELS), N_LAGS)`` and ``(len(STATS),)``.
    """
    sr = FEATURE_SAMPLE_RATE
    max_lag = int(math.ceil(_EDGES[-1])) + 2
    minimum = max_lag + int(2 * sr / HOP)
    if len(samples) < minimum * HOP:  # lags up to LAG_MAX need some overlap; loop very short crops
        samples = np.resize(samples, minimum * HOP)
    power = np.abs(librosa.stft(samples, n_fft=N_FFT, hop_length=HOP)) ** 2
    mel_db = librosa.power_to_db(librosa.feature.melspectrogram(S=power, sr=sr, n_mels=N_MELS), ref=np.max)
    onset = librosa.onset.onset_strength(S=mel_db, sr=sr)
    # tuning=0 skips librosa's tuning search: only the repetition of pitch classes matters here
    chroma = librosa.feature.chroma_stft(S=power, sr=sr, n_fft=N_FFT, tuning=0.0)
    lags = np.stack([_log_lag(_autocorrelation(onset, max_lag)), _log_lag(_autocorrelation(chroma, max_lag))])

    magnitude = np.sqrt(power[:, ::4])  # every 4th frame is plenty for clip-wide averages
    centroid = librosa.feature.spectral_centroid(S=magnitude, sr=sr, n_fft=N_FFT)[0]
    flatness = librosa.feature.spectral_flatness(S=magnitude)[0]
    rms_db = librosa.amplitude_to_db(librosa.feature.rms(S=magnitude, frame_length=N_FFT)[0], ref=np.max)
    stats = np.array(
        [
            np.log2(max(float(np.median(centroid)), 1.0)),
            float(np.mean(flatness)),
            float(np.percentile(rms_db, 95) - np.percentile(rms_db, 10)) / 20.0,
            float(np.std(onset) / (np.mean(onset) + 1e-6)),
        ],
        dtype=np.float32,
    )
    return lags.astype(np.float32), stats


def crops(samples: np.ndarray) -> list[np.ndarray]:
    """Cut audio at :data:`FEATURE_SAMPLE_RATE` into the crops that :func:`features` analyses."""
    size = int(CROP_SECONDS * FEATURE_SAMPLE_RATE)
    hop = int(CROP_HOP_SECONDS * FEATURE_SAMPLE_RATE)
    if len(samples) <= size:
        return [samples]
    starts = list(range(0, len(samples) - size + 1, hop))[:MAX_CROPS]
    return [samples[s : s + size] for s in starts]


def features(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Features of every crop of a clip.

    Args:
        samples: mono (or ``(frames, channels)``) float audio.
        sample_rate: its rate in Hz.

    Returns:
        ``(lags, stats)`` of shapes ``(crops, len(CHANNELS), N_LAGS)`` and ``(crops, len(STATS))``.

    Raises:
        StyleInputError: see :func:`check_audio`.
    """
    x, _ = check_audio(samples, sample_rate)
    pairs = [crop_features(c) for c in crops(x)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


@dataclass
class StyleConfig:
    """Everything needed to rebuild the classifier; stored as ``config.json`` next to the weights.

    Attributes:
        labels: class names in output order.
        width: channels of each convolution.
        kernel: convolution kernel size (in log-lag bins).
        dilations: one convolution per entry, with this dilation.
        embed_dim: size of the embedding (the penultimate layer).
        dropout: dropout before the output layer while training.
        absolute: units of a dense layer that reads the log-lag features *before* pooling, where
            the position of each peak (the absolute tempo) is visible; 0 for none.
        stats_mean: mean of each spectral statistic over the training set (for standardising).
        stats_std: their standard deviations.
        feature: the feature settings the weights were trained with; loading checks they match.
        training: free-form record of how the weights were trained.
    """

    labels: list[str]
    width: int = 32
    kernel: int = 9
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    embed_dim: int = EMBED_DIM
    dropout: float = 0.2
    absolute: int = 0
    stats_mean: list[float] = field(default_factory=lambda: [0.0] * len(STATS))
    stats_std: list[float] = field(default_factory=lambda: [1.0] * len(STATS))
    feature: dict = field(default_factory=lambda: feature_settings())
    training: dict = field(default_factory=dict)


def feature_settings() -> dict:
    """The feature constants a checkpoint depends on (saved in its config and checked on load)."""
    return {
        "sample_rate": FEATURE_SAMPLE_RATE,
        "hop": HOP,
        "n_fft": N_FFT,
        "n_mels": N_MELS,
        "crop_seconds": CROP_SECONDS,
        "lag_min": LAG_MIN,
        "lag_max": LAG_MAX,
        "bins_per_octave": BINS_PER_OCTAVE,
        "channels": list(CHANNELS),
        "stats": list(STATS),
    }


class StyleNet(nn.Module):
    """Dilated 1-D CNN over the log-lag axis, pooled over the whole axis (see the module doc)."""

    def __init__(self, config: StyleConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = len(CHANNELS)
        for dilation in config.dilations:
            layers += [
                nn.Conv1d(channels, config.width, config.kernel, dilation=dilation, padding="same"),
                nn.BatchNorm1d(config.width),
                nn.ReLU(),
            ]
            channels = config.width
        self.convs = nn.Sequential(*layers)
        self.absolute = (
            nn.Sequential(nn.Linear(len(CHANNELS) * N_LAGS, config.absolute), nn.ReLU()) if config.absolute else None
        )
        joined = 2 * config.width + len(STATS) + config.absolute
        self.embedding = nn.Sequential(nn.Linear(joined, config.embed_dim), nn.ReLU())
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.embed_dim, len(config.labels))
        self.register_buffer("stats_mean", torch.tensor(config.stats_mean, dtype=torch.float32))
        self.register_buffer("stats_std", torch.tensor(config.stats_std, dtype=torch.float32))

    def embed(self, lags: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """Embeddings of a batch: ``(B, channels, N_LAGS)`` and ``(B, stats)`` -> ``(B, embed_dim)``."""
        h = self.convs(lags)
        pooled = torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1)
        parts = [pooled, (stats - self.stats_mean) / self.stats_std]
        if self.absolute is not None:
            parts.append(self.absolute(lags.flatten(1)))
        return self.embedding(torch.cat(parts, dim=-1))

    def forward(self, lags: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """Class logits, ``(B, labels)``."""
        return self.head(self.dropout(self.embed(lags, stats)))


class StyleClassifier:
    """The rhythm classifier with its feature extraction: audio in, probabilities or embeddings out.

    Attributes:
        config: the :class:`StyleConfig` it was built from.
        net: the torch module (in eval mode).
    """

    def __init__(self, config: StyleConfig, net: StyleNet | None = None) -> None:
        self.config = config
        self.net = net if net is not None else StyleNet(config)
        self.net.eval()

    @property
    def labels(self) -> list[str]:
        """Class names, in the order of the model's outputs."""
        return list(self.config.labels)

    # -- persistence --------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "StyleClassifier":
        """Load a checkpoint folder (``config.json`` + ``model.safetensors``) from local disk.

        Args:
            path: the folder, e.g. ``tunesmith.paths.CHECKPOINTS / "style-classifier"``.

        Returns:
            The classifier, ready to predict.

        Raises:
            FileNotFoundError: the folder or one of its two files is missing.
            ValueError: the checkpoint was trained with other feature settings than this code.
        """
        folder = Path(path)
        config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
        for needed in (config_path, weights_path):
            if not needed.is_file():
                raise FileNotFoundError(f"no {needed.name} in {folder}: not a style-classifier checkpoint")
        config = StyleConfig(**json.loads(config_path.read_text(encoding="utf-8")))
        if config.feature != feature_settings():
            raise ValueError(
                f"{folder} was trained with feature settings {config.feature}, but this code computes "
                f"{feature_settings()}; retrain with python -m tunesmith.style.train"
            )
        net = StyleNet(config)
        net.load_state_dict(load_file(str(weights_path)))
        return cls(config, net)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``path`` (created if needed).

        Returns:
            The folder.
        """
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2) + "\n", encoding="utf-8")
        state = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE))
        return folder

    # -- inference ----------------------------------------------------------------------------

    @torch.no_grad()
    def _run(self, lags: np.ndarray, stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and embeddings for a batch of crop features."""
        z = self.net.embed(torch.from_numpy(lags), torch.from_numpy(stats))
        probs = torch.softmax(self.net.head(z), dim=-1)
        return probs.numpy().astype(np.float64), z.numpy()

    def predict_features(self, lags: np.ndarray, stats: np.ndarray) -> np.ndarray:
        """Class probabilities for precomputed crop features (one row per crop).

        Args:
            lags: ``(crops, len(CHANNELS), N_LAGS)`` from :func:`features` / :func:`crop_features`.
            stats: ``(crops, len(STATS))``.

        Returns:
            ``(crops, labels)`` probabilities.
        """
        return self._run(np.asarray(lags, np.float32), np.asarray(stats, np.float32))[0]

    def predict(self, samples: np.ndarray, sample_rate: int) -> dict[str, float]:
        """Probability of each rhythm for one clip (crops of longer audio are averaged).

        Args:
            samples: mono (or ``(frames, channels)``) float audio, at least :data:`MIN_SECONDS`.
            sample_rate: its rate in Hz.

        Returns:
            ``{label: probability}`` in :attr:`labels` order; the values sum to 1.

        Raises:
            StyleInputError: the audio cannot be judged (the message says why).
        """
        return self.predict_batch([(samples, sample_rate)])[0]

    def predict_wav(self, data: bytes, max_seconds: float | None = None) -> dict[str, float]:
        """:meth:`predict` for an audio file's bytes (WAV, FLAC, OGG ...), as a request carries it.

        Args:
            data: the file's bytes.
            max_seconds: refuse longer audio (checked before decoding); ``None`` for no limit.

        Returns:
            ``{label: probability}``.

        Raises:
            tunesmith.audio.io.AudioError: the bytes are not usable audio.
            StyleInputError: the audio cannot be judged.
        """
        from tunesmith.audio.io import decode_audio

        samples, rate = decode_audio(data, sample_rate=FEATURE_SAMPLE_RATE, max_seconds=max_seconds)
        return self.predict(samples, rate)

    def predict_batch(self, clips: Sequence[tuple[np.ndarray, int]]) -> list[dict[str, float]]:
        """:meth:`predict` for several clips, run through the network in one batch.

        Args:
            clips: ``(samples, sample_rate)`` pairs.

        Returns:
            One ``{label: probability}`` per clip.

        Raises:
            StyleInputError: a clip cannot be judged; the message names which one.
        """
        probs, _ = self._batch(clips)
        return [{label: float(p) for label, p in zip(self.labels, row)} for row in probs]

    def embed(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """The clip's embedding (penultimate layer, averaged over crops), for comparing sets of tunes.

        Args:
            samples: mono float audio, at least :data:`MIN_SECONDS`.
            sample_rate: its rate in Hz.

        Returns:
            float32 vector of ``config.embed_dim`` numbers.
        """
        return self.embed_batch([(samples, sample_rate)])[0]

    def embed_batch(self, clips: Sequence[tuple[np.ndarray, int]]) -> np.ndarray:
        """:meth:`embed` for several clips: ``(clips, embed_dim)``."""
        return self._batch(clips)[1]

    def classify_batch(self, clips: Sequence[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and embeddings of several clips from one pass, as a server returns both.

        Args:
            clips: ``(samples, sample_rate)`` pairs.

        Returns:
            ``(probabilities, embeddings)``: float32 arrays of shape ``(clips, labels)`` (columns in
            :attr:`labels` order, rows summing to 1) and ``(clips, config.embed_dim)``.

        Raises:
            StyleInputError: a clip cannot be judged; the message names which one.
        """
        probs, emb = self._batch(clips)
        return probs.astype(np.float32), emb

    def _batch(self, clips: Sequence[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(clips, tuple) and len(clips) == 2 and isinstance(clips[1], (int, np.integer)):
            raise StyleInputError("predict_batch takes a list of (samples, sample_rate) pairs, not one pair")
        all_lags, all_stats, owners = [], [], []
        for i, clip in enumerate(clips):
            try:
                samples, rate = clip
            except (TypeError, ValueError):
                raise StyleInputError(f"clip {i} must be a (samples, sample_rate) pair") from None
            try:
                lags, stats = features(samples, rate)
            except StyleInputError as exc:
                raise StyleInputError(f"clip {i}: {exc}") from None
            all_lags.append(lags)
            all_stats.append(stats)
            owners += [i] * len(lags)
        if not owners:
            return np.zeros((0, len(self.labels))), np.zeros((0, self.config.embed_dim), np.float32)
        probs, emb = self._run(np.concatenate(all_lags), np.concatenate(all_stats))
        owners_arr = np.asarray(owners)
        n = len(all_lags)
        mean_probs = np.stack([probs[owners_arr == i].mean(axis=0) for i in range(n)])
        mean_emb = np.stack([emb[owners_arr == i].mean(axis=0) for i in range(n)]).astype(np.float32)
        return mean_probs / mean_probs.sum(axis=1, keepdims=True), mean_emb


# --------------------------------------------------------------------------------------------
# Comparing sets of tunes
# --------------------------------------------------------------------------------------------


def frechet_distance(emb_a: np.ndarray | Iterable, emb_b: np.ndarray | Iterable, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two sets of embeddings (as in FID).

    ``|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2))``: zero for identical distributions,
    growing as the sets differ in average rhythm (the means) or in variety (the covariances).
    With fewer clips than embedding dimensions the covariances are singular; like the reference
    FID code, a small ``eps`` is then added to their diagonals before taking the matrix square root.

    Args:
        emb_a: ``(n_a, dim)`` embeddings, e.g. of generated tunes.
        emb_b: ``(n_b, dim)`` embeddings, e.g. of real tunes.
        eps: diagonal offset used only when needed for a finite square root.

    Returns:
        The distance, a non-negative float.

    Raises:
        ValueError: fewer than two embeddings in a set, or the dimensions differ.
    """
    from scipy import linalg

    a = np.asarray(emb_a, dtype=np.float64)
    b = np.asarray(emb_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"embeddings must be (n, dim) arrays of the same dim, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"each set needs at least two embeddings for a covariance, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error", linalg.LinAlgWarning)  # "singular matrix": take the eps route
        try:
            covmean = linalg.sqrtm(cov_a @ cov_b)
            usable = bool(np.all(np.isfinite(covmean)))
        except linalg.LinAlgWarning:
            usable = False
    if not usable:
        offset = np.eye(len(cov_a)) * eps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            covmean = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    covmean = np.real(covmean)
    diff = mu_a - mu_b
    distance = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))
    return max(distance, 0.0)
