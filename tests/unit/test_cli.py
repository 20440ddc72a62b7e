"""The installed ``tunesmith`` command works and reaches every job the Makefile runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith import cli, offline

TUNESMITH = Path(sys.executable).with_name("tunesmith")


def test_the_installed_command_lists_every_job():
    out = subprocess.run([str(TUNESMITH), "--help"], capture_output=True, text=True, check=True).stdout
    for command in [*cli.COMMANDS, "train", "eval"]:
        assert command in out


def test_python_dash_m_is_the_same_command():
    out = subprocess.run([sys.executable, "-m", "tunesmith", "--help"], capture_output=True, text=True, check=True)
    assert "COMMAND" in out.stdout


@pytest.mark.parametrize("module", sorted({m for m, _, _ in cli.COMMANDS.values()} | set(cli.TRAINERS.values()) | set(cli.EVALUATIONS.values())))
def test_every_command_module_has_a_main(module):
    import importlib

    assert callable(importlib.import_module(module).main)


def test_a_subcommand_forwards_its_options(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["stage", "--help"])
    assert exc.value.code == 0
    assert "--into" in capsys.readouterr().out


def test_eval_options_need_one_evaluation():
    with pytest.raises(SystemExit):
        cli.main(["eval", "--n", "3"])


def test_stop_runs_without_a_server():
    out = subprocess.run([str(TUNESMITH), "stop", "--name", "no-such-run"], capture_output=True, text=True, check=True)
    assert "no server was running" in out.stdout


def test_importing_the_package_makes_the_process_offline():
    env = {k: v for k, v in os.environ.items() if k not in offline.ENVIRONMENT}
    code = "import os, tunesmith; print(os.environ['HF_HUB_OFFLINE'], os.environ['GRADIO_ANALYTICS_ENABLED'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "False"]


def test_a_value_set_on_purpose_wins():
    assert offline.enforce({"HF_HUB_OFFLINE": "0"})["HF_HUB_OFFLINE"] == "0"
