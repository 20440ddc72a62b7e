"""Corpus extraction and splitting."""

from tunesmith.music.abc import bar_checks, read_tune
from tunesmith.music.corpus import SPLITS, Tune, build, raw_tunes, read_split
from tunesmith.generator.tokenizer import build_tokenizer, encode_tune, tune_symbols


def test_music21_ships_all_collections():
    counts = {}
    for collection, _, _ in raw_tunes():
        counts[collection] = counts.get(collection, 0) + 1
    assert counts["essenFolksong"] > 8000 and counts["oneills1850"] > 2000 and counts["ryansMammoth"] > 1000
    assert sum(counts.values()) > 12900


def test_build_writes_three_splits_of_canonical_tunes(tmp_path):
    stats = build(tmp_path, limit=400)
    assert stats["raw_total"] == 400
    assert stats["kept_total"] + sum(stats["skipped"].values()) == 400
    tunes = [t for split in SPLITS for t in read_split(split, tmp_path)]
    assert len(tunes) == stats["kept_total"]
    header, symbols = read_tune(tunes[0])
    assert header.unit == "1/8" and symbols
    assert sum(all(bar_checks(read_tune(t)[1], read_tune(t)[0].meter)) for t in tunes) > 0.5 * len(tunes)  # the first files are old German songs, the least regular


def test_split_depends_only_on_the_tune_content():
    a = Tune("x", "a.abc#1", "", ["A", "B", "|"])
    b = Tune("y", "b.abc#9", "", ["A", "B", "|"])
    assert a.split == b.split
    splits = [Tune("x", "", "", [str(i)]).split for i in range(2000)]
    assert 0.85 < splits.count("train") / 2000 < 0.95
    assert splits.count("test") > 50


def test_tokenizer_round_trips_a_tune(tmp_path):
    build(tmp_path, limit=200)
    tunes = read_split("train", tmp_path)
    tokenizer = build_tokenizer(tune_symbols(t) for t in tunes)
    ids = encode_tune(tokenizer, tunes[0])
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == "<s>" and tokens[-1] == "</s>"
    assert tokens[1:-1] == tune_symbols(tunes[0])
    assert tokens[1].startswith("M:") and tokens[2].startswith("K:") and tokens[3].startswith("R:")
    # the pre-tokenizer never joins two symbols: encoding the text gives the same tokens
    assert tokenizer.tokenize(" ".join(tune_symbols(tunes[0]))) == tokens[1:-1]
