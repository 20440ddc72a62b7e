"""Build the training corpus from the ABC tunes that ship inside music21.

``python -m tunesmith.music.corpus`` (``make data``) reads every ``*.abc`` file of music21's corpus,
normalises each tune with :func:`tunesmith.music.abc.normalise_tune`, skips (and counts) those it
cannot normalise, and writes three splits to ``data/abc/{train,validation,test}.abc``. The split
of a tune is decided by a hash of its canonical content, so it is the same on every machine and
a tune that appears twice in the corpus (several collections share tunes) lands in one split.
The test split is reserved for judging generated music against real tunes and is never trained
on. The splits are not committed: they regenerate in well under a minute.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith import paths
from tunesmith.music.abc import NormaliseError, normalise_tune, read_tune, render_tune

SPLITS = ("train", "validation", "test")
ABC_DIR = paths.DATA / "abc"
STATS_FILE = "stats.json"
MIN_SYMBOL_COUNT = 3  # tunes using a symbol rarer than this are skipped (it could not be learnt)
MAX_SYMBOLS = 600  # longer tunes (a few long set dances and medleys) are skipped
COLLECTIONS = ("essenFolksong", "oneills1850", "airdsAirs", "ryansMammoth", "miscFolk", "nottingham-dataset")


@dataclass
class Tune:
    """One normalised tune and where it came from."""

    collection: str
    source: str  # file name and X: number, for tracing a tune back to music21's corpus
    abc: str  # canonical ABC text
    symbols: list[str] = field(repr=False)

    @property
    def split(self) -> str:
        """``train`` (90%), ``validation`` (5%) or ``test`` (5%) from a hash of the tune's notes."""
        digest = hashlib.sha256(" ".join(self.symbols).encode()).digest()
        bucket = int.from_bytes(digest[:4], "big") % 100
        return "test" if bucket < 5 else "validation" if bucket < 10 else "train"


def corpus_dir() -> Path:
    """Folder of music21's bundled corpus (found from the installed package, never downloaded)."""
    import music21.corpus

    return Path(os.path.dirname(music21.corpus.__file__))


def raw_tunes(root: Path | None = None):
    """Yield ``(collection, source, text)`` for every tune in music21's ABC files.

    Args:
        root: corpus folder; defaults to :func:`corpus_dir`.
    """
    root = root or corpus_dir()
    for collection in COLLECTIONS:
        for path in sorted((root / collection).rglob("*.abc")):
            data = path.read_bytes()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = data.decode("latin-1")
            chunks = re.split(r"(?m)^(?=X:)", text)
            for chunk in chunks:
                m = re.match(r"X:\s*(\S*)", chunk)
                if m:
                    yield collection, f"{path.name}#{m.group(1)}", chunk


def build(out_dir: Path = ABC_DIR, limit: int | None = None) -> dict:
    """Normalise the corpus and write the three split files plus ``stats.json``.

    Args:
        out_dir: where the ``.abc`` split files go.
        limit: stop after this many raw tunes (for quick tests).

    Returns:
        The statistics written to ``stats.json``: counts per collection and split, skip reasons,
        header coverage.
    """
    tunes: list[Tune] = []
    skipped: collections.Counter = collections.Counter()
    raw_counts: collections.Counter = collections.Counter()
    for n, (collection, source, text) in enumerate(raw_tunes()):
        if limit is not None and n >= limit:
            break
        raw_counts[collection] += 1
        try:
            header, symbols = normalise_tune(text)
        except NormaliseError as exc:
            skipped[_reason(str(exc))] += 1
            continue
        except (ValueError, ZeroDivisionError, IndexError):
            skipped["unreadable"] += 1
            continue
        if len(symbols) > MAX_SYMBOLS:
            skipped["longer than %d symbols" % MAX_SYMBOLS] += 1
            continue
        tunes.append(Tune(collection, source, render_tune(header, symbols), symbols))

    counts = collections.Counter(s for t in tunes for s in t.symbols)
    kept: list[Tune] = []
    seen: set[str] = set()
    for tune in tunes:
        if any(counts[s] < MIN_SYMBOL_COUNT for s in tune.symbols):
            skipped["uses a rare symbol"] += 1
            continue
        if tune.abc in seen:
            skipped["exact duplicate"] += 1
            continue
        seen.add(tune.abc)
        kept.append(tune)

    out_dir.mkdir(parents=True, exist_ok=True)
    per_split: dict[str, list[Tune]] = {s: [] for s in SPLITS}
    for tune in kept:
        per_split[tune.split].append(tune)
    for split, items in per_split.items():
        with open(out_dir / f"{split}.abc", "w", encoding="utf-8") as fh:
            for i, tune in enumerate(items, 1):
                body = tune.abc.split("\n", 1)[1]
                fh.write(f"X:{i}\n%source {tune.collection}/{tune.source}\n{body}\n")
    stats = {
        "raw_tunes": dict(raw_counts),
        "raw_total": sum(raw_counts.values()),
        "kept_total": len(kept),
        "skipped": dict(skipped.most_common()),
        "per_split": {s: len(v) for s, v in per_split.items()},
        "per_collection_split": {
            c: {s: sum(1 for t in v if t.collection == c) for s, v in per_split.items()} for c in COLLECTIONS
        },
        "header_coverage": _coverage(kept),
    }
    (out_dir / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def _reason(message: str) -> str:
    """Group error messages into a few skip reasons for the data card."""
    for key in ("meter", "key", "tuplet", "change", "length", "bars", "missing", "triplet", "ending", "read", "unit"):
        if key in message:
            return {"read": "unreadable symbol", "bars": "fewer than four bars"}.get(key, key)
    return message


def _coverage(tunes: list[Tune]) -> dict:
    rhythm = collections.Counter()
    meter = collections.Counter()
    key = collections.Counter()
    for tune in tunes:
        header, _ = read_tune(tune.abc)
        rhythm[header.rhythm or "none"] += 1
        meter[header.meter] += 1
        key[header.key] += 1
    return {
        "with_rhythm": sum(v for k, v in rhythm.items() if k != "none"),
        "rhythm": dict(rhythm.most_common()),
        "meter": dict(meter.most_common(15)),
        "key": dict(key.most_common(20)),
    }


def read_split(split: str, data_dir: Path = ABC_DIR) -> list[str]:
    """The canonical tunes of one split, as ABC strings (call :func:`ensure_splits` first)."""
    text = (data_dir / f"{split}.abc").read_text(encoding="utf-8")
    return [chunk.strip() + "\n" for chunk in re.split(r"(?m)^(?=X:)", text) if chunk.strip()]


def ensure_splits(data_dir: Path = ABC_DIR) -> Path:
    """Build the split files if any is missing; returns the folder that holds them."""
    if not all((data_dir / f"{s}.abc").exists() for s in SPLITS):
        build(data_dir)
    return data_dir


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m tunesmith.music.corpus [--out DIR] [--limit N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ABC_DIR, help="folder for the split files")
    parser.add_argument("--limit", type=int, default=None, help="read only the first N raw tunes")
    args = parser.parse_args(argv)
    stats = build(args.out, args.limit)
    print(json.dumps(stats, indent=2))


if __name__ == "__main__":
    main()
