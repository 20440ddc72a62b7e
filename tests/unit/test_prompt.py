"""The keyword prompt parser."""

import pytest

from tunesmith.music.abc import Header
from tunesmith.generator.prompt import DEFAULT, parse_prompt


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a lively jig in D major", Header(meter="6/8", key="D", rhythm="jig")),
        ("a slow waltz in A minor", Header(meter="3/4", key="Am", rhythm="waltz")),
        ("slip jig in E dorian", Header(meter="9/8", key="Edor", rhythm="slip jig")),
        ("Bm reel", Header(meter="2/2", key="Bm", rhythm="reel")),
        ("hornpipe in B flat", Header(meter="2/2", key="Bb", rhythm="hornpipe")),
        ("a march in 6/8, F# minor", Header(meter="6/8", key="F#m", rhythm="march")),
        ("polka in G", Header(meter="2/4", key="G", rhythm="polka")),
        ("an open-air dance in G", Header(meter="4/4", key="G", rhythm=None)),
        ("a slow air in G", Header(meter="3/4", key="G", rhythm="air")),
        ("a polka in g, please", Header(meter="2/4", key="G", rhythm="polka")),
    ],
)
def test_recognised_requests(text, expected):
    assert parse_prompt(text) == expected


@pytest.mark.parametrize("text", ["", "something nice", "A tune", "a reel in a hurry", "🎻🎻", "x" * 10000])
def test_anything_else_gets_defaults_and_never_raises(text):
    header = parse_prompt(text)
    assert header.key == DEFAULT.key
    assert header.meter in (DEFAULT.meter, "2/2")  # "a reel in a hurry" is still a reel
