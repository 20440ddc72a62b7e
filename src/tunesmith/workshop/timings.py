"""How long each notebook takes a learner: the estimate behind every "Time" the workshop states.

A stage is promised in about 50 minutes, so the minutes are computed, not guessed. A learner

* reads the markdown at **180 words a minute**;
* reads, types or runs the code at **15 lines a minute** (non-blank lines of every code cell, except
  exercise solutions: the exercise allowance covers those);
* waits for each cell to run: the **measured** seconds of that cell from the notebook tests
  (``tests/notebooks/test_notebooks.py`` writes them to ``build/timings/cells.json``; a committed
  snapshot, ``cell_seconds.json`` beside this module, stands in on a fresh clone; the fastest run of
  the same cell source counts, since other work on a shared machine only adds time);
* gets **3 minutes per exercise** (a cell tagged ``solution``: read the task, try it, compare with
  the solution), or the minutes an exercise states in its solution cell's metadata
  (``"exercise_minutes": 8``) when it asks for more, e.g. editing a runtime and reloading it.

Cells tagged ``optional`` (cell metadata tags, like ``materialize``) are optional deep dives: they
count apart, so each notebook and stage has a **core** path and the **optional** material beside it.
The tests still execute them.

Command line (``make timings``)::

    tunesmith timings              # the table per notebook and per stage
    tunesmith timings --write      # also: snapshot the measured run times, and put the minutes into
                                   # the README's stage table and each notebook's **Time:** line
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from tunesmith import paths
from tunesmith.workshop import stages

WORDS_PER_MINUTE = 180
LINES_PER_MINUTE = 15
EXERCISE_MINUTES = 3.0
STAGE_BUDGET = 50  # minutes of core path per stage
OPTIONAL = "optional"
SOLUTION = "solution"
MEASURED = paths.BUILD / "timings" / "cells.json"  # written by the notebook tests
SNAPSHOT = Path(__file__).with_name("cell_seconds.json")  # committed: a fresh clone has numbers too
TIME_LINE = re.compile(r"^\*\*Time:\*\*.*$", re.MULTILINE)
README_ROW = re.compile(r"^\| (?P<stage>\d+) \| (?P<notebooks>[^|]+) \| (?P<time>[^|]+) \|", re.MULTILINE)


@dataclass
class Part:
    """Minutes of one kind of material (core or optional) in a notebook, by what they are spent on."""

    reading: float = 0.0
    code: float = 0.0
    running: float = 0.0
    exercises: float = 0.0
    unmeasured: int = 0  # code cells without a measured run time (counted as 0 s)

    @property
    def minutes(self) -> float:
        return self.reading + self.code + self.running + self.exercises

    def add(self, other: "Part") -> None:
        self.reading += other.reading
        self.code += other.code
        self.running += other.running
        self.exercises += other.exercises
        self.unmeasured += other.unmeasured


@dataclass
class Estimate:
    """A notebook's core path and optional material."""

    name: str
    stage: int
    core: Part = field(default_factory=Part)
    optional: Part = field(default_factory=Part)


def words(text: str) -> int:
    return len(re.findall(r"\S+", text))


def code_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip())


def cell_key(cell) -> str:
    """A cell's key in the records: its id and a digest of its source, so an edited cell counts as
    not measured until the notebook tests run it again."""
    return f"{cell.get('id')}@{hashlib.sha256(cell.source.encode()).hexdigest()[:8]}"


def cell_seconds(measured: Path = MEASURED, snapshot: Path = SNAPSHOT) -> dict[str, dict[str, float]]:
    """Measured seconds per notebook and :func:`cell_key`: the snapshot and the latest test run.

    Where both measured the same cell source, the faster run counts: a busy machine (other work on
    two shared cores) only ever adds time, so the fastest run is the closest to the cell's own cost.
    """
    seconds: dict[str, dict[str, float]] = {}
    for source in (snapshot, measured):
        if source.exists():
            for notebook, cells in json.loads(source.read_text()).items():
                known = seconds.setdefault(notebook, {})
                for key, value in cells.items():
                    known[key] = min(value, known.get(key, value))
    return seconds


def current(seconds: dict[str, dict[str, float]], folder: Path = paths.NOTEBOOKS) -> dict[str, dict[str, float]]:
    """Only the seconds of cells the notebooks still have, as they are (a snapshot keeps no stale cells)."""
    kept = {}
    for nb in stages.notebooks(folder):
        keys = {cell_key(cell) for cell in nbformat.read(nb.path, as_version=4).cells}
        kept[nb.path.name] = {k: v for k, v in seconds.get(nb.path.name, {}).items() if k in keys}
    return kept


def estimate(path: Path, stage: int, seconds: dict[str, float]) -> Estimate:
    """Minutes for one notebook, core and optional, from its cells and their measured seconds."""
    result = Estimate(path.name, stage)
    for cell in nbformat.read(path, as_version=4).cells:
        tags = cell.metadata.get("tags", [])
        part = result.optional if OPTIONAL in tags else result.core
        if cell.cell_type == "markdown":
            part.reading += words(cell.source) / WORDS_PER_MINUTE
        elif cell.cell_type == "code":
            if SOLUTION in tags:
                part.exercises += float(cell.metadata.get("exercise_minutes", EXERCISE_MINUTES))
            else:
                part.code += code_lines(cell.source) / LINES_PER_MINUTE
            if cell_key(cell) in seconds:
                part.running += seconds[cell_key(cell)] / 60
            elif "skip-ci" not in tags and cell.source.strip():
                part.unmeasured += 1
    return result


