"""Metrics on hand-made tunes."""

import numpy as np

from tunesmith.generator.quality import (
    RunIndex,
    bar_checks_of,
    estimated_key,
    key_correlation,
    parse_score,
    parses,
    pitch_histogram,
)
from tunesmith.music.keys import tonic_and_mode

D_MAJOR = """X:1
T:Scale
M:4/4
L:1/8
K:D
D2 E2 F2 G2 | A2 B2 c2 d2 | d2 c2 B2 A2 | G2 F2 E2 D2 |
D2 F2 A2 d2 | A2 F2 D4 | F2 A2 F2 D2 | D8 |]
"""


def test_a_d_major_scale_parses_fills_its_bars_and_fits_d_major():
    assert parses(D_MAJOR)
    assert all(bar_checks_of(D_MAJOR))
    hist = pitch_histogram(parse_score(D_MAJOR))
    assert key_correlation(hist, "D") > 0.8
    assert key_correlation(hist, "D") > key_correlation(hist, "Eb")
    assert estimated_key(hist) == tonic_and_mode("D")


def test_overfull_bar_is_counted_wrong():
    bad = D_MAJOR.replace("A2 F2 D4 |", "A2 F2 D6 |")
    assert bar_checks_of(bad) == [True, True, True, True, True, False, True, True]


def test_garbage_does_not_parse():
    assert not parses("X:1\nK:D\n")


def test_run_index_finds_copies_but_not_short_overlaps():
    index = RunIndex([D_MAJOR], n=16)
    assert D_MAJOR in index
    other = D_MAJOR.replace("D2 F2 A2 d2", "E2 G2 B2 e2").replace("G2 F2 E2 D2", "G2 A2 B2 c2")
    assert other not in index


def test_an_empty_histogram_correlates_with_no_key():
    assert key_correlation(np.zeros(12), "D") == 0.0


def test_run_index_finds_transposed_copies():
    from tunesmith.music.abc import read_tune, render_tune
    from tunesmith.music.pitch import transpose

    index = RunIndex([D_MAJOR], n=16)
    header, symbols = read_tune(D_MAJOR)
    assert render_tune(*transpose(header, symbols, 3)) in index
