"""Stage resets rebuild models/ from the notebooks' own cells and never lose a learner's work."""

from __future__ import annotations

import json
import asyncio
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from mlserver.settings import ModelSettings
from mlserver.utils import get_model_uri

from tunesmith import paths
from tunesmith.workshop import stages

BOTH = {"synthesizer", "tune-generator"}


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> content digest of every model file (what 'the same folder' means here).

    The server settings beside the models (``settings.json``) are rewritten at every reset, not kept
    as the learner's work, so they are left out.
    """
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.relative_to(folder).parts != ("settings.json",)
    }


@pytest.fixture(scope="module")
def stage_2(tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("stage2") / "models"
    stages.materialize("stage-2", models, backup=False)
    return models


def test_notebooks_are_found_in_reading_order():
    found = stages.notebooks()
    assert [nb.path.name for nb in found][:4] == [
        "1.1-microservices-and-the-v2-protocol.ipynb",
        "1.2-your-first-runtime-the-synthesizer.ipynb",
        "1.3-serving-the-tune-generator.ipynb",
        "1.4-building-the-ui.ipynb",
    ]
    assert [(nb.stage, nb.n) for nb in found] == sorted((nb.stage, nb.n) for nb in found)


@pytest.mark.parametrize(
    "given, expected",
    [(1, 1), ("2", 2), ("stage-3", 3), ("Stage-2", 2), ("stage2", 2), ("solution", None), ("SOLUTION", None)],
)
def test_stage_names(given, expected):
    assert stages.parse_stage(given) == expected


@pytest.mark.parametrize("bad", ["stage-0", 0, "final", "", "stage-x", True])
def test_unknown_stages_are_refused_by_name(bad):
    with pytest.raises(ValueError, match="stage"):
        stages.parse_stage(bad)


def test_every_tagged_cell_can_be_replayed():
    """A tagged cell is %%writefile or self-contained Python without IPython syntax."""
    cells = stages.cells_for("solution")
    assert cells, "no cell is tagged 'materialize'"
    for origin, source in cells:
        first = source.lstrip("\n").splitlines()[0]
        if first.startswith("%%writefile"):
            continue
        assert not any(line.lstrip().startswith(("!", "%")) for line in source.splitlines()), (origin, source)
        compile(source, str(origin), "exec")


def test_stage_1_empties_models_and_backs_it_up(tmp_path, capsys):
    models = tmp_path / "models"
    (models / "synthesizer").mkdir(parents=True)
    (models / "synthesizer" / "synth_runtime.py").write_text("# my own work\n")
    (models / "README.md").write_text("kept in git\n")

    backup = stages.materialize("stage-1", models)

    assert sorted(p.name for p in models.iterdir()) == sorted(stages.KEEP)
    assert backup is not None and backup.parent == tmp_path / "backups"
    assert backup.name.startswith("models-")
    assert (backup / "synthesizer" / "synth_runtime.py").read_text() == "# my own work\n"
    assert str(backup) in capsys.readouterr().out


def test_stage_1_on_an_empty_folder_needs_no_backup(tmp_path):
    assert stages.materialize(1, tmp_path / "models") is None
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["settings.json"]
    assert not (tmp_path / "backups").exists()


def test_stage_2_builds_both_model_folders(stage_2):
    assert {p.name for p in stage_2.iterdir()} - stages.KEEP == BOTH
    for name in BOTH:
        settings = ModelSettings.parse_file(str(stage_2 / name / "model-settings.json"))
        assert settings.name == name
        module = settings.implementation_.split(".")[0]
        assert (stage_2 / name / f"{module}.py").is_file()
    modules = [ModelSettings.parse_file(str(stage_2 / n / "model-settings.json")).implementation_ for n in BOTH]
    assert len({m.split(".")[0] for m in modules}) == len(modules), "runtime module names must differ"


def test_generator_folder_is_self_contained(stage_2):
    settings = ModelSettings.parse_file(str(stage_2 / "tune-generator" / "model-settings.json"))
    assert settings.parameters.version == "v1"
    weights = Path(asyncio.run(get_model_uri(settings)))
    assert weights == (stage_2 / "tune-generator" / "weights").resolve()
    assert not weights.is_symlink()
    assert snapshot(weights) == snapshot(paths.CHECKPOINTS / "tune-generator")


def test_limits_are_explicit_settings(stage_2):
    generator = ModelSettings.parse_file(str(stage_2 / "tune-generator" / "model-settings.json"))
    synthesizer = ModelSettings.parse_file(str(stage_2 / "synthesizer" / "model-settings.json"))
    for key in ("max_prompts", "max_prompt_chars", "max_bars", "max_temperature", "torch_threads"):
        assert key in generator.parameters.extra, key
    for key in ("max_abc_chars", "max_audio_seconds"):
        assert key in synthesizer.parameters.extra, key


def test_learner_work_is_backed_up_and_the_message_says_where(tmp_path, capsys):
    models = tmp_path / "models"
    (models / "my-model").mkdir(parents=True)
    (models / "my-model" / "notes.txt").write_text("half-finished\n")

    backup = stages.materialize("stage-2", models)

    assert (backup / "my-model" / "notes.txt").read_text() == "half-finished\n"
    assert not (models / "my-model").exists()
    assert {p.name for p in models.iterdir()} - stages.KEEP == BOTH
    assert f"moved to {backup}" in capsys.readouterr().out


def test_materialising_twice_gives_the_same_folder(tmp_path, stage_2):
    models = tmp_path / "models"
    stages.materialize("stage-2", models)
    first = snapshot(models)
    backup = stages.materialize("stage-2", models)
    assert snapshot(models) == first == snapshot(stage_2)
    assert backup is not None and snapshot(backup) == first  # the first result was kept, not lost


def test_later_stages_contain_earlier_ones(tmp_path, stage_2):
    """Later stages keep every earlier file; a later notebook may rewrite one (2.5 rewrites the
    generator's runtime and settings for batching and versions), but never drops it."""
    earlier = snapshot(stage_2)
    for stage in ("stage-3", "solution"):
        models = tmp_path / stage
        stages.materialize(stage, models, backup=False)
        later = snapshot(models)
        assert later.keys() >= earlier.keys(), stage
        rewritten = {path for path in earlier if later[path] != earlier[path]}
        assert rewritten <= {"tune-generator/generator_runtime.py", "tune-generator/model-settings.json"}, stage


def test_no_backup_deletes_instead(tmp_path):
    models = tmp_path / "models"
    (models / "old").mkdir(parents=True)
    assert stages.materialize(1, models, backup=False) is None
    assert [p.name for p in models.iterdir()] == ["settings.json"]
    assert not (tmp_path / "backups").exists()


def test_the_repository_models_folder_is_backed_up_under_backups(tmp_path, monkeypatch):
    repo_models = tmp_path / "repo" / "models"
    (repo_models / "synthesizer").mkdir(parents=True)
    monkeypatch.setattr(paths, "MODELS", repo_models)
    monkeypatch.setattr(paths, "BACKUPS", tmp_path / "repo" / "backups")
    backup = stages.materialize(1, repo_models)
    assert backup.parent == tmp_path / "repo" / "backups"


def test_backups_made_in_the_same_second_do_not_collide(tmp_path):
    models = tmp_path / "models"
    backups = []
    for i in range(3):
        (models / f"work-{i}").mkdir(parents=True)
        backups.append(stages.clear(models))
    assert len(set(backups)) == 3
    assert all((b / f"work-{i}").is_dir() for i, b in enumerate(backups))


def test_writefile_replay_matches_ipython(tmp_path):
    """The native %%writefile replay writes byte for byte what IPython's magic writes."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    cells = [
        "%%writefile {d}/a.py\nprint('no trailing newline')",
        "%%writefile {d}/b.json\n{{\"x\": 1}}\n\n",
        '\n%%writefile "{d}/c d.txt"\nline\n',
        "%%writefile {d}/e.txt\nfirst\n",
        "%%writefile -a {d}/e.txt\nsecond",
    ]
    ipython_dir, replay_dir = tmp_path / "ipython", tmp_path / "replay"
    ipython_dir.mkdir()
    replay_dir.mkdir()
    for cell in cells:
        shell.run_cell(cell.format(d=ipython_dir), store_history=False).raise_error()
        stages._writefile(cell.format(d=replay_dir), tmp_path)
    assert snapshot(replay_dir) == snapshot(ipython_dir)
    assert len(snapshot(replay_dir)) == 4


def test_cli_builds_a_stage_into_a_folder(tmp_path):
    models = tmp_path / "platform" / "models"
    result = subprocess.run(
        [sys.executable, "-m", "tunesmith.workshop.stages", "stage-2", "--into", str(models), "--no-backup"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert {p.name for p in models.iterdir()} - stages.KEEP == BOTH
    assert "stage 2" in result.stdout


def test_cli_refuses_an_unknown_stage(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tunesmith.workshop.stages", "stage-zero", "--into", str(tmp_path / "m")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "unknown stage" in result.stderr
    assert not (tmp_path / "m").exists()


def test_the_manifests_beside_the_models_are_reset_and_backed_up_too(tmp_path, capsys):
    models, manifests = tmp_path / "models", tmp_path / "manifests"
    (manifests / "pipelines").mkdir(parents=True)
    (manifests / "pipelines" / "mine.yaml").write_text("kind: Pipeline\n")
    (manifests / "README.md").write_text("kept\n")

    stages.materialize(1, models)

    backups = list((tmp_path / "backups").glob("manifests-*"))
    assert len(backups) == 1 and (backups[0] / "pipelines" / "mine.yaml").read_text() == "kind: Pipeline\n"
    assert [p.name for p in manifests.iterdir()] == ["README.md"]
    assert f"moved to {backups[0]}" in capsys.readouterr().out


def test_a_built_model_folder_keeps_a_direct_mlserver_start_on_loopback_with_debug_off(tmp_path):
    models = tmp_path / "models"
    stages.materialize(1, models, backup=False)
    settings = json.loads((models / "settings.json").read_text())
    assert settings["host"] == "127.0.0.1" and settings["debug"] is False
    assert set(settings) <= set(stages.SAFE_SETTINGS)
    stages.materialize(1, models)  # rewritten in place, never backed up as the learner's work
    assert not (tmp_path / "backups").exists()
