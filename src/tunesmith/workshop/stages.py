"""Reset the learner's model repository to the start of a workshop stage.

A learner who falls behind, or who broke their ``models/`` folder, catches up with
``make stage-N``. The state at the start of stage N is *generated from the notebooks themselves*:
every cell that writes the platform is tagged ``materialize`` in its cell metadata, and this module
replays those cells, in notebook order, for every notebook of the stages before N. So there is one
source of truth, the notebooks, and nobody keeps a copy of the runtimes in sync by hand.

Two kinds of tagged cells are replayed:

* ``%%writefile [-a] PATH`` cells: written natively, byte for byte what IPython would write;
* plain Python cells (e.g. creating a folder, copying the shipped weights): run in a fresh Python
  process whose working directory is a scratch ``notebooks/`` folder next to a ``models`` link to
  the target folder (and a ``manifests`` link to the manifests folder beside it), so the notebooks'
  relative ``../models/...`` and ``../manifests/...`` paths land in the targets.
  A tagged Python cell must therefore be self-contained (its own imports, no variables from
  earlier cells) and free of IPython syntax (``!cmd``, ``%magic``).

Notebooks are named ``<stage>.<n>-title.ipynb``; stage ``N`` means "everything the notebooks of
stages before N write", ``solution`` means everything. Whatever the target folder held before is
moved to ``backups/models-<timestamp>/`` (and the stage-3 Seldon manifests beside it, in
``manifests/``, to ``backups/manifests-<timestamp>/``), so a reset never destroys a learner's work.

Command line (used by ``make stage-N`` and ``make up``)::

    python -m tunesmith.workshop.stages stage-2
    python -m tunesmith.workshop.stages solution --into build/platform/models --no-backup
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from tunesmith import paths

TAG = "materialize"
NOTEBOOK_NAME = re.compile(r"^(?P<stage>\d+)\.(?P<n>\d+)-.+\.ipynb$")
KEEP = frozenset({"README.md", "settings.json"})  # never moved away: the README is tracked, settings.json rewritten
SAFE_SETTINGS = ("host", "debug", "http_port", "grpc_port", "metrics_port", "parallel_workers", "load_models_at_startup")
"""What a model folder's own ``settings.json`` keeps of ``settings/settings.json``: enough that a plain
``mlserver start models/`` (without the launcher) listens on loopback with debug off, instead of
MLServer's defaults (every network interface, debug on, tracebacks in 500 responses)."""
SOLUTION = "solution"


@dataclass(frozen=True)
class Notebook:
    """A workshop notebook with its place in the reading order."""

    path: Path
    stage: int
    n: int


def notebooks(folder: Path = paths.NOTEBOOKS) -> list[Notebook]:
    """The workshop notebooks in reading order (stage, then number within the stage).

    Args:
        folder: where the ``<stage>.<n>-title.ipynb`` files are.

    Returns:
        One entry per notebook; files not following the naming scheme are ignored.
    """
    found = []
    for path in Path(folder).glob("*.ipynb"):
        match = NOTEBOOK_NAME.match(path.name)
        if match:
            found.append(Notebook(path, int(match["stage"]), int(match["n"])))
    return sorted(found, key=lambda nb: (nb.stage, nb.n, nb.path.name))


def parse_stage(stage: int | str) -> int | None:
    """Turn ``2``, ``"2"``, ``"stage-2"`` into 2 and ``"solution"`` into ``None`` (no upper bound).

    Raises:
        ValueError: for anything else, naming the accepted forms.
    """
    if isinstance(stage, int) and not isinstance(stage, bool):
        number = stage
    elif isinstance(stage, str) and stage.strip().lower() == SOLUTION:
        return None
    elif isinstance(stage, str) and re.fullmatch(r"(stage-?)?\d+", stage.strip().lower()):
        number = int(re.sub(r"\D", "", stage))
    else:
        raise ValueError(f"unknown stage {stage!r}: use a number, 'stage-N' or 'solution'")
    if number < 1:
        raise ValueError(f"stages start at 1, got {number}")
    return number


