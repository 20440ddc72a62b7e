"""The style-classifier runtime from notebook 2.6: recordings in, rhythm probabilities, label and embedding out."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil

import numpy as np
import pytest
import soundfile
from mlserver.context import model_context
from mlserver.metrics.registry import REGISTRY
from mlserver.settings import ModelSettings
from runtime_helpers import output, predict, sample_request

from tunesmith.audio import synth
from tunesmith.serving.inputs import BadInput

SAMPLE = sample_request("style-classifier")
KESH = base64.b64decode(SAMPLE["inputs"][0]["data"][0])  # 8 s of The Kesh, a jig, as 8 kHz FLAC
LABELS = ["reel", "jig", "hornpipe", "slip jig"]
MAGGIE = "X:1\nT:Drowsy Maggie\nR:reel\nM:2/2\nL:1/8\nK:Edor\n|:E2BE dEBE|E2BE AFDF|E2BE dEBE|BABc dAFD:|\n"


def encoded(samples, rate, fmt="WAV", subtype=None) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def reel() -> bytes:
    """Drowsy Maggie at reel tempo, as a 44.1 kHz stereo WAV (converted by the runtime, not refused)."""
    mono = synth.render(MAGGIE, tempo=220, instrument="flute", sample_rate=44100)
    return encoded(np.stack([mono, 0.5 * mono], axis=1), 44100)


def files_input(*files: bytes) -> dict:
    return {"inputs": [{"name": "audio", "datatype": "BYTES", "shape": [len(files)],
                        "data": [base64.b64encode(f).decode() for f in files]}]}


def run(classifier, payload):
    """MLServer runs predict() inside the model's context, which mlserver.log() needs for its labels."""
    with model_context(classifier.settings):
        return predict(classifier, payload)


def rows(response):
    probabilities = np.asarray(output(response, "probabilities").data.root, dtype=np.float32)
    labels = [v.decode() if isinstance(v, bytes) else v for v in output(response, "label").data.root]
    return probabilities.reshape(len(labels), -1), labels


def test_sample_request_hears_a_jig(classifier):
    response = run(classifier, SAMPLE)
    assert response.model_name == "style-classifier"
    shapes = {o.name: (o.datatype, o.shape) for o in response.outputs}
    assert shapes == {"probabilities": ("FP32", [1, 4]), "label": ("BYTES", [1]), "embedding": ("FP32", [1, 48])}
    probabilities, labels = rows(response)
    assert labels == ["jig"]
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert LABELS[int(probabilities.argmax())] == "jig"


def test_the_declared_labels_are_the_checkpoints(classifier):
    declared = next(o.parameters.labels for o in classifier.settings.outputs if o.name == "probabilities")
    assert declared.split(",") == classifier.model.labels == LABELS


def test_a_batch_gives_each_file_its_own_row(classifier, reel):
    together, labels = rows(run(classifier, files_input(KESH, reel, KESH)))
    assert labels == ["jig", "reel", "jig"]
    alone = [rows(run(classifier, files_input(f)))[0][0] for f in (KESH, reel)]
    np.testing.assert_allclose(together, np.stack([alone[0], alone[1], alone[0]]), atol=1e-5)
    embedding = np.asarray(output(run(classifier, files_input(KESH, reel)), "embedding").data.root).reshape(2, -1)
    assert embedding.shape == (2, 48) and not np.allclose(embedding[0], embedding[1])


def test_each_classified_file_is_observed_in_the_custom_metric(classifier, reel):
    def count() -> float:
        return REGISTRY.get_sample_value(
            "rhythm_confidence_count", {"model_name": "style-classifier", "model_version": "v1"}
        ) or 0.0

    before = count()
    run(classifier, files_input(KESH, reel))
    assert count() == before + 2


def nan_wav() -> bytes:
    samples = np.zeros(5 * 8000, dtype=np.float32)
    samples[100] = np.nan
    return encoded(samples, 8000, subtype="FLOAT")


@pytest.mark.parametrize(
    "files, words",
    [
        ([b"this is not audio"], ["'audio'", "not a readable audio file"]),
        ([KESH, b"this is not audio"], ["'audio'[1]", "not a readable audio file"]),
        ([encoded(np.zeros(0, dtype=np.float32), 8000)], ["no samples"]),
        ([encoded(np.zeros(8000, dtype=np.float32) + 0.1, 8000)], ["1.00 s long", "at least 3 s"]),
        ([encoded(np.zeros(5 * 8000, dtype=np.float32), 8000)], ["silent"]),
        ([nan_wav()], ["NaN"]),
        ([encoded(np.zeros(61 * 8000, dtype=np.float32), 8000)], ["61.00 s long", "limit of 60 s"]),
        ([KESH] * 17, ["at most 16 elements"]),
    ],
    ids=["not-audio", "second-row-not-audio", "empty", "too-short", "silent", "nan", "too-long", "too-many-files"],
)
def test_unusable_audio_is_refused_naming_the_problem(classifier, files, words):
    with pytest.raises(BadInput) as caught:
        run(classifier, files_input(*files))
    assert caught.value.status_code == 400
    for word in words:
        assert word in str(caught.value)


def test_text_instead_of_bytes_is_refused(classifier):
    payload = {"inputs": [{"name": "audio", "datatype": "FP32", "shape": [1], "data": [1.0]}]}
    with pytest.raises(BadInput, match="BYTES"):
        run(classifier, payload)


def test_weights_with_other_classes_do_not_load(platform_models, tmp_path):
    folder = tmp_path / "style-classifier"
    settings = json.loads((platform_models / "style-classifier" / "model-settings.json").read_text())
    settings["outputs"][0]["parameters"]["labels"] = "reel,jig,polka,slip jig"
    settings["parameters"]["uri"] = str(platform_models / "style-classifier" / "weights")
    folder.mkdir()
    shutil.copy(platform_models / "style-classifier" / "style_runtime.py", folder)
    (folder / "model-settings.json").write_text(json.dumps(settings))
    model_settings = ModelSettings.parse_file(str(folder / "model-settings.json"))
    runtime = model_settings.implementation(model_settings)
    with pytest.raises(ValueError, match="polka"):
        asyncio.run(runtime.load())
