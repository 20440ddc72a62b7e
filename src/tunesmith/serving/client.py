"""Talking to the music models over the V2 inference protocol, by REST or gRPC.

The Gradio app, the notebooks and the benchmarks call the server only through this module, so the
wire details live in one place: how tensors are encoded, how binary audio travels, and how a failed
call is turned into an error a person can act on.

Requests and responses are built with MLServer's own types (:class:`mlserver.types.InferenceRequest`)
and codecs (``StringCodec``, ``Base64Codec``, ``NumpyCodec``) instead of hand-written JSON, so the
client encodes tensors exactly as the server decodes them. Two details of MLServer 1.7.1 shape the
code:

* Over REST, a BYTES element travels as a JSON string, and MLServer turns bytes into that string by
  decoding them as UTF-8. Binary data such as a WAV file is therefore sent and returned as base64
  (``Base64Codec``, ``content_type: "base64"``); raw non-UTF-8 bytes in a REST response make the
  server fail with a 500. Over gRPC bytes travel as they are.
* A model the server does not know answers 404 ("Model X not found"); a model that exists but is
  not loaded answers 400 ("Model X is not ready yet."). Both become :class:`ModelNotReady`.

Example::

    from tunesmith.serving.client import MusicClient

    client = MusicClient()                       # $TUNESMITH_SERVER_URL or http://127.0.0.1:8080
    abc = client.compose("a lively jig in D", seed=7)
    wav, sample_rate = client.synthesize(abc, tempo=120)
    slower, sample_rate = client.effects(wav, tempo_rate=0.8, reverb_mix=0.3)
    heard = client.transcribe(slower)             # {"abc", "confidence", "tempo", "key", "meter"}
    rhythms = client.classify(wav)                # {"jig": 0.9, "reel": 0.05, ...}

The same client talks to a Seldon Core v2 endpoint (``tunesmith gateway``, or a cluster's mesh), where
models and pipelines share one address::

    client = MusicClient("http://127.0.0.1:8080", seldon=True)   # or $TUNESMITH_SELDON=1
    abc = client.compose("a reel in G", version="v1")   # the Seldon Model tune-generator-v1
    client.last_reply.route                              # (":tune-generator-v1_1:",): who answered
    reply = client.pipeline("studio", prompt="a jig in D")
    reply.outputs["abc"], reply.route, reply.request_id

Seldon has no model versions in its paths: a version is a Model of its own, named
``<model>-<version>`` (:func:`seldon_name`), and every call carries the ``Seldon-Model`` header
(gRPC: ``seldon-model`` metadata) that Seldon's envoy routes by; a pipeline is
``<pipeline>.pipeline``. Responses name who answered in ``x-seldon-route`` and ``x-request-id``.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import random
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import requests
from mlserver.codecs import Base64Codec, NumpyCodec, StringCodec
from mlserver.types import (
    InferenceRequest,
    InferenceResponse,
    RepositoryIndexResponse,
    RequestInput,
    ResponseOutput,
)

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_GRPC_ADDRESS = "127.0.0.1:8081"
URL_ENV = "TUNESMITH_SERVER_URL"
GRPC_ENV = "TUNESMITH_GRPC_ADDRESS"
SELDON_ENV = "TUNESMITH_SELDON"
"""Set to ``1`` (``tunesmith up`` does when it runs the gateway): clients talk Seldon unless told otherwise."""
STARTING_ENV = "TUNESMITH_SERVER_STARTING"
"""Set to 1 by a launcher that opens the UI before the server answers (``tunesmith up``): until the
server first answers, the UI's status line says it is starting rather than not running."""
METRICS_URL_ENV = "TUNESMITH_METRICS_URL"
"""MLServer's own metrics endpoint, for the UI's Monitor section (else port ``$METRICS_PORT`` of the server)."""

GENERATOR = "tune-generator"
SYNTHESIZER = "synthesizer"
EFFECTS = "audio-fx"
TRANSCRIBER = "transcriber"
CLASSIFIER = "style-classifier"
STUDIO = "studio"
"""Stage 3's pipeline: both generator versions write candidates, the critic picks one, the synthesizer plays it."""
STUDIO_BARS = 8
"""Bars per candidate when a studio request names none (the pipeline writes several candidates)."""

SELDON_MODEL = "seldon-model"
"""The header (gRPC metadata) Seldon's envoy routes by: ``<model>`` or ``<pipeline>.pipeline``."""
SELDON_ROUTE = "x-seldon-route"
"""Response header: ``:<model>_<n>:`` for every model a request went through, ``:<pipeline>.pipeline:``."""
REQUEST_ID = "x-request-id"
PIPELINE_VERSION = "x-pipeline-version"
NEWEST = {GENERATOR: "v2"}
"""The version a Seldon call gets when it names none. MLServer picks a model's newest version itself;
Seldon has no versions, only Models named ``<model>-<version>``, so the client chooses."""