def tagged_cells(notebook: Path) -> list[str]:
    """Sources of the code cells tagged ``materialize`` in one notebook, in order."""
    nb = nbformat.read(notebook, as_version=4)
    return [
        cell.source
        for cell in nb.cells
        if cell.cell_type == "code" and TAG in cell.get("metadata", {}).get("tags", [])
    ]


def cells_for(stage: int | str, folder: Path = paths.NOTEBOOKS) -> list[tuple[Path, str]]:
    """The tagged cells that build the state at the start of ``stage``, as (notebook, source)."""
    bound = parse_stage(stage)
    return [
        (nb.path, source)
        for nb in notebooks(folder)
        if bound is None or nb.stage < bound
        for source in tagged_cells(nb.path)
    ]


def _writefile(source: str, cwd: Path) -> Path | None:
    """Do what IPython's ``%%writefile`` does with this cell, or return None if it is not one.

    IPython drops leading blank lines, makes sure the cell ends with a newline and writes every
    line after the magic line; like IPython, it does not create missing folders.
    """
    lines = source.lstrip("\n").splitlines(keepends=True)
    if not lines or not lines[0].startswith("%%writefile"):
        return None
    text = "".join(lines)
    if not text.endswith("\n"):
        lines = (text + "\n").splitlines(keepends=True)
    args = shlex.split(lines[0][len("%%writefile") :])
    append = any(a in ("-a", "--append") for a in args)
    names = [a for a in args if a not in ("-a", "--append")]
    if len(names) != 1:
        raise ValueError(f"cannot read the file name in {lines[0].strip()!r}")
    target = (cwd / Path(names[0]).expanduser()).resolve()
    with open(target, "a" if append else "w", encoding="utf-8") as fh:
        fh.write("".join(lines[1:]))
    return target


def _run_python(source: str, cwd: Path, origin: Path) -> None:
    if re.search(r"^\s*[!%]", source, flags=re.MULTILINE):
        raise ValueError(
            f"a '{TAG}' cell in {origin.name} uses IPython syntax (! or %); tagged cells must be "
            f"%%writefile cells or plain Python:\n{source}"
        )
    result = subprocess.run([sys.executable, "-c", source], cwd=cwd, capture_output=True, text=True)
    if result.stdout.strip():
        print(result.stdout.rstrip())
    if result.returncode != 0:
        raise RuntimeError(f"a '{TAG}' cell in {origin.name} failed:\n{source}\n\n{result.stderr}")


def _timestamped(parent: Path, kind: str = "models") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = parent / f"{kind}-{stamp}"
    n = 1
    while candidate.exists():
        candidate = parent / f"{kind}-{stamp}-{n}"
        n += 1
    return candidate


