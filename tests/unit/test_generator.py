"""The shipped tune generator: determinism, row independence, header following."""

import subprocess
import sys

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunesmith import paths
from tunesmith.music.abc import BAR_TOKENS, Header, bar_checks, read_tune
from tunesmith.generator.model import TuneGenerator

CHECKPOINT = paths.CHECKPOINTS / "tune-generator"
JIG = Header(meter="6/8", key="D", rhythm="jig")
WALTZ = Header(meter="3/4", key="Am", rhythm="waltz")
REEL = Header(meter="4/4", key="G", rhythm="reel")


@pytest.fixture(scope="module")
def gen():
    return TuneGenerator.from_pretrained(CHECKPOINT, threads=1)


def test_checkpoint_loads_with_the_auto_classes():
    model = AutoModelForCausalLM.from_pretrained(CHECKPOINT)
    tokenizer = AutoTokenizer.from_pretrained(CHECKPOINT)
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.convert_ids_to_tokens(tokenizer("M:6/8 K:D R:jig")["input_ids"]) == ["M:6/8", "K:D", "R:jig"]


def test_same_seed_same_tune_other_seed_other_tune(gen):
    a = gen.generate([JIG], [7], bars=8)
    b = gen.generate([JIG], [7], bars=8)
    c = gen.generate([JIG], [8], bars=8)
    assert a == b
    assert a != c


def test_a_row_does_not_depend_on_the_other_rows(gen):
    batch = gen.generate([REEL, JIG, WALTZ], [1, 2, 3], bars=8)
    assert gen.generate([JIG], [2], bars=8)[0] == batch[1]
    assert gen.generate([WALTZ, REEL], [3, 99], bars=8)[0] == batch[2]


