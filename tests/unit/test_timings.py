"""The workshop's time budget: each stage's core path fits in 50 minutes by the estimate of
``tunesmith.workshop.timings``, and what the README and the notebooks say agrees with it.

The estimate reads the committed snapshot of measured cell run times (``cell_seconds.json``), so these
tests give the same answer on every machine. After editing a notebook, run its notebook test, then
``tunesmith timings --write``: it refreshes the snapshot from that run and rewrites the stated minutes.
"""

from __future__ import annotations

import ast
import json

import nbformat
import pytest

from tunesmith import paths
from tunesmith.workshop import stages, timings

ROWS = timings.estimates(seconds={k: v for k, v in json.loads(timings.SNAPSHOT.read_text()).items()})
STAGES = timings.by_stage(ROWS)
HOW = "run `.venv/bin/python -m tunesmith.workshop.timings --write` after editing a notebook"


def test_the_estimate_counts_words_lines_runs_and_exercises(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("word " * 180),  # one minute of reading
        nbformat.v4.new_code_cell("\n".join(f"x{i} = {i}" for i in range(15)) + "\n\n"),  # one minute of code
        nbformat.v4.new_code_cell("# Solution\nx = 1", metadata={"tags": ["solution"]}),  # an exercise
        nbformat.v4.new_code_cell("y = 2", metadata={"tags": ["optional", "solution"], "exercise_minutes": 6}),
    ]
    path = tmp_path / "9.1-example.ipynb"
    nbformat.write(nb, path)
    seconds = {timings.cell_key(nb.cells[1]): 30.0}
    row = timings.estimate(path, 9, seconds)
    assert (row.core.reading, row.core.code, row.core.running, row.core.exercises) == (1.0, 1.0, 0.5, timings.EXERCISE_MINUTES)
    assert row.optional.exercises == 6 and row.optional.code == 0
    assert row.core.unmeasured == 1  # the solution cell has no measured time
    assert timings.minutes(row.core.minutes) == 6


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_each_stage_core_path_fits_in_50_minutes(stage):
    core, optional, members = STAGES[stage]
    assert core.minutes <= timings.STAGE_BUDGET, timings.table(members)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_the_readme_states_the_estimate(stage):
    core, _, _ = STAGES[stage]
    stated = timings.readme_minutes(paths.REPO / "README.md")
    assert stated.get(stage) == timings.minutes(core.minutes), f"README stage {stage}: {HOW}"


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name[:3])
def test_each_notebook_states_its_estimate(row):
    head = nbformat.read(paths.NOTEBOOKS / row.name, as_version=4).cells[0].source
    assert timings.time_line(row) in head, f"{row.name}: {HOW}"


def test_every_cell_was_measured():
    """Every code cell has a run time in the snapshot (a new cell gets one when the notebook tests run
    and the snapshot is refreshed)."""
    missing = {row.name: row.core.unmeasured + row.optional.unmeasured for row in ROWS}
    assert not any(missing.values()), f"{missing}: {HOW}"


def _names(source: str, kind) -> set[str]:
    """Names a cell reads (``ast.Load``) or defines (``ast.Store``); a cell magic's body (``%%writefile``
    writes a file) runs nothing in the kernel."""
    if source.startswith("%%"):
        return set()
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, kind):
            found.add(node.id)
        elif kind is ast.Store and isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif kind is ast.Store and isinstance(node, ast.arg):
            found.add(node.arg)
        elif kind is ast.Store and isinstance(node, (ast.Import, ast.ImportFrom)):
            found |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return found


@pytest.mark.parametrize("notebook", [nb.path for nb in stages.notebooks()], ids=lambda p: p.name[:3])
def test_the_core_path_runs_without_the_optional_cells(notebook):
    """A learner who skips every optional cell can still run the core cells: no core cell reads a
    name that only an optional cell (or an exercise's solution) defines. Materialize cells, which the
    next stage relies on, are never optional."""
    cells = nbformat.read(notebook, as_version=4).cells
    defined_by_core: set[str] = set()
    for cell in cells:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type != "code":
            continue
        if timings.OPTIONAL in tags:
            assert stages.TAG not in tags, f"a materialize cell is optional: {cell.source[:60]!r}"
            continue
        if "solution" in tags:
            continue  # read only by optional cells and other solutions (checked below via core reads)
        loaded = _names(cell.source, ast.Load) - defined_by_core - _names(cell.source, ast.Store)
        only_optional = {
            name for other in cells
            if other.cell_type == "code" and (timings.OPTIONAL in other.metadata.get("tags", []) or "solution" in other.metadata.get("tags", []))
            for name in _names(other.source, ast.Store)
        }
        assert not (loaded & only_optional), f"{notebook.name}: {cell.source[:60]!r} needs {loaded & only_optional}"
        defined_by_core |= _names(cell.source, ast.Store)