def clear(models_dir: Path, *, backup: bool = True) -> Path | None:
    """Empty ``models_dir`` (keeping README.md), first moving its content to a backup folder.

    Args:
        models_dir: the folder to empty (the model repository, or the manifests beside it); created
            if missing.
        backup: move the old content to ``backups/<folder name>-<timestamp>/`` instead of deleting
            it. The backups live in the repository's ``backups/`` for the repository's own folders,
            else in a ``backups/`` folder beside ``models_dir``.

    Returns:
        The backup folder, or None when there was nothing to keep (or ``backup`` is False).
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    entries = [p for p in models_dir.iterdir() if p.name not in KEEP]
    if not entries:
        return None
    if not backup:
        for entry in entries:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        return None
    in_repo = models_dir.resolve() in (paths.MODELS.resolve(), paths.MANIFESTS.resolve())
    destination = _timestamped(paths.BACKUPS if in_repo else models_dir.resolve().parent / "backups", models_dir.name)
    destination.mkdir(parents=True)
    for entry in entries:
        shutil.move(str(entry), str(destination / entry.name))
    return destination


def materialize(
    stage: int | str,
    models_dir: Path = paths.MODELS,
    *,
    backup: bool = True,
    notebooks_dir: Path = paths.NOTEBOOKS,
    manifests_dir: Path | None = None,
) -> Path | None:
    """Rebuild ``models_dir`` as it is at the start of ``stage``, from the notebooks' tagged cells.

    Args:
        stage: 1 (empty models), N (everything the notebooks of stages before N write),
            ``"stage-N"``, or ``"solution"`` (everything every notebook writes).
        models_dir: the model repository to rebuild (the repository's ``models/`` by default).
        backup: move what was there to a timestamped backup folder (printed) instead of
            deleting it.
        notebooks_dir: where the notebooks are.
        manifests_dir: where the stage-3 notebooks' Seldon manifests go; by default the
            ``manifests`` folder beside ``models_dir`` (the repository's ``manifests/`` for its ``models/``).

    Returns:
        The backup folder of the models, or None if nothing needed backing up.
    """
    models_dir = Path(models_dir).resolve()
    manifests_dir = (Path(manifests_dir) if manifests_dir else models_dir.parent / "manifests").resolve()
    cells = cells_for(stage, notebooks_dir)  # fail on a bad stage before touching anything
    saved = clear(models_dir, backup=backup)
    if saved is not None:
        print(f"Your previous {models_dir.name}/ folder was moved to {saved}")
    saved_manifests = clear(manifests_dir, backup=backup)
    if saved_manifests is not None:
        print(f"Your previous {manifests_dir.name}/ folder was moved to {saved_manifests}")
    with tempfile.TemporaryDirectory(prefix="tunesmith-stage-") as scratch:
        cwd = Path(scratch) / "notebooks"
        cwd.mkdir()
        (Path(scratch) / "models").symlink_to(models_dir, target_is_directory=True)
        (Path(scratch) / "manifests").symlink_to(manifests_dir, target_is_directory=True)
        for origin, source in cells:
            if _writefile(source, cwd) is None:
                _run_python(source, cwd, origin)
    write_safe_settings(models_dir)
    folders = sorted(p.parent.name for p in models_dir.glob("*/model-settings.json"))
    print(f"{models_dir} is now at the start of {_label(stage)}: " + (", ".join(folders) or "no models yet"))
    return saved


def write_safe_settings(models_dir: Path, settings_file: Path = paths.SETTINGS / "settings.json") -> Path:
    """Write ``models_dir/settings.json``: the server settings that keep a direct ``mlserver start`` safe.

    The launcher never needs it (it merges ``settings/settings.json`` with the ports of each run);
    it is for whoever runs ``mlserver start`` on the folder by hand, as notebook 1.2 shows.
    """
    settings = json.loads(Path(settings_file).read_text())
    target = Path(models_dir) / "settings.json"
    target.write_text(json.dumps({key: settings[key] for key in SAFE_SETTINGS if key in settings}, indent=2) + "\n")
    return target


def _label(stage: int | str) -> str:
    bound = parse_stage(stage)
    return "the finished platform (solution)" if bound is None else f"stage {bound}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Rebuild a model repository as it is at the start of a workshop stage, "
        "replaying the notebooks' cells tagged 'materialize'."
    )
    parser.add_argument("stage", help="stage-1, stage-2, stage-3, ... or solution")
    parser.add_argument("--into", type=Path, default=paths.MODELS, help="target folder (default: models/)")
    parser.add_argument("--no-backup", action="store_true", help="delete the old content instead of backing it up")
    args = parser.parse_args(argv)
    try:
        parse_stage(args.stage)
    except ValueError as exc:
        parser.error(str(exc))
    materialize(args.stage, args.into, backup=not args.no_backup)
    if args.into.resolve() == paths.MODELS.resolve():
        print("If a server is running, it still has the old models: restart it (`make serve`, or start_server() in a notebook).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
