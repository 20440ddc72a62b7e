"""Session fixtures: the runtimes, loaded once from the materialised solution."""

from __future__ import annotations

import pytest
from mlserver import MLModel
from runtime_helpers import load_runtime


@pytest.fixture(scope="session")
def synthesizer(platform_models) -> MLModel:
    return load_runtime(platform_models, "synthesizer")


@pytest.fixture(scope="session")
def generator(platform_models) -> MLModel:
    return load_runtime(platform_models, "tune-generator")


@pytest.fixture(scope="session")
def prompt_encoder(platform_models) -> MLModel:
    return load_runtime(platform_models, "prompt-encoder")


@pytest.fixture(scope="session")
def audio_fx(platform_models) -> MLModel:
    return load_runtime(platform_models, "audio-fx")


@pytest.fixture(scope="session")
def transcriber(platform_models) -> MLModel:
    return load_runtime(platform_models, "transcriber")


@pytest.fixture(scope="session")
def classifier(platform_models) -> MLModel:
    return load_runtime(platform_models, "style-classifier")


@pytest.fixture(scope="session")
def critic(platform_models) -> MLModel:
    return load_runtime(platform_models, "tune-critic")
