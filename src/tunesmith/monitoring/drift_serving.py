"""The prompt drift detector behind the V2 protocol: what notebook 3.7's ``drift_runtime.py`` does in
``load`` and ``predict``, kept here so that runtime fits on one screen.

Prompts in; the latest test of the last ``window`` prompts against the reference out, under
alibi-detect's names (``is_drift``, ``p_val``, ``distance``, ``threshold``, ``window``). As a side step
of a pipeline the answer reaches no caller: operators read the custom metrics ``drift_p_value`` and
``drift_alarm`` (MLServer's metrics port, as in notebook 2.4) and a WARNING line in the log. Any text
is accepted.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlserver
from mlserver.settings import ModelSettings
from mlserver.types import InferenceRequest, ResponseOutput
from mlserver.utils import get_model_uri

from tunesmith.monitoring.drift import DriftMonitor, load_embedder
from tunesmith.serving.inputs import limit, read_strings

logger = logging.getLogger("mlserver")
DATATYPES = {"is_drift": "BOOL", "p_val": "FP64", "distance": "FP64", "threshold": "FP64", "window": "INT32"}


class DriftService:
    """One served detector: the window of recent prompts' embeddings, tested after every request.

    Settings (``parameters.extra``, strings from a Seldon Model's ``parameters`` too): ``window``,
    ``threshold``, ``max_prompts`` per request, ``torch_threads`` of the embedder. Made in a runtime's
    ``load``, where MLServer lets it register its metrics.
    """

    def __init__(self, settings: ModelSettings, reference: str | Path):
        self.monitor = DriftMonitor.load(reference, window=int(limit(settings, "window", 20)),
                                         threshold=float(limit(settings, "threshold", 0.01)))
        self.max_prompts = int(limit(settings, "max_prompts", 16))
        self.embed = load_embedder(threads=int(limit(settings, "torch_threads", 1)))
        mlserver.register("drift_p_value", "p-value of the latest test of recent prompts against the reference")
        mlserver.register("drift_alarm", "1 if the latest test found drift (p-value below the threshold), else 0")

    @classmethod
    async def load(cls, settings: ModelSettings) -> DriftService:
        """The detector on the reference that ``parameters.uri`` names (``reference.npz`` in the model folder)."""
        return cls(settings, await get_model_uri(settings))

    def observe(self, request: InferenceRequest) -> list[ResponseOutput]:
        """Add the request's prompts to the window, test it, log the metrics; the output tensors."""
        prompts = read_strings(request, "prompt", max_items=self.max_prompts, max_chars=10_000, allow_empty=True)
        result = self.monitor.observe(self.embed(prompts))
        if result.tested:  # nothing to log while the first window fills
            mlserver.log(drift_p_value=result.p_val, drift_alarm=float(result.is_drift))
        if result.is_drift:
            logger.warning("drift-detector: drift in the last %d prompts (p = %.4f < %g); latest: %r",
                           result.window, result.p_val, result.threshold, prompts[-1][:80])
        values = result.to_dict()
        return [ResponseOutput(name=name, datatype=datatype, shape=[1], data=[values[name]])
                for name, datatype in DATATYPES.items()]
