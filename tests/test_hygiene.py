"""What is stored in git stays clean: notebooks without outputs, no model-hub downloads.

Notebooks are stored without outputs and execution counts (outputs are megabytes of audio and
plots, and they make every diff unreadable); the test that executes them works on a copy. Nothing
loads a model or tokenizer from a hub by default: the workshop runs offline, from local folders.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from tunesmith import paths
from tunesmith.workshop import stages

NOTEBOOKS = sorted(paths.NOTEBOOKS.glob("*.ipynb"))
KNOWN_TAGS = {stages.TAG, "solution", "skip-ci", "optional"}  # optional: a deep dive outside the core path


@pytest.fixture(params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def notebook(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_there_are_notebooks():
    assert NOTEBOOKS


def test_notebook_names_give_stage_and_reading_order():
    for path in NOTEBOOKS:
        assert stages.NOTEBOOK_NAME.match(path.name), f"{path.name}: name it <stage>.<n>-<title>.ipynb"


def test_notebooks_are_stored_without_outputs(notebook):
    path, nb = notebook
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has outputs: clear them before committing"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"
    assert "widgets" not in nb.metadata, f"{path.name} stores widget state"


def test_notebooks_open_with_goals_time_and_setup(notebook):
    path, nb = notebook
    opening = nb.cells[0].source
    assert opening.startswith("# "), f"{path.name}: the first cell is the title"
    assert "What you will learn" in opening, path.name
    assert re.search(r"\*\*Time:\*\* ~\d+ min", opening), path.name
    assert any(c.cell_type == "code" for c in nb.cells[:4]), f"{path.name}: a setup cell comes early"


def test_only_known_cell_tags(notebook):
    path, nb = notebook
    for cell in nb.cells:
        unknown = set(cell.metadata.get("tags", [])) - KNOWN_TAGS
        assert not unknown, f"{path.name}: unknown tags {unknown} (known: {sorted(KNOWN_TAGS)})"


def test_every_exercise_has_a_solution_that_ci_runs(notebook):
    path, nb = notebook
    cells = nb.cells
    exercises = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and re.search(r"^#+ Exercise", c.source, re.M)]
    assert exercises, f"{path.name} has no exercise"
    for i in exercises:
        following = cells[i + 1 : i + 4]
        assert any("solution" in c.metadata.get("tags", []) for c in following), (
            f"{path.name}: the exercise in cell {i} needs a code cell tagged 'solution' right after it"
        )


def test_skipped_cells_are_few_and_explained(notebook):
    path, nb = notebook
    for i, cell in enumerate(nb.cells):
        if "skip-ci" in cell.metadata.get("tags", []):
            assert cell.cell_type == "code"
            assert "skip-ci" in nb.cells[i - 1].source, f"{path.name}: say above cell {i} why it is skipped in CI"


# -- no hub downloads -----------------------------------------------------------------------------
# A string literal handed to from_pretrained / pipeline(model=...) is a hub id (or a path that
# only works from one working directory); local folders are passed as Path objects built from
# tunesmith.paths or from the model settings.
HUB_CALLS = [
    re.compile(r"from_pretrained\(\s*[rbuf]?[\"']"),
    re.compile(r"pipeline\([^)]*model\s*=\s*[\"']"),
    re.compile(r"\b(hf_hub_download|snapshot_download|load_dataset)\s*\("),
]


def python_sources():
    for root in (paths.REPO / "src", paths.REPO / "app"):
        for path in sorted(root.rglob("*.py")):
            yield path, path.read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        yield path, "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def strip_docstrings_and_comments(text: str) -> str:
    text = re.sub(r'"""[\s\S]*?"""', lambda m: "\n" * m.group(0).count("\n"), text)  # keep line numbers
    return re.sub(r"#.*", "", text)


def test_nothing_loads_from_a_model_hub_by_default():
    offenders = []
    for path, text in python_sources():
        code = strip_docstrings_and_comments(text)
        for pattern in HUB_CALLS:
            for match in pattern.finditer(code):
                line = code[: match.start()].count("\n") + 1
                offenders.append(f"{path.relative_to(paths.REPO)}:{line}: {match.group(0)}")
    assert not offenders, "hub downloads by default:\n" + "\n".join(offenders)
