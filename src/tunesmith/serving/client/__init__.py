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

The package, one module per concern (everything below is importable from here):

* :mod:`~tunesmith.serving.client.protocol`: addresses, model names, Seldon's headers and naming;
* :mod:`~tunesmith.serving.client.tensors`: Python values to V2 tensors and back;
* :mod:`~tunesmith.serving.client.errors`: the errors, each with a message a person can act on;
* :mod:`~tunesmith.serving.client.replies`: what a call returns (:class:`Reply`, :class:`Studio`);
* :mod:`~tunesmith.serving.client.api`: the music calls, written once for both transports;
* :mod:`~tunesmith.serving.client.rest_client` and :mod:`~tunesmith.serving.client.grpc_client`:
  the transports, :class:`MusicClient` and :class:`GrpcMusicClient`.
"""

from tunesmith.serving.client.errors import (
    BadRequest,
    ClientError,
    InferenceFailed,
    ModelNotReady,
    PipelineNotReady,
    ServerUnavailable,
)
from tunesmith.serving.client.grpc_client import GrpcMusicClient, grpc_infer
from tunesmith.serving.client.protocol import (
    CLASSIFIER,
    CONNECT_TIMEOUT,
    DEFAULT_GRPC_ADDRESS,
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    EFFECTS,
    GENERATOR,
    GRPC_ENV,
    GRPC_MAX_MESSAGE,
    METRICS_URL_ENV,
    NEWEST,
    PIPELINE_VERSION,
    REQUEST_ID,
    SELDON_ENV,
    SELDON_MODEL,
    SELDON_ROUTE,
    STARTING_ENV,
    STUDIO,
    STUDIO_BARS,
    SYNTHESIZER,
    TRANSCRIBER,
    URL_ENV,
    route_names,
    seldon_from_env,
    seldon_name,
    server_message,
)
from tunesmith.serving.client.replies import Reply, Studio
from tunesmith.serving.client.rest_client import MusicClient
from tunesmith.serving.client.tensors import decode_output, decode_outputs, encode_input, encode_inputs

__all__ = [
    "DEFAULT_URL", "DEFAULT_GRPC_ADDRESS", "URL_ENV", "GRPC_ENV", "SELDON_ENV", "STARTING_ENV",
    "METRICS_URL_ENV", "GENERATOR", "SYNTHESIZER", "EFFECTS", "TRANSCRIBER", "CLASSIFIER", "STUDIO",
    "STUDIO_BARS", "SELDON_MODEL", "SELDON_ROUTE", "REQUEST_ID", "PIPELINE_VERSION", "NEWEST",
    "DEFAULT_TIMEOUT", "CONNECT_TIMEOUT", "GRPC_MAX_MESSAGE", "server_message", "seldon_from_env",
    "seldon_name", "route_names", "Reply", "Studio", "ClientError", "ServerUnavailable", "ModelNotReady",
    "BadRequest", "PipelineNotReady", "InferenceFailed", "encode_input", "encode_inputs", "decode_output",
    "decode_outputs", "MusicClient", "GrpcMusicClient", "grpc_infer",
]
