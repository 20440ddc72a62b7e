"""The music calls (compose, synthesize, effects, transcribe, classify, studio), written once for both transports."""

from __future__ import annotations

import random
from typing import Any, Iterable, Mapping, Self, Sequence

import numpy as np
from mlserver.types import RequestInput

from tunesmith.serving.client.errors import BadRequest, ClientError, InferenceFailed
from tunesmith.serving.client.protocol import (
    CLASSIFIER,
    EFFECTS,
    GENERATOR,
    STUDIO,
    STUDIO_BARS,
    SYNTHESIZER,
    TRANSCRIBER,
    seldon_name,
)
from tunesmith.serving.client.replies import Reply, Studio
from tunesmith.serving.client.tensors import _audio_bytes, _output_labels, _scalar, _text, _wav_output


def _effect_names() -> tuple[str, ...]:
    """The effect settings ``audio-fx`` takes, read from :mod:`tunesmith.audio.effects` so they never drift."""
    from tunesmith.audio.effects import PARAM_RANGES

    return tuple(PARAM_RANGES)


class _MusicApi:
    """Calls of the music contract written once on top of :meth:`call` and :meth:`pipeline` (REST or gRPC)."""

    target: str
    seldon: bool = False
    last_reply: Reply | None = None
    """The last model or pipeline call's :class:`Reply`: who answered (``route``), its request id."""

    def call(self, model: str, inputs: Mapping[str, Any] | Iterable[RequestInput], version: str | None = None) -> Reply:
        raise NotImplementedError

    def pipeline(self, name: str, /, **inputs: Any) -> Reply:
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection (pool or channel)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def metadata(self, name: str) -> dict:
        raise NotImplementedError

    def model_name(self, model: str, version: str | None = None) -> str:
        """The name a call for ``model`` at ``version`` goes to: the Seldon Model (:func:`seldon_name`)
        when talking Seldon, else ``model`` itself (MLServer takes the version separately)."""
        return seldon_name(model, version) if self.seldon else model

    def infer(self, model: str, inputs: Mapping[str, Any] | Iterable[RequestInput], version: str | None = None) -> dict:
        """Run any model and decode its outputs.

        Args:
            model: model name, e.g. ``"tune-generator"``.
            inputs: ``{name: value}`` (see :func:`encode_input` for the accepted values) or a list of
                :class:`RequestInput`.
            version: a model version, when the server holds several (talking Seldon: the Model
                ``<model>-<version>``, see :func:`seldon_name`).

        Returns:
            ``{output name: value}`` (see :func:`decode_output`); :attr:`last_reply` says who answered.

        Raises:
            ServerUnavailable, ModelNotReady, BadRequest, InferenceFailed.
        """
        return self.call(model, inputs, version).outputs

    def studio(self, prompt: str, *, seed: int | None = None, bars: int | None = None) -> Studio:
        """Run the :data:`STUDIO` pipeline: candidates from both generator versions, the critic's choice, played.

        The pipeline takes ``prompt``, ``seed`` and ``bars``, and needs all three: a step runs only
        when the tensors it reads arrive, so without a seed the generators would never write.

        Args:
            prompt: what to write, e.g. ``"a lively jig in D"``.
            seed: makes the result repeatable; ``None`` picks a new one (see :attr:`Studio.seed`).
            bars: bars per candidate; ``None`` for :data:`STUDIO_BARS`.

        Returns:
            The winner (ABC and WAV), the critic's score per candidate and its report.

        Raises:
            PipelineNotReady: the endpoint does not serve the pipeline (a plain MLServer has none),
                or its models are still loading. Otherwise as :meth:`pipeline`.
        """
        seed = random.SystemRandom().randrange(2**31) if seed is None else int(seed)
        bars = STUDIO_BARS if bars is None else int(bars)
        reply = self.pipeline(STUDIO, prompt=[prompt], seed=np.asarray([seed], dtype=np.int64),
                              bars=np.asarray([bars], dtype=np.int32))
        outputs = reply.outputs
        if "abc" not in outputs or not len(outputs["abc"]):
            raise InferenceFailed(f"response has no 'abc' output (got {sorted(outputs)})", model=STUDIO)
        scores = [float(v) for v in np.asarray(outputs.get("scores", []), dtype=np.float64).reshape(-1)]
        labels = _output_labels(reply.response, "scores")
        if len(labels) != len(scores):
            labels = [chr(ord("A") + i) if i < 26 else str(i + 1) for i in range(len(scores))]
        report = _text(outputs["report"][0]) if "report" in outputs and len(outputs["report"]) else ""
        wav, rate = _wav_output(outputs, STUDIO) if "audio" in outputs else (None, None)
        return Studio(_text(outputs["abc"][0]), scores, labels, report, wav, rate, reply, seed)

    def compose_many(
        self,
        prompts: Sequence[str] | None,
        *,
        seed: int | None = None,
        temperature: float | None = None,
        bars: int | None = None,
        abc_prefix: str | Sequence[str] | None = None,
        headers: Sequence[str] | None = None,
        version: str | None = None,
        experiment: str | None = None,
    ) -> list[str]:
        """Ask ``tune-generator`` for one tune per prompt (or per header), in one request.

        Args:
            prompts: descriptions such as ``"a lively jig in D"``; one tune comes back for each.
                ``None`` when ``headers`` are given instead.
            seed: makes the result repeatable; ``None`` lets the model choose.
            temperature: sampling temperature (> 0); ``None`` for the model's default.
            bars: how many full bars each tune has, counting those of an opening; ``None`` for the
                model's default.
            abc_prefix: an opening to continue (an ABC body, or a whole tune whose ``M:`` and
                ``K:`` agree with the tune asked for): one for every tune, or a list with one per
                tune (``""`` for none). ``None`` to write from the start. Only a generator whose
                metadata lists the ``abc_prefix`` input uses it (see :meth:`model_inputs`).
            headers: ABC header lines (``X:``, ``M:``, ``L:``, ``K:``, e.g. the prompt-encoder's
                ``header`` output), one per tune, sent *instead of* prompts: the generator takes
                exactly one of the two.
            version: a served version of the generator (``"v1"``, ``"v2"``); ``None`` for the one
                the server picks (the newest).
            experiment: a Seldon Experiment between generator versions to ask instead (``Seldon-Model:
                <experiment>.experiment``): it picks the version, and :attr:`last_reply` says which
                answered. Seldon endpoints only.

        Returns:
            ABC tunes, in the order of ``prompts`` (or ``headers``).
        """
        if experiment and not self.seldon:
            raise ClientError(f"experiment {experiment}: experiments are Seldon's; this client talks to plain MLServer")
        if isinstance(prompts, str) or isinstance(headers, str):
            raise TypeError("compose_many takes lists of prompts or headers; use compose() for one")
        if (prompts is None) == (headers is None):
            raise ValueError("compose_many needs either prompts or headers (exactly one of the two)")
        rows = list(prompts if prompts is not None else headers)
        if not rows:
            raise ValueError("compose_many needs at least one prompt")
        if isinstance(abc_prefix, str):  # the contract is one opening per row
            abc_prefix = [abc_prefix] * len(rows)
        inputs = {
            "prompt": None if prompts is None else rows,
            "header": None if headers is None else rows,
            "abc_prefix": None if abc_prefix is None else list(abc_prefix),
            "seed": None if seed is None else np.asarray([seed], dtype=np.int64),
            "temperature": None if temperature is None else np.asarray([temperature], dtype=np.float32),
            "bars": None if bars is None else np.asarray([bars], dtype=np.int32),
        }
        outputs = self.infer(f"{experiment}.experiment" if experiment else GENERATOR, inputs, version=version)
        if "abc" not in outputs:
            raise InferenceFailed(f"response has no 'abc' output (got {sorted(outputs)})", model=GENERATOR)
        tunes = [t if isinstance(t, str) else bytes(t).decode("utf-8", "replace") for t in outputs["abc"]]
        if len(tunes) != len(rows):
            raise InferenceFailed(f"sent {len(rows)} prompt(s) but got {len(tunes)} tune(s)", model=GENERATOR)
        return tunes

    def compose(
        self,
        prompt: str | None = None,
        *,
        seed: int | None = None,
        temperature: float | None = None,
        bars: int | None = None,
        abc_prefix: str | None = None,
        header: str | None = None,
        version: str | None = None,
        experiment: str | None = None,
    ) -> str:
        """Ask ``tune-generator`` for one tune, from a prompt or from ready header lines.

        Args:
            prompt: a description such as ``"a lively jig in D"``; leave out when ``header`` is given.
            header: ABC header lines to write under, instead of a prompt.
            seed, temperature, bars, abc_prefix, version, experiment: as in :meth:`compose_many`.

        Returns:
            A complete ABC tune with X:, T:, M:, L: and K: headers.
        """
        return self.compose_many(
            None if prompt is None else [prompt], headers=None if header is None else [header],
            seed=seed, temperature=temperature, bars=bars, abc_prefix=abc_prefix, version=version,
            experiment=experiment,
        )[0]

    def synthesize(self, abc: str, *, tempo: int | None = None, instrument: str | None = None) -> tuple[bytes, int]:
        """Ask ``synthesizer`` to play an ABC tune.

        Args:
            abc: the tune, as returned by :meth:`compose`.
            tempo: beats per minute; ``None`` for the tune's own Q: field or the model's default.
            instrument: instrument name understood by the synthesizer; ``None`` for its default.

        Returns:
            ``(wav_bytes, sample_rate)``: a complete WAV file and its sample rate in Hz.
        """
        inputs = {
            "abc": [abc],
            "tempo": None if tempo is None else np.asarray([tempo], dtype=np.int32),
            "instrument": None if instrument is None else [instrument],
        }
        return _wav_output(self.infer(SYNTHESIZER, inputs), SYNTHESIZER)

    def effects(self, wav: bytes, **params: float) -> tuple[bytes, int]:
        """Ask ``audio-fx`` to run its effect chain on an audio file.

        Args:
            wav: the audio file's bytes (WAV, FLAC or OGG; any rate, mono or stereo).
            **params: effect settings by name (``tempo_rate=0.8``, ``reverb_mix=0.3``, ...; see
                ``tunesmith.audio.effects.PARAM_RANGES``); settings left out keep the model's default
                (no change). The server refuses unknown names and out-of-range values.

        Returns:
            ``(wav_bytes, sample_rate)`` of the processed audio.
        """
        known = _effect_names()
        unknown = sorted(set(params) - set(known))
        if unknown:  # the model would ignore an unknown input; a typo should not do nothing
            raise BadRequest(
                f"unknown effect setting(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}", model=EFFECTS
            )
        inputs: dict[str, Any] = {"audio": _audio_bytes(wav)}
        for name, value in params.items():
            if value is not None:
                inputs[name] = np.asarray([value], dtype=np.float32)
        return _wav_output(self.infer(EFFECTS, inputs), EFFECTS)

    def transcribe(self, wav: bytes) -> dict:
        """Ask ``transcriber`` to write down the melody of a recording.

        Args:
            wav: the recording's bytes (WAV, FLAC or OGG; any rate, mono or stereo), e.g. a hummed
                or whistled tune.

        Returns:
            ``{"abc": str, "confidence": float, "tempo": int, "key": str, "meter": str}``.
        """
        outputs = self.infer(TRANSCRIBER, {"audio": _audio_bytes(wav)})
        if "abc" not in outputs or not len(outputs["abc"]):
            raise InferenceFailed(f"response has no 'abc' output (got {sorted(outputs)})", model=TRANSCRIBER)
        result: dict[str, Any] = {"abc": _text(outputs["abc"][0])}
        for name in ("key", "meter"):
            if name in outputs and len(outputs[name]):
                result[name] = _text(outputs[name][0])
        if "confidence" in outputs:
            result["confidence"] = float(_scalar(outputs["confidence"]))
        if "tempo" in outputs:
            result["tempo"] = int(_scalar(outputs["tempo"]))
        return result

    def classify(self, wav: bytes) -> dict[str, float]:
        """Ask ``style-classifier`` which dance rhythm a recording has.

        Args:
            wav: the recording's bytes (WAV, FLAC or OGG; any rate, mono or stereo).

        Returns:
            ``{label: probability}``, most likely first; the probabilities sum to 1.
        """
        probabilities, _ = self.classify_many([wav])
        return dict(sorted(probabilities[0].items(), key=lambda item: -item[1]))

    def classify_many(self, wavs: Sequence[bytes]) -> tuple[list[dict[str, float]], np.ndarray]:
        """Ask ``style-classifier`` about several recordings in one request.

        The class names come from the ``labels`` parameter of the model's declared
        ``probabilities`` output (its metadata), so they are not sent with every answer.

        Args:
            wavs: the recordings' bytes (WAV, FLAC or OGG; any rate, mono or stereo).

        Returns:
            ``(probabilities, embeddings)``: one ``{label: probability}`` per recording (in the
            model's label order), and the recordings' embeddings as a ``(recordings, E)`` array
            (empty ``(recordings, 0)`` if the model sends none), e.g. for
            :func:`tunesmith.style.model.frechet_distance`.
        """
        if isinstance(wavs, (bytes, bytearray, str)):
            raise TypeError("classify_many takes a list of recordings; use classify() for one")
        wavs = [_audio_bytes(w) for w in wavs]
        if not wavs:
            raise ValueError("classify_many needs at least one recording")
        outputs = self.infer(CLASSIFIER, {"audio": wavs})
        if "probabilities" not in outputs:
            raise InferenceFailed(f"response has no 'probabilities' output (got {sorted(outputs)})", model=CLASSIFIER)
        probs = np.asarray(outputs["probabilities"], dtype=np.float64).reshape(len(wavs), -1)
        labels = self._declared_labels(CLASSIFIER)
        if len(labels) != probs.shape[1]:
            raise InferenceFailed(
                f"{probs.shape[1]} probabilities per recording but {len(labels)} class names ({labels})",
                model=CLASSIFIER,
            )
        embeddings = np.asarray(outputs.get("embedding", np.zeros((len(wavs), 0))), dtype=np.float32)
        return [dict(zip(labels, map(float, row))) for row in probs], embeddings.reshape(len(wavs), -1)

    def _declared_labels(self, model: str) -> list[str]:
        """Class names from the ``labels`` parameter of a model's declared ``probabilities`` output.

        The parameter may be a list, or a comma-separated string (gRPC metadata carries only
        scalar parameters, so a list declared in model-settings.json reaches REST clients only).
        """
        for output in self.model_outputs(model):
            labels = (output.get("parameters") or {}).get("labels")
            if output.get("name") == "probabilities" and labels:
                return [v.strip() for v in labels.split(",")] if isinstance(labels, str) else [str(v) for v in labels]
        return []

    def model_inputs(self, model: str) -> list[str]:
        """Names of the inputs a model declares (its metadata), e.g. to see if an option is supported."""
        return [i["name"] for i in self.metadata(model).get("inputs") or []]

    def model_outputs(self, model: str) -> list[dict]:
        """The outputs a model declares (its metadata), as dicts with ``name``, ``datatype``, ``parameters``."""
        return list(self.metadata(model).get("outputs") or [])
