"""The tune critic behind the V2 protocol: what notebook 3.2's ``critic_runtime.py`` does in
``load`` and ``predict``, kept here so that runtime fits on one screen.

A request holds a ``header`` and one or more ``candidates`` tensors (a pipeline's join keeps one per
generator: all are read, in order). The answer holds the winner's ``abc`` and ``tempo`` only when
there is a tune to give, every candidate's ``scores``, a ``report``, and ``accept`` or ``retry``,
never both: a pipeline cannot test a value, but a step can wait for a tensor to exist.
"""

from __future__ import annotations

from mlserver.codecs import StringCodec
from mlserver.settings import ModelSettings
from mlserver.types import InferenceRequest, ResponseOutput

from tunesmith.generator.critic import Critic
from tunesmith.music.abc import dance_tempo
from tunesmith.serving.inputs import BadInput, find_input, limit, read_strings


def text_output(name: str, value: str) -> ResponseOutput:
    """One string as a BYTES output of shape ``[1]``, as the model's settings declare it."""
    out = StringCodec.encode_output(name, [value])
    out.shape = [1]  # the contract is [1]; the string codec would say [1, 1]
    return out


class CriticService:
    """One served critic: its limits and its reject policy from the settings, and the corpus index.

    A Seldon Model passes its ``parameters`` as strings ("retry", "0.97"); each is read with its
    type here. ``on_reject: retry`` gives no tune unless accepted; ``min_score`` is a total a winner
    must reach as well.
    """

    def __init__(self, settings: ModelSettings):
        self.on_reject = str(limit(settings, "on_reject", "best"))
        if self.on_reject not in ("best", "retry"):
            raise ValueError(f"on_reject must be 'best' or 'retry', got {self.on_reject!r}")
        self.min_score = float(limit(settings, "min_score", 0.0))
        self.max_candidates = int(limit(settings, "max_candidates", 32))
        self.max_abc_chars = int(limit(settings, "max_abc_chars", 20_000))
        self.critic = Critic.from_corpus()  # every 8-note run of the corpus: ~2 s, or read from its cache

    def read(self, request: InferenceRequest) -> tuple[str, list[str]]:
        """The header and every candidate tune, in order; a 4xx naming the input when they are wrong."""
        header = read_strings(request, "header", max_items=self.max_candidates, max_chars=500)[0]
        tunes = []
        for tensor in [t for t in request.inputs if t.name == "candidates"] or [find_input(request, "candidates")]:
            tunes += read_strings(InferenceRequest(inputs=[tensor]), "candidates",
                                  max_items=self.max_candidates, max_chars=self.max_abc_chars)
        if len(tunes) > self.max_candidates:
            raise BadInput(f"input 'candidates' has {len(tunes)} tunes in all; at most {self.max_candidates}")
        return header, tunes

    def judge(self, header: str, tunes: list[str]) -> list[ResponseOutput]:
        """The verdict's tensors: ``abc`` and ``tempo`` (if a tune is given), ``scores``, ``report``,
        and ``accept`` or ``retry``."""
        try:
            verdict = self.critic.choose(header, tunes)
        except ValueError as exc:  # a header without M: or K:
            raise BadInput(f"input 'header': {exc}") from None
        accept, report = verdict.accept, verdict.report
        if accept and verdict.scores[verdict.winner].total < self.min_score:
            accept = False
            report = report.replace("-> accept", f"-> retry (its total is below min_score {self.min_score:g})", 1)
        outputs = []
        if verdict.winner is not None and (accept or self.on_reject == "best"):
            best = tunes[verdict.winner]
            outputs.append(text_output("abc", best))
            if dance_tempo(best):  # the winner's dance speed; without a known rhythm the synthesizer's default
                outputs.append(ResponseOutput(name="tempo", datatype="INT32", shape=[1], data=[dance_tempo(best)]))
        return outputs + [
            ResponseOutput(name="scores", datatype="FP32", shape=[len(tunes)], data=[s.total for s in verdict.scores]),
            text_output("report", report),
            ResponseOutput(name="accept" if accept else "retry", datatype="BOOL", shape=[1], data=[True]),
        ]