def test_same_tune_in_a_fresh_process(gen):
    code = (
        "from tunesmith.generator.model import TuneGenerator; from tunesmith.music.abc import Header;"
        f"g = TuneGenerator.from_pretrained({str(CHECKPOINT)!r}, threads=1);"
        "print(g.generate([Header(meter='6/8', key='D', rhythm='jig')], [11], bars=8)[0], end='')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == gen.generate([JIG], [11], bars=8)[0]


@pytest.mark.parametrize("header", [JIG, WALTZ, REEL, Header(meter="9/8", key="Em", rhythm="slip jig"),
                                    Header(meter="2/4", key="A", rhythm="polka")])
def test_headers_are_followed_and_every_bar_fills_the_meter(gen, header):
    tunes = gen.generate([header] * 3, [0, 1, 2], bars=12, titles=["a", "b", "c"])
    for tune, title in zip(tunes, "abc"):
        lines = tune.splitlines()
        assert lines[:3] == ["X:1", f"T:{title}", f"M:{header.meter}"]
        assert "L:1/8" in lines and f"K:{header.key}" in lines
        assert f"R:{header.rhythm}" in lines
        parsed_header, symbols = read_tune(tune)
        assert parsed_header.meter == header.meter and parsed_header.key == header.key
        assert all(bar_checks(symbols, header.meter))
        assert symbols[-1] in ("|]", ":|")
        bars = sum(1 for s in symbols if s in BAR_TOKENS and not s.startswith("["))
        assert 12 <= bars <= 14  # the bars asked for, plus a pickup and a short section end


def test_plain_sampling_is_still_available(gen):
    tune = gen.generate([JIG], [3], bars=8, constrained=False)[0]
    assert tune.startswith("X:1\nT:Tune 3\nM:6/8\nL:1/8\nR:jig\nK:D\n")


def test_bad_requests_raise_value_errors_naming_the_problem(gen):
    with pytest.raises(ValueError, match="key"):
        gen.generate([Header(key="H")], [1])
    with pytest.raises(ValueError, match="meter"):
        gen.generate([Header(meter="17/3")], [1])
    with pytest.raises(ValueError, match="seeds"):
        gen.generate([JIG, JIG], [1])
    with pytest.raises(ValueError, match="bars"):
        gen.generate([JIG], [1], bars=gen.max_bars + 1)
    assert gen.generate([], []) == []


def test_headers_are_canonicalised_and_titles_kept_on_one_line(gen):
    tune = gen.generate([Header(meter="C", key="Dmaj", rhythm="reel")], [5], bars=4, titles=["a\nK:C"])[0]
    assert tune.splitlines()[:6] == ["X:1", "T:a K:C", "M:4/4", "L:1/8", "R:reel", "K:D"]


def test_rhythm_names_are_canonicalised_and_unknown_ones_refused_only_when_strict(gen):
    assert gen.check_header(Header(meter="6/8", key="D", rhythm="Slip-Jig")).rhythm == "slip jig"
    polka = Header(meter="2/4", key="G", rhythm="polka")
    assert gen.check_header(polka).rhythm == "polka"  # free text: conditions as "no rhythm given"
    with pytest.raises(ValueError, match="unknown rhythm 'polka'; the model knows: air, hornpipe, jig, reel"):
        gen.check_header(polka, strict_rhythm=True)


def test_a_quick_training_run_writes_a_loadable_checkpoint(tmp_path):
    from tunesmith.generator.train import main

    main(["--quick", "--out", str(tmp_path)])
    for name in ("model.safetensors", "config.json", "tokenizer.json", "training_record.json", "loss_curve.png"):
        assert (tmp_path / name).exists()
    small = TuneGenerator.from_pretrained(tmp_path, threads=1)
    header = Header(meter=small.meters[0], key=small.keys[0])
    tune = small.generate([header], [0], bars=4)[0]
    assert all(bar_checks(read_tune(tune)[1], header.meter))


def body_of(tune: str) -> list[str]:
    return read_tune(tune)[1]


@pytest.mark.parametrize("opening, expected", [
    ("A2B c2d | e2f g2e |", ["A2", "B", "c2", "d", "|", "e2", "f", "g2", "e", "|"]),
    ("A2B c2d | e2f g", ["A2", "B", "c2", "d", "|", "e2", "f", "g"]),  # stops inside a bar
    ("X:1\nM:6/8\nL:1/16\nK:D\nA4B2 c4d2 | e4f2 g4e2 |]", ["A2", "B", "c2", "d", "|", "e2", "f", "g2", "e", "|"]),
])
def test_an_opening_is_read_into_canonical_symbols(gen, opening, expected):
    assert gen.prefix_symbols(opening, JIG) == expected


def test_a_continuation_keeps_the_opening_and_every_bar_fills_the_meter(gen):
    opening = "A2B c2d | e2f g"
    tunes = gen.generate([JIG, JIG, REEL], [1, 2, 3], bars=8, prefixes=[opening, None, "GABc dedB|"])
    first, plain, reel = (body_of(t) for t in tunes)
    assert first[:8] == ["A2", "B", "c2", "d", "|", "e2", "f", "g"]
    assert reel[:9] == ["G", "A", "B", "c", "d", "e", "d", "B", "|"]
    for symbols, header in ((first, JIG), (plain, JIG), (reel, REEL)):
        assert all(bar_checks(symbols, header.meter))
        bars = sum(1 for s in symbols if s in BAR_TOKENS)
        assert 8 <= bars <= 10
    assert tunes[1] == gen.generate([JIG], [2], bars=8)[0]  # a row without an opening is unchanged


def test_a_continuation_is_reproducible_and_depends_on_its_own_row_only(gen):
    alone = gen.generate([JIG], [4], bars=6, prefixes=["d2B A2F |"])[0]
    batch = gen.generate([REEL, JIG], [9, 4], bars=6, prefixes=[None, "d2B A2F |"])
    assert batch[1] == alone


@pytest.mark.parametrize("opening, words", [
    ("hello", "'h'"),
    ("A2B c2d e2 | f", "does not fit"),  # a bar of 7 eighths in 6/8
    ("X:1\nM:3/4\nK:D\nABc|", "meter"),
    ("X:1\nM:6/8\nK:G\nABc|", "key"),
    ("A2B c2d |" * 9, "already has 9 bars"),
    ("   ", "empty"),
    ("A2B c2d | ^^^c", "cannot be read"),
])
def test_an_opening_that_cannot_be_continued_is_refused_by_name(gen, opening, words):
    with pytest.raises(ValueError, match=words):
        gen.generate([JIG], [1], bars=8, prefixes=[opening])


def test_temperature_and_bars_can_differ_per_row(gen):
    rows = gen.generate([JIG, WALTZ], [1, 2], temperature=[0.5, 1.2], bars=[4, 6])
    assert rows[0] == gen.generate([JIG], [1], temperature=0.5, bars=4)[0]
    assert rows[1] == gen.generate([WALTZ], [2], temperature=1.2, bars=6)[0]
    with pytest.raises(ValueError, match="bars"):
        gen.generate([JIG, WALTZ], [1, 2], bars=[4])
    with pytest.raises(ValueError, match="temperature"):
        gen.generate([JIG], [1], temperature=[0.0])
    with pytest.raises(ValueError, match="prefixes"):
        gen.generate([JIG], [1], prefixes=[None, None])


def test_the_stage_1_call_is_unchanged(gen):
    """Positional and keyword calls from stage 1 still work and give the same tunes as per-row lists."""
    old_style = gen.generate([JIG, REEL], [5, 6], 0.9, 6)
    assert old_style == gen.generate([JIG, REEL], [5, 6], temperature=[0.9, 0.9], bars=[6, 6], prefixes=[None, None])
