"""The clips of a listening round: a real tune and the arms' tunes, played alike.

A round must not give itself away by anything but the music, so every clip of a set is:

- written for the same header: the real tune comes from the held-out test split (a reel, jig,
  hornpipe or slip jig, :func:`tunesmith.style.data.labelled_tunes`), and each arm is asked for a
  tune under that tune's own meter, key and rhythm;
- the same length in bars (the real tune's opening :data:`BARS` bars, the arms asked for as many);
- played by the synthesizer model with the same instrument and the rhythm's dance tempo;
- cut to the same duration (the shortest clip's, at most :data:`CLIP_SECONDS`) with the same fade-out.

The tune critic of stage 3 scores the generated tunes (:func:`critic_scores`), so that the reveal can
set the listeners' ears beside the model that judges tunes in the ``studio`` pipeline.

The **arms** are the generator versions the server offers (``tune-generator-v1`` and ``-v2``), or,
when a Seldon endpoint lists experiments, the generator models among its experiments' candidates.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

import numpy as np
import requests

from tunesmith.audio.io import decode_audio, encode_wav
from tunesmith.listening.stats import REAL
from tunesmith.listening.votes import Clip, ClipSet
from tunesmith.music.abc import dance_tempo, read_tune
from tunesmith.serving.client import CONNECT_TIMEOUT, GENERATOR, ClientError, MusicClient, seldon_name

CRITIC = "tune-critic"

BARS = 8
"""Bars per clip: long enough to hear a tune's shape, short enough to compare three in a minute."""
CLIP_SECONDS = 15.0
FADE_SECONDS = 0.5
INSTRUMENTS = ("fiddle", "flute", "whistle", "harp", "piano")
"""The synthesizer's instruments a round may use (its ``sine`` is a test tone, not an instrument)."""
MAX_ARMS = 2
"""Arms per round besides the real tune: three clips are as many as a listener can keep in mind."""
DEFAULT_ARMS = ("v1", "v2")
"""The generator versions assumed when the server cannot list its models (a cluster's mesh)."""


@dataclass(frozen=True)
class Arm:
    """A model whose tunes are judged: its name in the statistics and the generator version it is."""

    name: str
    version: str | None = None


def _generator_arm(name: str) -> Arm:
    """``tune-generator-v2`` -> an arm calling the generator at version ``v2``."""
    prefix = GENERATOR + "-"
    return Arm(name, name[len(prefix):] if name.startswith(prefix) else None)


def experiment_candidates(client: MusicClient) -> list[str]:
    """The candidates of the experiments a Seldon endpoint lists (``GET /v2/experiments``), or ``[]``.

    Seldon's own endpoints list no experiments (``seldon experiment status`` does on a cluster), so any
    answer that is not a listing counts as none.
    """
    try:
        response = requests.get(f"{client.url}/v2/experiments", timeout=CONNECT_TIMEOUT)
        listing = response.json() if response.status_code == 200 else []
    except (requests.RequestException, ValueError):
        return []
    experiments = listing.get("experiments", []) if isinstance(listing, dict) else listing
    names = []
    for experiment in experiments if isinstance(experiments, list) else []:
        spec = experiment.get("spec", experiment) if isinstance(experiment, dict) else {}
        for candidate in spec.get("candidates") or []:
            name = candidate.get("name") if isinstance(candidate, dict) else candidate
            if isinstance(name, str) and name not in names:
                names.append(name)
    return names


def discover_arms(client: MusicClient) -> list[Arm]:
    """The arms to judge: the generator versions the server has loaded.

    Talking to MLServer, each loaded version of ``tune-generator``; talking Seldon, each loaded
    ``tune-generator-<version>`` Model, narrowed to the candidates of the endpoint's experiments when
    it lists some that are generators. A server that lists nothing gets :data:`DEFAULT_ARMS`.
    """
    try:
        models = client.models()
    except ClientError:
        return [Arm(seldon_name(GENERATOR, v), v) for v in DEFAULT_ARMS]
    ready = [m for m in models if m.get("state") in ("READY", None)]
    if not client.seldon:
        return [Arm(f"{GENERATOR}-{m['version']}", m["version"]) for m in ready
                if m["name"] == GENERATOR and m.get("version")]
    arms = [_generator_arm(m["name"]) for m in ready if m["name"].startswith(GENERATOR + "-")]
    candidates = experiment_candidates(client)
    chosen = [arm for arm in arms if arm.name in candidates]
    return chosen if len(chosen) >= 1 else arms