# Generating a tune on a laptop CPU takes seconds, not milliseconds; a short read timeout would
# report a busy server as a dead one. Connecting, on the other hand, is instant when the server runs.
DEFAULT_TIMEOUT = 120.0
CONNECT_TIMEOUT = 5.0
# A few minutes of WAV audio is several megabytes, above gRPC's 4 MB default message limit.
GRPC_MAX_MESSAGE = 64 * 1024 * 1024

_NOT_READY = re.compile(r"model .* (not found|is not ready)", re.IGNORECASE)
# MLServer's parallel inference workers send an error back as "package.module.ErrorClass: message";
# the dotted class name means nothing to a person reading the message.
_ERROR_CLASS_PREFIX = re.compile(r"^(?:[A-Za-z_]\w*\.)+[A-Za-z_]\w*:\s*")


def server_message(text: str) -> str:
    """The server's error text without a leading ``package.module.ErrorClass:``."""
    return _ERROR_CLASS_PREFIX.sub("", text.strip(), count=1)


def seldon_from_env() -> bool:
    """Whether :data:`SELDON_ENV` asks for Seldon calls (``1``, ``true``, ``yes``)."""
    return os.environ.get(SELDON_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def seldon_name(model: str, version: str | None = None) -> str:
    """The Seldon Model serving ``model`` at ``version``: ``("tune-generator", "v1")`` -> ``tune-generator-v1``.

    A model with several versions is one Seldon Model per version, ``<model>-<version>``; without a
    version the newest (:data:`NEWEST`) is meant, as MLServer would pick it. Other names are kept.
    """
    version = version or NEWEST.get(model)
    return f"{model}-{version}" if version else model


def route_names(route: Sequence[str]) -> list[str]:
    """The models and pipelines named by ``x-seldon-route`` entries, in order:
    ``[":tune-generator-v1_1:", ":studio.pipeline:"]`` -> ``["tune-generator-v1", "studio.pipeline"]``."""
    names = []
    for entry in route:
        name = entry.strip().strip(":")
        if not name.endswith(".pipeline"):
            name = re.sub(r"_\d+$", "", name)
        if name and name not in names:
            names.append(name)
    return names


def _header_values(value: str | None) -> tuple[str, ...]:
    """A repeated response header as its values (``requests`` joins repeats with commas)."""
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


@dataclass(frozen=True)
class Reply:
    """One inference call's outputs and who answered it.

    Attributes:
        name: what was called: a model (its Seldon name when talking Seldon) or a pipeline.
        outputs: ``{output name: value}`` (see :func:`decode_output`).
        route: the ``x-seldon-route`` entries (Seldon only): one per model the request went through,
            then ``:<pipeline>.pipeline:`` for a pipeline.
        request_id: ``x-request-id`` (Seldon only), the key of ``/v2/pipelines/<p>/inspect``.
        model_version: the version in the response body (MLServer fills it; Seldon does not).
        pipeline_version: ``x-pipeline-version``, for a pipeline.
        kind: ``"model"`` or ``"pipeline"``.
        response: the raw :class:`InferenceResponse` (output parameters included).
    """

    name: str
    outputs: dict[str, Any]
    route: tuple[str, ...] = ()
    request_id: str | None = None
    model_version: str | None = None
    pipeline_version: str | None = None
    kind: str = "model"
    response: InferenceResponse | None = field(default=None, repr=False, compare=False)

    @property
    def models(self) -> list[str]:
        """The models that answered, from the route (``["tune-generator-v1"]``); the called name without one."""
        names = [n for n in route_names(self.route) if not n.endswith(".pipeline")]
        return names or ([self.name] if self.kind == "model" else [])

    @property
    def answered_by(self) -> str:
        """Who answered, for people: ``tune-generator-v1``, ``tune-generator v2`` or ``pipeline studio``."""
        if self.kind == "pipeline":
            return f"pipeline {self.name}"
        if self.route:
            return ", ".join(self.models)
        return f"{self.name} {self.model_version}" if self.model_version else self.name


@dataclass(frozen=True)
class Studio:
    """What the ``studio`` pipeline answers (:meth:`_MusicApi.studio`).

    Attributes:
        abc: the winning tune.
        scores: the critic's score of each candidate, 0..1, in candidate order.
        labels: a name per candidate (``A``, ``B``, ... unless the pipeline names them).
        report: the critic's report: who won, and why each other candidate lost.
        wav, sample_rate: the winner, played.
        reply: the whole reply: route, request id, every output.
        seed: the seed sent (the same prompt, seed and bars give the same answer).
    """

    abc: str
    scores: list[float]
    labels: list[str]
    report: str
    wav: bytes | None
    sample_rate: int | None
    reply: Reply
    seed: int | None = None

    @property
    def winner(self) -> str | None:
        """The label of the best-scored candidate (the critic's choice unless all were disqualified)."""
        return self.labels[int(np.argmax(self.scores))] if self.scores else None


# -- errors ---------------------------------------------------------------------------------------
class ClientError(Exception):
    """Base class of everything this client raises on purpose; ``str(err)`` is for people."""


class ServerUnavailable(ClientError):
    """Nothing answers at the server address (connection refused, or no answer in time)."""

    def __init__(self, url: str, detail: str | None = None, seldon: bool = False):
        self.url = url
        self.detail = detail
        start = "`make up` (or `make gateway` for your own manifests)" if seldon else "`make serve`"
        message = f"The inference server at {url} is not running. Start it with {start}."
        if detail:
            message = f"The inference server at {url} {detail}."
        super().__init__(message)


class ModelNotReady(ClientError):
    """The server runs, but the model is unknown to it or not loaded (yet).

    Attributes:
        loading: the server knows the model but it is not ready: still loading (a gateway answers
            while its MLServer starts), or it failed to load.
    """

    def __init__(self, name: str, url: str | None = None, detail: str | None = None, loading: bool = False):
        self.name = name
        self.url = url
        self.detail = detail
        self.loading = loading
        where = f" on {url}" if url else ""
        if loading:
            message = (f"Model {name!r} is not ready yet{where}: it is still loading, or it failed to load "
                       f"(the server's model list says which). Try again in a moment.")
        else:
            message = (f"Model {name!r} is not loaded{where}. Check that its folder is in the models "
                       f"directory the server was started on, and the server log for load errors.")
        super().__init__(message)


class BadRequest(ClientError):
    """The server refused the request (HTTP 4xx / gRPC INVALID_ARGUMENT); the message is its own."""

    def __init__(self, message: str, status: int = 400, model: str | None = None):
        self.message = message
        self.status = status
        self.model = model
        super().__init__(message)


class PipelineNotReady(ClientError):
    """The endpoint serves no such pipeline, or one of its steps' models is not loaded (yet).

    Attributes:
        name: the pipeline.
        loading: ``True`` when the pipeline exists but a step's model is not ready; ``False`` when
            the endpoint does not serve it at all (e.g. a plain MLServer, which has no pipelines).
    """

    def __init__(self, name: str, url: str | None = None, detail: str | None = None, loading: bool = False):
        self.name = name
        self.url = url
        self.detail = detail
        self.loading = loading
        where = f" at {url}" if url else ""
        if loading:  # the detail (a step's gRPC error) says less than the status line does
            message = (f"Pipeline {name!r}{where} is not ready: its models are still loading, or one failed "
                       f"to load (the server's model list says which).")
        else:
            message = f"Pipeline {name!r} is not served{where}" + (f" ({detail})." if detail else ".")
        super().__init__(message)


class InferenceFailed(ClientError):
    """The server accepted the request but failed while running the model (HTTP 5xx)."""

    def __init__(self, message: str, status: int = 500, model: str | None = None):
        self.message = message
        self.status = status
        self.model = model
        prefix = f"model {model!r} failed" if model else "the server failed"
        super().__init__(f"{prefix} (status {status}): {message}")


# -- tensors in, tensors out ----------------------------------------------------------------------
def _one_dimensional(inp: RequestInput) -> RequestInput:
    """MLServer's codecs add a batch dimension ([N, 1]); the music contract says [N]."""
    inp.shape = [len(inp.data)]
    return inp


def encode_input(name: str, value: Any, *, binary: str = "base64") -> RequestInput:
    """Turn one Python value into a V2 request input.

    Args:
        name: the input's name, e.g. ``"prompt"``.
        value: ``str`` or a sequence of ``str`` (BYTES, UTF-8 text); ``bytes`` (BYTES, one binary
            element such as a WAV file) or a sequence of ``bytes`` (BYTES ``[N]``); ``int`` (INT64 [1]); ``float`` (FP32 [1]); a numpy array
            (its own datatype and shape); or a ready :class:`RequestInput`, passed through.
        binary: how ``bytes`` travel: ``"base64"`` for REST JSON, ``"raw"`` for gRPC.

    Returns:
        The request input, with a one-dimensional shape for lists and scalars.
    """
    if isinstance(value, RequestInput):
        return value
    if isinstance(value, str):
        value = [value]
    if isinstance(value, (bytes, bytearray)):
        value = [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (bytes, bytearray)) for v in value):
        if binary == "base64":
            return _one_dimensional(Base64Codec.encode_input(name, [bytes(v) for v in value], use_bytes=False))
        return RequestInput(name=name, datatype="BYTES", shape=[len(value)], data=[bytes(v) for v in value])
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return _one_dimensional(StringCodec.encode_input(name, list(value), use_bytes=binary == "raw"))
    if isinstance(value, bool):
        raise TypeError(f"input {name!r}: booleans are not part of the music models' contract")
    if isinstance(value, (int, np.integer)):
        value = np.asarray([value], dtype=np.int64)
    elif isinstance(value, (float, np.floating)):
        value = np.asarray([value], dtype=np.float32)
    if isinstance(value, np.ndarray):
        inp = NumpyCodec.encode_input(name, value)
        inp.shape = list(value.shape)  # the codec would add a batch dimension to 1-D arrays
        return inp
    raise TypeError(f"input {name!r}: cannot encode a {type(value).__name__} as a V2 tensor")


