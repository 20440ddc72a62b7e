"""The Makefile's instructor targets, run for real in a scratch copy of the repository layout.

The scratch copy has the Makefile and the notebooks, and uses this repository's environment
(``-o .venv/.installed`` tells make the environment is already set up), so the targets run exactly as
typed in a terminal without touching this checkout's ``models/``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith import paths

TARGETS = ["help", "setup", "up", "serve", "app", "stop", "test", "train", "train-v2", "train-classifier", "eval", "bench",
           "stage-1", "stage-2", "stage-3", "solution", "clean"]


def make(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", f"PY={sys.executable}", *args],
        cwd=cwd, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture
def room(tmp_path) -> Path:
    """A learner's checkout: Makefile, notebooks, and a models/ with their own work in it."""
    for name in ("Makefile", "requirements.txt", "constraints.txt", "pyproject.toml"):
        shutil.copy2(paths.REPO / name, tmp_path / name)
    shutil.copytree(paths.NOTEBOOKS, tmp_path / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (tmp_path / "models" / "my-model").mkdir(parents=True)
    (tmp_path / "models" / "my-model" / "model-settings.json").write_text('{"name": "my-model"}')
    return tmp_path


def test_help_is_the_default_and_lists_every_target():
    result = make(paths.REPO)
    assert result.returncode == 0, result.stderr
    for target in TARGETS:
        assert f" {target} " in result.stdout.replace("\x1b[36m", " ").replace("\x1b[0m", " "), target


@pytest.mark.slow
def test_stage_targets_reset_models_and_keep_the_learners_work(room):
    result = make(room, "stage-2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in (room / "models").iterdir() if p.is_dir()) == ["synthesizer", "tune-generator"]
    assert (room / "models" / "tune-generator" / "weights").is_dir()
    backups = list((room / "backups").glob("models-*/my-model/model-settings.json"))
    assert len(backups) == 1 and "backups" in result.stdout + result.stderr

    result = make(room, "stage-1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [p for p in (room / "models").iterdir() if p.name not in ("README.md", "settings.json")]
    assert len(list((room / "backups").glob("models-*"))) == 2

    result = make(room, "solution")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (room / "models" / "synthesizer" / "model-settings.json").is_file()