def write(client: MusicClient, arm: Arm, header: str, seed: int, bars: int = BARS) -> tuple[str, str]:
    """The tune ``arm`` writes under ``header`` (ABC header lines), and who wrote it.

    Who wrote it is the model the answer's ``x-seldon-route`` names, when there is one: while an
    Experiment splits the traffic to a generator Model between arms, a call to that Model may be
    answered by another one, and the vote must count for the arm that wrote the tune.
    """
    abc = client.compose(header=header, seed=seed, bars=bars, version=arm.version)
    reply = client.last_reply
    answered = reply.models[0] if reply is not None and reply.route and reply.models else arm.name
    return answered, abc


def critic_scores(client: MusicClient, header: str, tunes: list[str]) -> list[float | None]:
    """The tune critic's score (0..1) of each tune under ``header``, or ``None`` for each when the
    server has no critic (it is stage 3's; the rounds do without it)."""
    try:
        scores = client.infer(CRITIC, {"header": [header], "candidates": tunes})["scores"]
    except (ClientError, KeyError):
        return [None] * len(tunes)
    return [float(score) for score in np.asarray(scores, dtype=float).reshape(-1)]


@functools.lru_cache(maxsize=1)
def real_tunes() -> tuple[str, ...]:
    """The test split's tunes of the rhythms the platform knows (reel, jig, hornpipe, slip jig)."""
    from tunesmith.style.data import labelled_tunes  # loads torch: only when a set is first made

    return tuple(tune for tunes in labelled_tunes("test").values() for tune in tunes)


def equal_length(wavs: list[bytes], limit: float = CLIP_SECONDS, fade: float = FADE_SECONDS) -> tuple[list[bytes], float]:
    """The clips cut to the shortest one's duration (at most ``limit`` seconds), each ending with the
    same linear fade-out. Returns the WAV files and their duration in seconds."""
    decoded = [decode_audio(wav) for wav in wavs]
    rate = decoded[0][1]
    length = min(min(len(samples) for samples, _ in decoded), int(limit * rate))
    ramp = np.linspace(1.0, 0.0, min(int(fade * rate), length))
    out = []
    for samples, _ in decoded:
        clip = np.array(samples[:length], dtype=np.float64)
        clip[length - len(ramp):] *= ramp
        out.append(encode_wav(clip, rate))
    return out, length / rate


def make_clip_set(client: MusicClient, arms: list[Arm], rng: random.Random | None = None) -> ClipSet:
    """Compose, play and even out the clips of one round: the real tune and up to :data:`MAX_ARMS` arms.

    Args:
        client: a client of the server (MLServer or a Seldon endpoint).
        arms: the arms to draw from (:func:`discover_arms`).
        rng: chooses the real tune, the arms, the instrument and the seed.

    Raises:
        ValueError: no arms. Client errors pass through.
    """
    if not arms:
        raise ValueError("no generator to judge: the server has no tune-generator loaded")
    from tunesmith.style.data import opening_bars

    rng = rng or random.Random()
    real = rng.choice(real_tunes())
    header, _ = read_tune(real)
    opening = opening_bars(real, BARS)
    instrument = rng.choice(INSTRUMENTS)
    tempo = dance_tempo(real)
    chosen = rng.sample(arms, min(MAX_ARMS, len(arms)))
    seed = rng.randrange(2**31)
    tunes = [(REAL, opening)] + [write(client, arm, header.to_abc(), seed) for arm in chosen]
    critic = [None] + critic_scores(client, header.to_abc(), [abc for _, abc in tunes[1:]])
    wavs = [client.synthesize(abc, tempo=tempo, instrument=instrument)[0] for _, abc in tunes]
    wavs, seconds = equal_length(wavs)
    source = next((line.split(" ", 1)[1] for line in real.splitlines() if line.startswith("%source ")), "test split")
    return ClipSet([Clip(arm, abc, wav, score) for (arm, abc), wav, score in zip(tunes, wavs, critic)],
                   instrument, tempo, seconds,
                   header.meter, header.key, header.rhythm, source)
