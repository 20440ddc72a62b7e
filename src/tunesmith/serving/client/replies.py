"""What a call returns: a :class:`Reply` (outputs and who answered) and the studio pipeline's :class:`Studio`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from mlserver.types import InferenceResponse

from tunesmith.serving.client.protocol import route_names


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