def encode_inputs(inputs: Mapping[str, Any] | Iterable[RequestInput], *, binary: str = "base64") -> list[RequestInput]:
    """Encode a mapping ``{name: value}`` (or pass through a list of inputs); ``None`` values are left out.

    Leaving out ``None`` lets callers write ``{"seed": seed}`` for optional inputs: the model then
    uses its own default, as the contract says.
    """
    if isinstance(inputs, Mapping):
        return [encode_input(k, v, binary=binary) for k, v in inputs.items() if v is not None]
    return list(inputs)


def decode_output(output: ResponseOutput) -> Any:
    """Turn one V2 response output into Python: ``list[str]``, ``list[bytes]`` or a numpy array.

    BYTES outputs are read by their ``content_type``: ``"base64"`` gives bytes, ``"str"`` gives text.
    Without a content type, text that arrives as a JSON string stays a string, and bytes from gRPC
    become text when they are UTF-8 and stay bytes otherwise.
    """
    content_type = output.parameters.content_type if output.parameters else None
    if output.datatype == "BYTES":
        if content_type == Base64Codec.ContentType:
            return Base64Codec.decode_output(output)
        if content_type == StringCodec.ContentType:
            return StringCodec.decode_output(output)
        values = output.data.root if isinstance(output.data.root, list) else [output.data.root]
        decoded = []
        for value in values:
            if isinstance(value, (bytes, bytearray)):
                try:
                    value = bytes(value).decode("utf-8")
                except UnicodeDecodeError:
                    value = bytes(value)
            decoded.append(value)
        return decoded
    return NumpyCodec.decode_output(output)


