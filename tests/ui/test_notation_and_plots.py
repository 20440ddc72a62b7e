"""tunesmith.music.notation (Verovio, isolated in a child process) and tunesmith.audio.plots (matplotlib)."""

from __future__ import annotations

from xml.dom import minidom

import numpy as np
import pytest
from matplotlib.figure import Figure

from tunesmith.music.notation import NotationError, abc_to_svg, abc_to_svg_pages, message_svg, notation_html
from tunesmith.audio.plots import spectrogram, waveform

JIG = """X:1
T:The Test Jig
M:6/8
L:1/8
K:D
|:A|dfd cec|dfa agf|gbg faf|gfe e2A|dfd cec|dfa agf|gbg fed|ecA d2:|
"""


def test_abc_is_engraved_as_svg():
    svg = abc_to_svg(JIG)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "viewBox" in svg  # scales to its container


def test_long_tunes_give_every_page():
    body = JIG.split("K:D\n")[1]
    pages = abc_to_svg_pages(JIG.replace("K:D\n", "K:D\n" + body * 40))
    assert len(pages) > 1
    svg = abc_to_svg(JIG.replace("K:D\n", "K:D\n" + body * 40))
    assert svg.count("Engraved by Verovio") == len(pages)  # every page is there...
    minidom.parseString(svg)  # ...inside one SVG document


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "no ABC text"),
        ("hello", "no X:"),
        ("X:1\nT:no key\nabc|", "no K:"),
        # Verovio's ABC reader crashes its process on this; the crash stays in the child process.
        ("X:1\nT:t\nM:6/8\nL:1/8\nK:D\nzzz ]]]] ((( |", "Verovio could not read"),
    ],
)
def test_unreadable_abc_is_a_clear_error(text, words):
    with pytest.raises(NotationError, match=words):
        abc_to_svg(text)


def test_notation_html_never_raises():
    assert "<svg" in notation_html(JIG)
    assert "No notation: the ABC text has no X:" in notation_html("hello")
    assert notation_html("") == ""
    assert "a &amp; &lt;b&gt;" in message_svg("a & <b>")


def test_plots_are_figures():
    sr = 16000
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)
    for plot in (waveform, spectrogram):
        fig = plot(tone, sr)
        assert isinstance(fig, Figure) and fig.axes
        assert isinstance(plot(np.stack([tone, tone], axis=1), sr), Figure)  # stereo is mixed to mono
        assert isinstance(plot(tone[:10], sr), Figure)  # very short audio still draws
    with pytest.raises(ValueError, match="sample rate"):
        waveform(tone, 0)
