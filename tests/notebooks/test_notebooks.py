"""Execute every workshop notebook headless, in reading order, as a learner would.

The notebooks run in a scratch copy of the repository layout (``<tmp>/notebooks`` next to an empty
``<tmp>/models``), so their ``../models/...`` cells write there (and stage 3's ``../manifests/...``
beside it), and the repository's own ``models/`` and ``manifests/`` are never touched. The kernel
gets free ports through ``HTTP_PORT``/``GRPC_PORT``/``METRICS_PORT``, the variables
``tunesmith.workshop.notebook.start_server`` and ``start_gateway`` read, so the server and the gateway
the notebooks start cannot clash with anything else running. Every cell runs, exercises' solutions
included, except the cells tagged ``skip-ci`` (e.g. one that blocks to keep the UI open); the server
and the gateway are stopped at the end, also when a notebook fails.

Each cell's run time is recorded into ``build/timings/cells.json`` (notebook -> cell -> seconds),
which ``make timings`` reads to estimate how long each notebook takes a learner.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tunesmith import offline, paths
from tunesmith.workshop import stages, timings
from tunesmith.serving.launcher import free_port, stop_pid_file

pytestmark = [pytest.mark.notebooks, pytest.mark.server, pytest.mark.slow]

NOTEBOOKS = [nb.path for nb in stages.notebooks()]
CELL_TIMEOUT = 120  # seconds per cell; every cell is meant to run in seconds on 2 cores
SKIP_TAG = "skip-ci"


def record_cell_seconds(name: str, nb: nbformat.NotebookNode, record: Path = timings.MEASURED) -> None:
    """Add one executed notebook's per-cell run times (nbclient's timestamps) to ``record``,
    keyed by :func:`tunesmith.workshop.timings.cell_key` (cell id and source digest)."""
    cells = {}
    for cell in nb.cells:
        stamps = cell.metadata.get("execution", {})
        if cell.cell_type == "code" and "iopub.status.busy" in stamps and "shell.execute_reply" in stamps:
            began, ended = (datetime.fromisoformat(stamps[k].replace("Z", "+00:00")) for k in ("iopub.status.busy", "shell.execute_reply"))
            cells[timings.cell_key(cell)] = round((ended - began).total_seconds(), 2)
    record.parent.mkdir(parents=True, exist_ok=True)
    recorded = json.loads(record.read_text()) if record.exists() else {}
    recorded[name] = cells
    record.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")


class Workspace:
    """A scratch repository layout plus the kernel environment, shared by the notebooks in order."""

    def __init__(self, root: Path):
        self.root = root
        self.notebooks = root / "notebooks"
        self.models = root / "models"
        self.notebooks.mkdir(parents=True)
        self.models.mkdir()
        self.http_port = free_port()
        self.env = {
            **os.environ,
            "HTTP_PORT": str(self.http_port),
            "GRPC_PORT": str(free_port()),
            "METRICS_PORT": str(free_port()),
            **offline.ENVIRONMENT,
        }
        self.run_dir = paths.RUN / f"notebook-{self.http_port}"
        self.gateway_dir = paths.RUN / f"notebook-gateway-{self.http_port}"
        self.executed: list[str] = []
        self.seconds: dict[str, float] = {}

    def execute(self, source: Path) -> None:
        """Run one notebook to the end; raise with the failing cell and the server log."""
        target = self.notebooks / source.name
        shutil.copy(source, target)
        nb = nbformat.read(target, as_version=4)
        client = NotebookClient(
            nb,
            timeout=CELL_TIMEOUT,
            kernel_name="python3",
            skip_cells_with_tag=SKIP_TAG,
            resources={"metadata": {"path": str(self.notebooks)}},
        )
        start = time.monotonic()
        try:
            client.execute(env=self.env)
        except CellExecutionError as exc:
            raise AssertionError(f"{source.name} failed:\n{exc}\n\nserver log:\n{self.log_tail()}") from None
        finally:
            self.seconds[source.name] = time.monotonic() - start
            self.executed.append(source.name)
            record_cell_seconds(source.name, nb)
            nbformat.write(nb, target)  # the executed copy, outputs included, for a look after a failure

    def catch_up_to(self, source: Path) -> None:
        """Run the notebooks before ``source`` that have not run yet (e.g. under ``-k``)."""
        for earlier in NOTEBOOKS[: NOTEBOOKS.index(source)]:
            if earlier.name not in self.executed:
                self.execute(earlier)

    def log_tail(self) -> str:
        """The end of the server's log, or of the gateway's and its MLServer's once stage 3 runs one."""
        logs = [self.run_dir / "mlserver.log"]
        if (self.gateway_dir / "gateway.log").exists():
            logs = [self.gateway_dir / "gateway.log", self.gateway_dir.with_name(self.gateway_dir.name + "-mlserver") / "mlserver.log"]
        tails = [f"--- {log}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]) for log in logs if log.exists()]
        return "\n".join(tails) or "(no server log)"

    def stop_server(self) -> None:
        stop_pid_file(self.run_dir / "pid")
        stop_pid_file(self.gateway_dir / "pid")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("workshop"))
    try:
        yield ws
    finally:
        ws.stop_server()
        if ws.seconds:
            print("\nnotebook execution times: " + ", ".join(f"{k}: {v:.0f} s" for k, v in ws.seconds.items()))


STAGE1_MODELS = {"synthesizer", "tune-generator"}
STAGE2_MODELS = {"prompt-encoder", "audio-fx", "transcriber", "style-classifier"}


def test_the_notebooks_are_there():
    assert [p.name[:4] for p in NOTEBOOKS[:8]] == ["1.1-", "1.2-", "1.3-", "1.4-", "2.1-", "2.2-", "2.3-", "2.4-"]


def served_folders(models: Path) -> set[str]:
    return {p.parent.name for p in models.glob("*/model-settings.json")}


def test_each_stage_starts_with_what_the_stages_before_it_built(tmp_path):
    """`make stage-2` is stage 1's two models only; `make stage-3` adds every stage-2 model."""
    stages.materialize(2, tmp_path / "stage-2", backup=False)
    assert served_folders(tmp_path / "stage-2") == STAGE1_MODELS
    stages.materialize(3, tmp_path / "stage-3", backup=False)
    assert served_folders(tmp_path / "stage-3") >= STAGE1_MODELS | STAGE2_MODELS


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_from_top_to_bottom(workspace, notebook, record_property):
    workspace.catch_up_to(notebook)
    workspace.execute(notebook)
    record_property("seconds", round(workspace.seconds[notebook.name], 1))


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_stage_reset_replays_exactly_what_the_notebooks_wrote(workspace, tmp_path):
    """One source of truth: `make stage-N` / `make up` build what running the notebooks builds."""
    for notebook in NOTEBOOKS:
        if notebook.name not in workspace.executed:
            workspace.execute(notebook)
    replayed = tmp_path / "models"
    stages.materialize("solution", replayed, backup=False)
    assert snapshot(replayed) == snapshot(workspace.models)
    assert snapshot(tmp_path / "manifests") == snapshot(workspace.root / "manifests")