def decode_outputs(response: InferenceResponse) -> dict[str, Any]:
    """All outputs of a response as ``{name: decoded value}`` (see :func:`decode_output`)."""
    return {out.name: decode_output(out) for out in response.outputs}


def _as_bytes(value: Any) -> bytes:
    """A binary output element whose sender may or may not have labelled it base64."""
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return value.encode("utf-8")
    value = bytes(value)
    if not value.startswith(b"RIFF"):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            pass
    return value


def _scalar(value: Any) -> Any:
    return np.asarray(value).reshape(-1)[0].item()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else bytes(value).decode("utf-8", "replace")


def _audio_bytes(wav: Any) -> bytes:
    """The audio argument as bytes; a path or text would be sent as a (useless) string otherwise."""
    if not isinstance(wav, (bytes, bytearray, memoryview)):
        raise TypeError(f"audio must be the file's bytes, got {type(wav).__name__}")
    return bytes(wav)


def _wav_output(outputs: dict, model: str) -> tuple[bytes, int]:
    """``(wav_bytes, sample_rate)`` from a response with an ``audio`` WAV output."""
    if "audio" not in outputs or not len(outputs["audio"]):
        raise InferenceFailed(f"response has no 'audio' output (got {sorted(outputs)})", model=model)
    wav = _as_bytes(outputs["audio"][0])
    if not (wav.startswith(b"RIFF") and wav[8:12] == b"WAVE"):
        raise InferenceFailed("the 'audio' output is not a WAV file", model=model)
    if "sample_rate" in outputs:
        return wav, int(_scalar(outputs["sample_rate"]))
    import soundfile  # the WAV header knows the rate too

    return wav, soundfile.info(io.BytesIO(wav)).samplerate


def _output_labels(response: InferenceResponse | None, output: str) -> list[str]:
    """The ``labels`` parameter of one output of a response (a list, or comma-separated text), if any."""
    for out in (response.outputs if response is not None else []):
        if out.name == output and out.parameters is not None:
            labels = out.parameters.model_dump().get("labels")
            if isinstance(labels, str):
                return [v.strip() for v in labels.split(",")]
            if isinstance(labels, (list, tuple)):
                return [str(v) for v in labels]
    return []


def _effect_names() -> tuple[str, ...]:
    """The effect settings ``audio-fx`` takes, read from :mod:`tunesmith.audio.effects` so they never drift."""
    from tunesmith.audio.effects import PARAM_RANGES

    return tuple(PARAM_RANGES)


# -- the music API, shared by both transports ------------------------------------------------------
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


