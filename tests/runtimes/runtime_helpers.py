"""Load the stage-1 runtimes in-process, the way MLServer does, from a materialised solution.

No server is started here: ``ModelSettings.parse_file`` + ``settings.implementation`` is exactly
how MLServer imports a runtime from its model folder, then ``load()`` and ``predict()`` are
awaited directly. The model folders come from the notebooks (the shared ``platform_models``
fixture replays their tagged cells), so these tests check the code learners write.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from mlserver import MLModel
from mlserver.settings import ModelSettings
from mlserver.types import InferenceRequest, InferenceResponse

HERE = Path(__file__).parent


def load_runtime(models: Path, name: str) -> MLModel:
    """Import, construct and load the runtime of ``models/<name>`` like MLServer does."""
    settings = ModelSettings.parse_file(str(models / name / "model-settings.json"))
    runtime = settings.implementation(settings)
    assert asyncio.run(runtime.load()) is True
    return runtime


def sample_request(name: str) -> dict:
    """The sample ``inference-request.json`` kept next to these tests, as a dict to vary."""
    return json.loads((HERE / name / "inference-request.json").read_text())


def predict(runtime: MLModel, payload: dict) -> InferenceResponse:
    """Validate ``payload`` as MLServer's REST layer does, then call ``predict``."""
    return asyncio.run(runtime.predict(InferenceRequest.model_validate(payload)))


def output(response: InferenceResponse, name: str):
    return next(o for o in response.outputs if o.name == name)