def estimates(folder: Path = paths.NOTEBOOKS, seconds: dict | None = None) -> list[Estimate]:
    """Every workshop notebook's estimate, in reading order."""
    seconds = cell_seconds() if seconds is None else seconds
    return [estimate(nb.path, nb.stage, seconds.get(nb.path.name, {})) for nb in stages.notebooks(folder)]


def by_stage(rows: list[Estimate]) -> dict[int, tuple[Part, Part, list[Estimate]]]:
    """Core and optional minutes summed per stage, with the stage's notebooks."""
    totals: dict[int, tuple[Part, Part, list[Estimate]]] = {}
    for row in rows:
        core, optional, members = totals.setdefault(row.stage, (Part(), Part(), []))
        core.add(row.core)
        optional.add(row.optional)
        members.append(row)
    return totals


def minutes(value: float) -> int:
    """Minutes as the workshop states them: rounded up, so a stated time is never optimistic."""
    return math.ceil(value - 1e-9)


def table(rows: list[Estimate]) -> str:
    """The per-notebook and per-stage table that ``make timings`` prints."""
    head = f"{'notebook':<46} {'read':>5} {'code':>5} {'run':>5} {'exerc':>5} {'CORE':>5} {'optional':>8}"
    lines = [
        f"reading {WORDS_PER_MINUTE} words/min, code {LINES_PER_MINUTE} lines/min, measured cell run times, "
        f"{EXERCISE_MINUTES:g} min per exercise (unless it states its own); minutes",
        head,
        "-" * len(head),
    ]
    for stage, (core, optional, members) in by_stage(rows).items():
        for row in members:
            c = row.core
            note = f"  ({c.unmeasured + row.optional.unmeasured} cells not measured yet)" if c.unmeasured + row.optional.unmeasured else ""
            lines.append(
                f"{row.name[:46]:<46} {c.reading:5.1f} {c.code:5.1f} {c.running:5.1f} {c.exercises:5.1f} "
                f"{minutes(c.minutes):5d} {minutes(row.optional.minutes):8d}{note}"
            )
        flag = "" if core.minutes <= STAGE_BUDGET else f"   OVER the {STAGE_BUDGET}-minute budget"
        lines.append(
            f"{'STAGE ' + str(stage):<46} {core.reading:5.1f} {core.code:5.1f} {core.running:5.1f} "
            f"{core.exercises:5.1f} {minutes(core.minutes):5d} {minutes(optional.minutes):8d}{flag}"
        )
        lines.append("")
    return "\n".join(lines)


def time_line(row: Estimate) -> str:
    """A notebook's ``**Time:**`` line."""
    if row.core.minutes < 2 and row.optional.minutes > 0:  # a deep-dive notebook: only its header is core
        return f"**Time:** ~{minutes(row.optional.minutes)} min, all optional"
    line = f"**Time:** ~{minutes(row.core.minutes)} min"
    if row.optional.minutes > 0:
        line += f" (optional deep dives: +{minutes(row.optional.minutes)})"
    return line


def stated_minutes(path: Path) -> int | None:
    """The core minutes a notebook's first cell states, or None."""
    match = re.search(r"^\*\*Time:\*\* ~(\d+) min", nbformat.read(path, as_version=4).cells[0].source, re.MULTILINE)
    return int(match[1]) if match else None


def readme_minutes(readme: Path) -> dict[int, int]:
    """The core minutes per stage that the README's stage table states."""
    found = {}
    for match in README_ROW.finditer(readme.read_text()):
        number = re.search(r"~(\d+) min", match["time"])
        if number:
            found[int(match["stage"])] = int(number[1])
    return found


def readme_time(core: Part, optional: Part) -> str:
    text = f"~{minutes(core.minutes)} min"
    if optional.minutes > 0:
        text += f" (+{minutes(optional.minutes)} optional)"
    return text


def write(rows: list[Estimate], readme: Path = paths.REPO / "README.md", notebooks_to_edit: set[str] | None = None) -> list[str]:
    """Put the estimate into the README's stage table and the notebooks' ``**Time:**`` lines.

    Args:
        rows: the estimates.
        readme: the README whose stage table gets the minutes.
        notebooks_to_edit: names of the notebooks whose header may be rewritten (default: all).

    Returns:
        What changed, one line each.
    """
    changed = []
    totals = by_stage(rows)

    def row_time(match: re.Match) -> str:
        stage = int(match["stage"])
        if stage not in totals:
            return match[0]
        core, optional, _ = totals[stage]
        return f"| {stage} | {match['notebooks']} | {readme_time(core, optional)} |"

    text = readme.read_text()
    new = README_ROW.sub(row_time, text)
    if new != text:
        readme.write_text(new)
        changed.append(f"{readme.name}: stage table")
    for row in rows:
        if notebooks_to_edit is not None and row.name not in notebooks_to_edit:
            continue
        path = paths.NOTEBOOKS / row.name
        nb = nbformat.read(path, as_version=4)
        head = nb.cells[0]
        if TIME_LINE.search(head.source) and TIME_LINE.search(head.source)[0] != time_line(row):
            head.source = TIME_LINE.sub(time_line(row), head.source, count=1)
            nbformat.write(nb, path)
            changed.append(f"{row.name}: {time_line(row)}")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tunesmith timings", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true",
                        help="snapshot the measured run times, then write the minutes into README.md and the notebooks' headers")
    parser.add_argument("--only", nargs="*", metavar="NOTEBOOK",
                        help="with --write: rewrite only these notebooks' headers (file names)")
    args = parser.parse_args(argv)
    if args.write and MEASURED.exists():
        SNAPSHOT.write_text(json.dumps(current(cell_seconds()), indent=1, sort_keys=True) + "\n")
    rows = estimates()
    print(table(rows))
    if args.write:
        for line in write(rows, notebooks_to_edit=set(args.only) if args.only else None):
            print("wrote", line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