# -- REST -----------------------------------------------------------------------------------------
class MusicClient(_MusicApi):
    """V2 REST client for the music models.

    Args:
        url: server base URL; defaults to ``$TUNESMITH_SERVER_URL``, else ``http://127.0.0.1:8080``.
        timeout: seconds to wait for an answer (generation is slow on a CPU).
        seldon: talk to a Seldon Core v2 endpoint (``tunesmith gateway`` or a cluster's mesh): versions
            are Models of their own (:func:`seldon_name`), every call carries the ``Seldon-Model``
            header, and the model listing is the gateway's ``GET /v2/models``. ``None``: as
            ``$TUNESMITH_SELDON`` says (see :func:`seldon_from_env`).

    One client keeps one HTTP connection pool (a :class:`requests.Session`), so repeated calls do
    not pay for a new TCP connection each time. Use one client per thread.
    """

    def __init__(self, url: str | None = None, timeout: float = DEFAULT_TIMEOUT, seldon: bool | None = None):
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self.target = self.url
        self.timeout = timeout
        self.seldon = seldon_from_env() if seldon is None else bool(seldon)
        self.last_reply = None
        self.session = requests.Session()

    def __repr__(self) -> str:
        return f"MusicClient({self.url!r}{', seldon=True' if self.seldon else ''})"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "MusicClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        timeout = kwargs.pop("timeout", self.timeout)
        try:
            return self.session.request(
                method, self.url + path, timeout=(min(CONNECT_TIMEOUT, timeout), timeout), **kwargs
            )
        except requests.ConnectTimeout as exc:
            raise ServerUnavailable(self.url, seldon=self.seldon) from exc
        except requests.ReadTimeout as exc:
            raise ServerUnavailable(self.url, f"did not answer within {timeout:g} s") from exc
        except requests.ConnectionError as exc:
            raise ServerUnavailable(self.url, seldon=self.seldon) from exc

    @staticmethod
    def _error_text(response: requests.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return response.text.strip() or response.reason
        if isinstance(body, dict) and body.get("error"):
            return server_message(str(body["error"]))
        if isinstance(body, dict) and body.get("detail"):  # FastAPI's own validation errors
            return str(body["detail"])
        return response.text.strip()

    def _raise_for(self, response: requests.Response, model: str | None = None) -> None:
        if response.status_code < 400:
            return
        text = self._error_text(response)
        if model is not None and model.endswith(".experiment") and response.status_code == 404:
            raise BadRequest(text, 404, model)  # the gateway names the experiments it has
        if model is not None and (response.status_code == 503 or "is not ready" in text):
            raise ModelNotReady(model, self.url, text, loading=True)  # a gateway whose MLServer is starting: 503
        if model is not None and (response.status_code == 404 or _NOT_READY.search(text)):
            raise ModelNotReady(model, self.url, text)
        if response.status_code < 500:
            raise BadRequest(text, response.status_code, model)
        raise InferenceFailed(text, response.status_code, model)

    def _raise_for_pipeline(self, response: requests.Response, name: str) -> None:
        """A pipeline's refusal: 404 not served; a step's model not loaded is "not ready"; else as a model's.

        A failed step answers 400 with Seldon's plain text ``<step> : <error>``.
        """
        if response.status_code < 400:
            return
        text = self._error_text(response)
        if response.status_code == 404:
            raise PipelineNotReady(name, self.url, text)
        if response.status_code in (424, 503) or _NOT_READY.search(text) or "code = Unavailable" in text:
            raise PipelineNotReady(name, self.url, text, loading=True)
        if response.status_code < 500:
            raise BadRequest(text, response.status_code, name)
        raise InferenceFailed(text, response.status_code, name)

    def _seldon_header(self, name: str) -> dict[str, str]:
        return {SELDON_MODEL: name} if self.seldon else {}

    def _model_path(self, model: str, version: str | None) -> tuple[str, str]:
        """``(name, path prefix)`` of a model call: Seldon has no ``/versions/`` path, MLServer has."""
        if self.seldon:
            name = seldon_name(model, version)
            return name, f"/v2/models/{name}"
        return model, f"/v2/models/{model}" + (f"/versions/{version}" if version else "")

    @staticmethod
    def _route(response: requests.Response) -> tuple[tuple[str, ...], str | None, str | None]:
        headers = response.headers
        return _header_values(headers.get(SELDON_ROUTE)), headers.get(REQUEST_ID), headers.get(PIPELINE_VERSION)

    # -- server and models ------------------------------------------------------------------------
    def live(self) -> bool:
        """Whether the server answers its liveness probe; ``False`` when nothing runs at the URL."""
        try:
            return self._request("GET", "/v2/health/live", timeout=CONNECT_TIMEOUT).status_code == 200
        except ServerUnavailable:
            return False

    def ready(self) -> bool:
        """Whether the server reports every model loaded (``/v2/health/ready``)."""
        try:
            return self._request("GET", "/v2/health/ready", timeout=CONNECT_TIMEOUT).status_code == 200
        except ServerUnavailable:
            return False

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Whether model ``name`` (at ``version``) is loaded and can serve requests.

        Raises:
            ServerUnavailable: nothing answers at the URL (so "not ready" is not misread as "down").
        """
        target, path = self._model_path(name, version)
        return self._request("GET", path + "/ready", timeout=CONNECT_TIMEOUT,
                             headers=self._seldon_header(target)).status_code == 200

    def models(self) -> list[dict]:
        """Every model the server knows: ``[{"name", "version", "state", "reason"}, ...]``.

        MLServer answers from its repository index (``POST /v2/repository/index``). Talking Seldon,
        the list is the gateway's ``GET /v2/models`` (Seldon names, no versions): Seldon keeps the
        repository API inside the cluster, and a cluster's mesh has no listing (``seldon model status``
        tells there), which is a :class:`ClientError` here.
        """
        if not self.seldon:
            response = self._request("POST", "/v2/repository/index", json={})
            self._raise_for(response)
            index = RepositoryIndexResponse.model_validate(response.json())
            return [item.model_dump(mode="json") for item in index]
        response = self._request("GET", "/v2/models", timeout=CONNECT_TIMEOUT * 2)
        if response.status_code == 404:
            raise ClientError(f"{self.url} lists no models (GET /v2/models is tunesmith gateway's; on a "
                              f"cluster, `seldon model status` lists them)")
        self._raise_for(response)
        return [
            {"name": m["name"], "version": None, "state": m.get("state"), "reason": m.get("reason") or ""}
            for m in response.json().get("models", [])
        ]

    def pipelines(self) -> list[dict]:
        """The pipelines a gateway serves: ``[{"name", "version", "steps", "ready"}, ...]`` (``GET /v2/pipelines``).

        Raises:
            ClientError: the endpoint lists no pipelines (a plain MLServer has none).
        """
        response = self._request("GET", "/v2/pipelines", timeout=CONNECT_TIMEOUT * 2)
        if response.status_code == 404:
            raise ClientError(f"{self.url} serves no pipelines: pipelines run on a Seldon endpoint (`make up` "
                              f"with stage 3's manifests, or `make gateway`)")
        self._raise_for(response)
        return list(response.json().get("pipelines", []))

    def pipeline_ready(self, name: str) -> bool:
        """Whether pipeline ``name`` is served and every step's model is loaded (``/v2/pipelines/{name}/ready``).

        Raises:
            ServerUnavailable: nothing answers at the URL.
        """
        response = self._request("GET", f"/v2/pipelines/{name}/ready", timeout=CONNECT_TIMEOUT,
                                 headers={SELDON_MODEL: f"{name}.pipeline"})
        return response.status_code == 200

    def metadata(self, name: str) -> dict:
        """Model metadata (declared inputs and outputs) from ``GET /v2/models/{name}``."""
        target, _ = self._model_path(name, None)
        response = self._request("GET", f"/v2/models/{target}", headers=self._seldon_header(target))
        self._raise_for(response, model=target)
        return response.json()

    # -- inference --------------------------------------------------------------------------------
    def _post_infer(self, model: str, request: InferenceRequest, version: str | None) -> tuple[str, requests.Response]:
        name, path = self._model_path(model, version)
        response = self._request(
            "POST",
            path + "/infer",
            data=request.model_dump_json(exclude_none=True),
            headers={"Content-Type": "application/json", **self._seldon_header(name)},
        )
        self._raise_for(response, model=name)
        return name, response

    def infer_request(self, model: str, request: InferenceRequest, version: str | None = None) -> InferenceResponse:
        """Send a ready-made :class:`InferenceRequest` and return the raw :class:`InferenceResponse`."""
        _, response = self._post_infer(model, request, version)
        return InferenceResponse.model_validate(response.json())

    def call(self, model: str, inputs: Mapping[str, Any] | Iterable[RequestInput], version: str | None = None) -> Reply:
        """Run any model; its decoded outputs and who answered (see :meth:`infer`)."""
        request = InferenceRequest(inputs=encode_inputs(inputs, binary="base64"))
        name, response = self._post_infer(model, request, version)
        answer = InferenceResponse.model_validate(response.json())
        route, request_id, _ = self._route(response)
        self.last_reply = Reply(name, decode_outputs(answer), route, request_id, answer.model_version,
                                response=answer)
        return self.last_reply

    def pipeline(self, name: str, /, **inputs: Any) -> Reply:
        """Run a Seldon pipeline: ``POST /v2/pipelines/{name}/infer`` with ``Seldon-Model: {name}.pipeline``.

        Args:
            name: the pipeline, e.g. :data:`STUDIO`.
            **inputs: its inputs by name (values as :func:`encode_input` takes them).

        Returns:
            The outputs, the route (every model the request went through, then the pipeline), the
            request id and the pipeline version.

        Raises:
            PipelineNotReady: no such pipeline here, or a step's model is not loaded yet.
            BadRequest: a step refused its input (Seldon's text ``<step> : <error>``).
            ServerUnavailable, InferenceFailed.
        """
        request = InferenceRequest(inputs=encode_inputs(inputs, binary="base64"))
        response = self._request(
            "POST",
            f"/v2/pipelines/{name}/infer",
            data=request.model_dump_json(exclude_none=True),
            headers={"Content-Type": "application/json", SELDON_MODEL: f"{name}.pipeline"},
        )
        self._raise_for_pipeline(response, name)
        answer = InferenceResponse.model_validate(response.json())
        route, request_id, version = self._route(response)
        self.last_reply = Reply(name, decode_outputs(answer), route, request_id, None, version, "pipeline",
                                response=answer)
        return self.last_reply


# -- gRPC -----------------------------------------------------------------------------------------
class GrpcMusicClient(_MusicApi):
    """The same calls as :class:`MusicClient` over V2 gRPC, with MLServer's generated stubs.

    Args:
        address: ``host:port`` of the gRPC endpoint; defaults to ``$TUNESMITH_GRPC_ADDRESS``, else
            ``127.0.0.1:8081``.
        timeout: seconds to wait for an answer.
        seldon: talk to a Seldon endpoint, as in :class:`MusicClient`: the ``seldon-model`` metadata
            names the Model (``<model>-<version>``) or ``<pipeline>.pipeline``.

    gRPC sends tensors as protobuf (binary, no base64, no JSON parsing), which is what the REST vs
    gRPC benchmark measures.
    """

    def __init__(self, address: str | None = None, timeout: float = DEFAULT_TIMEOUT, seldon: bool | None = None):
        import grpc
        from mlserver.grpc import dataplane_pb2_grpc, model_repository_pb2_grpc

        self.address = address or os.environ.get(GRPC_ENV) or DEFAULT_GRPC_ADDRESS
        self.target = f"grpc://{self.address}"
        self.timeout = timeout
        self.seldon = seldon_from_env() if seldon is None else bool(seldon)
        self.last_reply = None
        self._grpc = grpc
        self.channel = grpc.insecure_channel(
            self.address,
            options=[
                ("grpc.max_send_message_length", GRPC_MAX_MESSAGE),
                ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE),
            ],
        )
        self.stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self.repository = model_repository_pb2_grpc.ModelRepositoryServiceStub(self.channel)

    def __repr__(self) -> str:
        return f"GrpcMusicClient({self.address!r}{', seldon=True' if self.seldon else ''})"

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "GrpcMusicClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _seldon_metadata(self, name: str) -> tuple[tuple[str, str], ...]:
        return ((SELDON_MODEL, name),) if self.seldon else ()

    def _call(self, method, message, model: str | None = None, timeout: float | None = None,
              metadata: tuple[tuple[str, str], ...] = (), pipeline: str | None = None):
        """One unary call; returns ``(answer, call)`` (the call holds the reply's initial metadata)."""
        grpc = self._grpc
        timeout = self.timeout if timeout is None else timeout
        try:
            return method.with_call(message, timeout=timeout, metadata=metadata or None)
        except grpc.RpcError as exc:
            code, text = exc.code(), server_message(exc.details() or "")
            if code == grpc.StatusCode.UNAVAILABLE and model is not None and "still be starting" in text:
                raise ModelNotReady(model, self.target, text, loading=True) from exc  # a gateway's MLServer starts
            if code == grpc.StatusCode.UNAVAILABLE:
                raise ServerUnavailable(self.target, seldon=self.seldon) from exc
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ServerUnavailable(self.target, f"did not answer within {timeout:g} s") from exc
            if pipeline is not None:
                self._raise_pipeline(exc, code, text, pipeline)
            if model is not None and "is not ready" in text:
                raise ModelNotReady(model, self.target, text, loading=True) from exc
            if model is not None and (code == grpc.StatusCode.NOT_FOUND or _NOT_READY.search(text)):
                raise ModelNotReady(model, self.target, text) from exc
            if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                status = {grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.FAILED_PRECONDITION: 422}.get(code, 400)
                raise BadRequest(text, status, model) from exc
            raise InferenceFailed(text or code.name, 500, model) from exc

    def _raise_pipeline(self, exc, code, text: str, name: str) -> None:
        """A pipeline's refusal over gRPC, as :meth:`MusicClient._raise_for_pipeline` reads REST's.

        A failed step is UNKNOWN with Seldon's text ``<step> : <error>``; the gateway adds the step's
        HTTP status as ``x-seldon-step-status`` trailing metadata.
        """
        grpc = self._grpc
        if code == grpc.StatusCode.NOT_FOUND:
            raise PipelineNotReady(name, self.target, text) from exc
        if code == grpc.StatusCode.FAILED_PRECONDITION or _NOT_READY.search(text) or "code = Unavailable" in text:
            raise PipelineNotReady(name, self.target, text, loading=True) from exc
        trailing = dict((k, v) for k, v in (exc.trailing_metadata() or ()) if isinstance(v, str))
        status = int(trailing.get("x-seldon-step-status", "0") or 0)
        if code == grpc.StatusCode.INVALID_ARGUMENT or 400 <= status < 500:
            raise BadRequest(text, status or 400, name) from exc
        raise InferenceFailed(text or code.name, status or 500, name) from exc

    @staticmethod
    def _route(call) -> tuple[tuple[str, ...], str | None, str | None]:
        metadata = [(k, v) for k, v in (call.initial_metadata() or ()) if isinstance(v, str)]
        route = tuple(v for k, v in metadata if k == SELDON_ROUTE)
        first = lambda key: next((v for k, v in metadata if k == key), None)  # noqa: E731
        return route, first(REQUEST_ID), first(PIPELINE_VERSION)

    def live(self) -> bool:
        """Whether the server answers ``ServerLive``; ``False`` when nothing runs at the address."""
        from mlserver.grpc import dataplane_pb2 as pb

        try:
            return self._call(self.stub.ServerLive, pb.ServerLiveRequest(), timeout=CONNECT_TIMEOUT)[0].live
        except ServerUnavailable:
            return False

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Whether model ``name`` is loaded; raises :class:`ServerUnavailable` when the server is down."""
        from mlserver.grpc import dataplane_pb2 as pb

        target = self.model_name(name, version)
        message = pb.ModelReadyRequest(name=target, version="" if self.seldon else version or "")
        try:
            answer, _ = self._call(self.stub.ModelReady, message, model=target, timeout=CONNECT_TIMEOUT,
                                   metadata=self._seldon_metadata(target))
        except (ModelNotReady, BadRequest):
            return False
        return answer.ready

    def pipeline_ready(self, name: str) -> bool:
        """Whether pipeline ``name`` is served and its steps' models loaded (``ModelReady`` of ``<name>.pipeline``)."""
        from mlserver.grpc import dataplane_pb2 as pb

        try:
            answer, _ = self._call(self.stub.ModelReady, pb.ModelReadyRequest(name=f"{name}.pipeline"),
                                   model=name, timeout=CONNECT_TIMEOUT, metadata=((SELDON_MODEL, f"{name}.pipeline"),))
        except (ModelNotReady, BadRequest):
            return False
        return answer.ready

    def models(self) -> list[dict]:
        """The server's model repository, as :meth:`MusicClient.models` returns it.

        Raises:
            ClientError: talking Seldon, which keeps the repository service inside (the gateway
                lists its models over REST, ``GET /v2/models``).
        """
        from mlserver.grpc import model_repository_pb2 as mr_pb

        if self.seldon:
            raise ClientError(f"{self.target} lists no models over gRPC: Seldon keeps the repository service "
                              f"inside; ask the REST endpoint (GET /v2/models on tunesmith gateway)")
        answer, _ = self._call(self.repository.RepositoryIndex, mr_pb.RepositoryIndexRequest())
        # Read by hand: MLServer 1.7.1's RepositoryIndexResponseConverter.to_types is not
        # implemented, and its server writes states as "State.READY" rather than "READY".
        return [
            {
                "name": m.name,
                "version": m.version or None,
                "state": m.state.removeprefix("State."),
                "reason": m.reason,
            }
            for m in answer.models
        ]

    def metadata(self, name: str) -> dict:
        """Model metadata (declared inputs and outputs), as :meth:`MusicClient.metadata` returns it."""
        from mlserver.grpc import dataplane_pb2 as pb
        from mlserver.grpc.converters import ModelMetadataResponseConverter

        target = self.model_name(name)
        answer, _ = self._call(self.stub.ModelMetadata, pb.ModelMetadataRequest(name=target), model=target,
                               metadata=self._seldon_metadata(target))
        return ModelMetadataResponseConverter.to_types(answer).model_dump(mode="json", exclude_none=True)

    def _infer(self, model: str, request: InferenceRequest, version: str | None):
        from mlserver.grpc.converters import ModelInferRequestConverter, ModelInferResponseConverter

        name = self.model_name(model, version)
        message = ModelInferRequestConverter.from_types(
            request, model_name=name, model_version="" if self.seldon else version or ""
        )
        answer, call = self._call(self.stub.ModelInfer, message, model=name, metadata=self._seldon_metadata(name))
        return name, ModelInferResponseConverter.to_types(answer), call

    def infer_request(self, model: str, request: InferenceRequest, version: str | None = None) -> InferenceResponse:
        """Send a ready-made :class:`InferenceRequest` over gRPC and return the decoded response type."""
        return self._infer(model, request, version)[1]

    def call(self, model: str, inputs: Mapping[str, Any] | Iterable[RequestInput], version: str | None = None) -> Reply:
        """Run any model over gRPC; arguments, result and errors as in :meth:`MusicClient.call`."""
        request = InferenceRequest(inputs=encode_inputs(inputs, binary="raw"))
        name, answer, call = self._infer(model, request, version)
        route, request_id, _ = self._route(call)
        self.last_reply = Reply(name, decode_outputs(answer), route, request_id, answer.model_version or None,
                                response=answer)
        return self.last_reply

    def pipeline(self, name: str, /, **inputs: Any) -> Reply:
        """Run a Seldon pipeline over gRPC (``seldon-model: <name>.pipeline``); as :meth:`MusicClient.pipeline`."""
        from mlserver.grpc.converters import ModelInferRequestConverter, ModelInferResponseConverter

        request = InferenceRequest(inputs=encode_inputs(inputs, binary="raw"))
        message = ModelInferRequestConverter.from_types(request, model_name=f"{name}.pipeline", model_version="")
        answer, call = self._call(self.stub.ModelInfer, message, metadata=((SELDON_MODEL, f"{name}.pipeline"),),
                                  pipeline=name)
        response = ModelInferResponseConverter.to_types(answer)
        route, request_id, version = self._route(call)
        self.last_reply = Reply(name, decode_outputs(response), route, request_id, None, version, "pipeline",
                                response=response)
        return self.last_reply


def grpc_infer(address: str, model: str, inputs: Mapping[str, Any], version: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """One gRPC inference call without keeping a client around (opens and closes a channel).

    Args:
        address: ``host:port`` of the server's gRPC endpoint.
        model, inputs, version: as in :meth:`MusicClient.infer`.
        timeout: seconds to wait for an answer.
    """
    with GrpcMusicClient(address, timeout=timeout) as client:
        return client.infer(model, inputs, version)
