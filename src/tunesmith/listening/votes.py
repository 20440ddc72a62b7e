"""The listening test's votes, kept in SQLite so that none is lost.

Three things are stored, in one database file (``votes.sqlite``) plus the clips' WAV files beside it:

- a **clip set**: the clips one round plays (a real tune and tunes from the arms being compared, same
  instrument, tempo and length), made once by :mod:`tunesmith.listening.rounds` and then judged by
  many listeners (:data:`VOTES_PER_SET` at most), which saves composing for every round;
- a **round**: one clip set served to one listener, with the clips in an order of its own
  (``A``, ``B``, ``C``); its id is what a vote names, so a vote still resolves after a restart;
- a **vote**: the letter picked as the most real-sounding, or :data:`CANT_TELL`.

Why it cannot lose a vote:

- every vote is one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``); a caller is told "counted" only
  after the commit returned;
- the database runs in WAL mode with ``synchronous=FULL``: a committed transaction is in the log file
  on disk before ``COMMIT`` returns, so a process killed with SIGKILL right after loses nothing, and
  readers (the statistics) never block the writers;
- every connection waits up to :data:`BUSY_TIMEOUT_S` for another writer instead of failing, so
  concurrent voters (threads of one app, or several app processes on one folder) queue up;
- the schema has a version (SQLite's ``user_version``); a database written by a newer schema is
  refused rather than misread.

A listener votes once per clip set: a second vote on the same set (for example after reloading the
page and getting the set again) is not counted, and the answer says so.

Where: ``$TUNESMITH_VOTES_DIR``, else ``data/votes/`` (not in git). ``python -m
tunesmith.listening.votes --csv votes.csv`` (``make votes``) prints the statistics and exports every vote.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import secrets
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from tunesmith import paths
from tunesmith.listening.stats import Judgement

VOTES_ENV = "TUNESMITH_VOTES_DIR"
DEFAULT_DIR = paths.DATA / "votes"
DATABASE = "votes.sqlite"
CLIPS = "clips"
SCHEMA_VERSION = 1
LETTERS = ("A", "B", "C")
CANT_TELL = "can't tell"
CHOICES = LETTERS + (CANT_TELL,)
VOTES_PER_SET = 10
"""A clip set is served to new listeners until this many have voted on it; then a new one is made."""
BUSY_TIMEOUT_S = 60.0
"""How long a connection waits for another writer before giving up (a vote takes milliseconds)."""

_SCHEMA = (
    """CREATE TABLE clip_sets (
        id TEXT PRIMARY KEY,
        created REAL NOT NULL,
        meter TEXT NOT NULL,
        key TEXT NOT NULL,
        rhythm TEXT,
        instrument TEXT NOT NULL,
        tempo INTEGER,
        seconds REAL NOT NULL,
        source TEXT NOT NULL)""",
    """CREATE TABLE clips (
        set_id TEXT NOT NULL REFERENCES clip_sets(id),
        position INTEGER NOT NULL,
        arm TEXT NOT NULL,
        abc TEXT NOT NULL,
        audio TEXT NOT NULL,
        critic REAL,
        PRIMARY KEY (set_id, position))""",
    """CREATE TABLE rounds (
        id TEXT PRIMARY KEY,
        set_id TEXT NOT NULL REFERENCES clip_sets(id),
        listener TEXT NOT NULL,
        positions TEXT NOT NULL,
        created REAL NOT NULL)""",
    """CREATE TABLE votes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        round_id TEXT NOT NULL REFERENCES rounds(id),
        set_id TEXT NOT NULL REFERENCES clip_sets(id),
        listener TEXT NOT NULL,
        choice TEXT NOT NULL,
        chosen_arm TEXT,
        created REAL NOT NULL,
        UNIQUE (set_id, listener))""",
    "CREATE INDEX votes_by_set ON votes(set_id)",
)
"""Schema version 1. ``clips.arm`` is :data:`~tunesmith.listening.stats.REAL` or the model that wrote
the tune; ``rounds.positions`` holds the clip position behind each letter (``"201"``: A is clip 2);
``clips.critic`` is the tune critic's score of a generated tune (NULL for the real one, or without a
critic); ``votes.chosen_arm`` is NULL for "can't tell"."""


class VoteError(ValueError):
    """A vote that cannot be counted as sent (an unknown round, a letter the round does not have)."""


class NewerSchema(RuntimeError):
    """The database was written by a newer version of this module."""


@dataclass(frozen=True)
class Clip:
    """One clip of a set, before it is stored."""

    arm: str
    abc: str
    wav: bytes
    critic: float | None = None


@dataclass(frozen=True)
class ClipSet:
    """What :meth:`VoteStore.add_set` stores: the clips (the real one among them) and how they were played."""

    clips: Sequence[Clip]
    instrument: str
    tempo: int | None
    seconds: float
    meter: str
    key: str
    rhythm: str | None
    source: str


@dataclass(frozen=True)
class StoredClip:
    arm: str
    abc: str
    path: Path
    critic: float | None = None


@dataclass(frozen=True)
class Round:
    """A clip set as one listener gets it: the clips in the order of the letters."""

    id: str
    set_id: str
    listener: str
    clips: tuple[StoredClip, ...]
    instrument: str
    tempo: int | None
    rhythm: str | None
    key: str
    meter: str
    source: str

    @property
    def letters(self) -> tuple[str, ...]:
        return LETTERS[: len(self.clips)]

    def arm_of(self, letter: str) -> str:
        return self.clips[self.letters.index(letter)].arm


@dataclass(frozen=True)
class Counted:
    """The outcome of :meth:`VoteStore.vote`.

    Attributes:
        round: the round voted on.
        choice: the letter or :data:`CANT_TELL`.
        counted: ``False`` when this listener had already voted on the clip set.
        earlier: the listener's earlier choice on the set, when it was not counted.
    """

    round: Round
    choice: str
    counted: bool
    earlier: str | None = None


def listener_id(raw: str | None) -> str:
    """A listener's stored id: a short hash of the browser's id or session (nothing personal is kept)."""
    raw = raw or secrets.token_hex(8)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def normalise_choice(choice: str | None) -> str:
    """``"a"`` -> ``"A"``; ``"can't tell"``, ``"cant tell"``, ``"can’t tell"`` -> :data:`CANT_TELL`.

    Raises:
        VoteError: anything else, naming the accepted choices.
    """
    text = " ".join(str(choice or "").strip().replace("’", "'").split())
    if text.upper() in LETTERS:
        return text.upper()
    if text.lower() in (CANT_TELL, "cant tell", "can not tell", "cannot tell"):
        return CANT_TELL
    raise VoteError(f"unknown choice {choice!r}: choose one of {', '.join(map(repr, CHOICES))}")


def default_folder() -> Path:
    """``$TUNESMITH_VOTES_DIR``, else ``data/votes/``."""
    return Path(os.environ.get(VOTES_ENV) or DEFAULT_DIR)


class VoteStore:
    """The votes, rounds and clip sets in one folder; safe to share between threads and processes.

    Every method opens its own connection, so a store object may be used from Gradio's worker
    threads at once, and several processes may open the same folder.

    Args:
        folder: where ``votes.sqlite`` and the clips live; ``None``: :func:`default_folder`.
    """

    def __init__(self, folder: Path | str | None = None):
        self.folder = Path(folder) if folder else default_folder()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / DATABASE
        self._migrate()

    def __repr__(self) -> str:
        return f"VoteStore({str(self.folder)!r})"

    # -- connections ----------------------------------------------------------------------------
    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # stored in the file; cheap to repeat
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.row_factory = sqlite3.Row
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``IMMEDIATE`` takes the write lock at once, so two writers queue
        (within the busy timeout) instead of one failing when both upgrade a read lock."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise NewerSchema(f"{self.path} has schema version {version}; this code reads up to "
                                  f"{SCHEMA_VERSION}. Update the code, or point {VOTES_ENV} elsewhere.")
            if version == 0:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def schema_version(self) -> int:
        with self._connection() as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    # -- clip sets and rounds ---------------------------------------------------------------------
    def add_set(self, clip_set: ClipSet) -> str:
        """Store a clip set: its WAV files first (under random names, which say nothing about the
        arm), then its rows in one transaction. Returns its id."""
        set_id = secrets.token_hex(6)
        folder = self.folder / CLIPS / set_id
        folder.mkdir(parents=True)
        names = []
        for clip in clip_set.clips:
            name = f"{secrets.token_hex(6)}.wav"
            partial = folder / (name + ".part")
            with open(partial, "wb") as fh:
                fh.write(clip.wav)
                fh.flush()
                os.fsync(fh.fileno())
            partial.rename(folder / name)
            names.append(name)
        with self._transaction() as conn:
            conn.execute("INSERT INTO clip_sets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (set_id, time.time(), clip_set.meter, clip_set.key, clip_set.rhythm, clip_set.instrument,
                          clip_set.tempo, clip_set.seconds, clip_set.source))
            conn.executemany("INSERT INTO clips VALUES (?, ?, ?, ?, ?, ?)",
                             [(set_id, i, clip.arm, clip.abc, name, clip.critic)
                              for i, (clip, name) in enumerate(zip(clip_set.clips, names))])
        return set_id

    def next_round(self, listener: str, rng: random.Random | None = None) -> Round | None:
        """A round for ``listener`` from a stored clip set they have not been served (nor voted on)
        and that fewer than :data:`VOTES_PER_SET` listeners voted on (the least-voted first, then the
        newest), or ``None``: then it is time for a new set. A listener who asks for another round
        without voting gets other clips, not the same ones reshuffled."""
        with self._connection() as conn:
            row = conn.execute(
                """SELECT s.id FROM clip_sets s
                   WHERE NOT EXISTS (SELECT 1 FROM rounds r WHERE r.set_id = s.id AND r.listener = ?)
                     AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.set_id = s.id AND v.listener = ?)
                     AND (SELECT COUNT(*) FROM votes v WHERE v.set_id = s.id) < ?
                   ORDER BY (SELECT COUNT(*) FROM votes v WHERE v.set_id = s.id), s.created DESC LIMIT 1""",
                (listener, listener, VOTES_PER_SET)).fetchone()
        return None if row is None else self.new_round(row["id"], listener, rng)

    def new_round(self, set_id: str, listener: str, rng: random.Random | None = None) -> Round:
        """Serve clip set ``set_id`` to ``listener`` with its clips in a random order."""
        rng = rng or random.SystemRandom()
        with self._transaction() as conn:
            count = conn.execute("SELECT COUNT(*) FROM clips WHERE set_id = ?", (set_id,)).fetchone()[0]
            if not count:
                raise VoteError(f"unknown clip set {set_id!r}")
            positions = list(range(count))
            rng.shuffle(positions)
            round_id = secrets.token_hex(8)
            conn.execute("INSERT INTO rounds VALUES (?, ?, ?, ?, ?)",
                         (round_id, set_id, listener, "".join(map(str, positions)), time.time()))
        return self.round(round_id)

    def round(self, round_id: str) -> Round | None:
        """The round ``round_id``, or ``None`` when there is none."""
        with self._connection() as conn:
            row = conn.execute("""SELECT r.id, r.set_id, r.listener, r.positions, s.* FROM rounds r
                                  JOIN clip_sets s ON s.id = r.set_id WHERE r.id = ?""", (str(round_id),)).fetchone()
            if row is None:
                return None
            clips = {c["position"]: c for c in conn.execute("SELECT * FROM clips WHERE set_id = ?", (row["set_id"],))}
        folder = self.folder / CLIPS / row["set_id"]
        ordered = tuple(StoredClip(clips[int(p)]["arm"], clips[int(p)]["abc"], folder / clips[int(p)]["audio"],
                                   clips[int(p)]["critic"]) for p in row["positions"])
        return Round(row[0], row["set_id"], row["listener"], ordered, row["instrument"], row["tempo"],
                     row["rhythm"], row["key"], row["meter"], row["source"])

    def sets(self) -> int:
        """How many clip sets are stored."""
        with self._connection() as conn:
            return conn.execute("SELECT COUNT(*) FROM clip_sets").fetchone()[0]

    # -- votes ----------------------------------------------------------------------------------
    def vote(self, round_id: str, choice: str, listener: str | None = None) -> Counted:
        """Count one vote, in one transaction, unless ``listener`` already voted on the round's clip set.

        Args:
            round_id: the round, as :meth:`new_round` gave it.
            choice: ``"A"``, ``"B"``, ``"C"`` (up to the round's number of clips) or :data:`CANT_TELL`.
            listener: who votes; ``None``: whoever the round was served to.

        Raises:
            VoteError: an unknown round or choice, or a letter beyond the round's clips.
        """
        choice = normalise_choice(choice)
        played = self.round(round_id)
        if played is None:
            raise VoteError(f"unknown round {round_id!r}: ask for a round first (/listen_round)")
        if choice != CANT_TELL and choice not in played.letters:
            raise VoteError(f"round {round_id} has clips {', '.join(played.letters)} only, not {choice}")
        listener = listener or played.listener
        arm = None if choice == CANT_TELL else played.arm_of(choice)
        with self._transaction() as conn:
            earlier = conn.execute("SELECT choice FROM votes WHERE set_id = ? AND listener = ?",
                                   (played.set_id, listener)).fetchone()
            if earlier is None:
                conn.execute("INSERT INTO votes (round_id, set_id, listener, choice, chosen_arm, created) "
                             "VALUES (?, ?, ?, ?, ?, ?)", (played.id, played.set_id, listener, choice, arm, time.time()))
        return Counted(played, choice, earlier is None, None if earlier is None else earlier[0])

    def total(self) -> int:
        """How many votes are stored."""
        with self._connection() as conn:
            return conn.execute("SELECT COUNT(*) FROM votes").fetchone()[0]

    def rows(self) -> list[dict]:
        """Every vote with what was played, oldest first: the rows of :meth:`export_csv`."""
        with self._connection() as conn:
            votes = conn.execute(
                """SELECT v.id, v.created, v.listener, v.round_id, v.set_id, v.choice, v.chosen_arm, r.positions,
                          s.instrument, s.tempo, s.meter, s.key, s.rhythm, s.source
                   FROM votes v JOIN rounds r ON r.id = v.round_id JOIN clip_sets s ON s.id = v.set_id
                   ORDER BY v.id""").fetchall()
            arms: dict[str, dict[int, str]] = {}
            for clip in conn.execute("SELECT set_id, position, arm FROM clips"):
                arms.setdefault(clip["set_id"], {})[clip["position"]] = clip["arm"]
        rows = []
        for v in votes:
            row = {
                "vote": v["id"],
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(v["created"])),
                "listener": v["listener"], "round": v["round_id"], "clip_set": v["set_id"],
            }
            for letter, position in zip(LETTERS, v["positions"]):
                row[f"clip_{letter}"] = arms[v["set_id"]][int(position)]
            row.update({"choice": v["choice"], "chosen": v["chosen_arm"] or "", "instrument": v["instrument"],
                        "tempo": v["tempo"], "meter": v["meter"], "key": v["key"], "rhythm": v["rhythm"] or "",
                        "real_tune": v["source"]})
            rows.append(row)
        return rows

    def judgements(self) -> list[Judgement]:
        """Every vote as what :mod:`tunesmith.listening.stats` reads: the arms heard, the one picked."""
        return [Judgement(tuple(row[f"clip_{letter}"] for letter in LETTERS if f"clip_{letter}" in row),
                          row["chosen"] or None, row["listener"], row["clip_set"]) for row in self.rows()]

    def export_csv(self, path: Path | str) -> Path:
        """Write every vote to ``path`` as CSV (one row per vote, the arms behind each letter); returns ``path``."""
        rows = self.rows()
        columns = ["vote", "time", "listener", "round", "clip_set", *(f"clip_{letter}" for letter in LETTERS),
                   "choice", "chosen", "instrument", "tempo", "meter", "key", "rhythm", "real_tune"]
        path = Path(path)
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
        return path


def main(argv: list[str] | None = None) -> None:
    """``python -m tunesmith.listening.votes [--folder DIR] [--csv FILE] [--json]``: the statistics, and an export."""
    parser = argparse.ArgumentParser(description="The listening test's votes: counts and CSV export")
    parser.add_argument("--folder", type=Path, default=None, help=f"votes folder (default: ${VOTES_ENV} or data/votes)")
    parser.add_argument("--csv", type=Path, default=None, help="write every vote to this CSV file")
    parser.add_argument("--json", action="store_true", help="print every number as JSON instead of the table")
    args = parser.parse_args(argv)
    store = VoteStore(args.folder)
    from tunesmith.listening.stats import format_table, summary

    result = summary(store.judgements())
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        print(f"{store.total()} votes written to {store.export_csv(args.csv)}")


if __name__ == "__main__":
    main()
