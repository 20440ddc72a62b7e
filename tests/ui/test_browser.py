"""The app as a person sees it: headless Chromium renders the page."""

from __future__ import annotations

import pytest

from ui_browser import Browser, chromium, distinct_colours, screenshot
from ui_launch import launched

pytestmark = [
    pytest.mark.ui,
    pytest.mark.browser,
    pytest.mark.skipif(chromium() is None, reason="chromium is not installed (apt-get install chromium)"),
]


def test_page_renders_and_says_the_server_is_down(app_module, closed_url, tmp_path):
    with launched(app_module, closed_url) as url:
        png = screenshot(url, tmp_path / "page.png", tmp_path / "profile")
        with Browser(tmp_path / "profile-cdp") as browser:
            browser.open(url)
            text = browser.wait_for_text("is not running", timeout=60)
    assert png.stat().st_size > 10_000
    assert distinct_colours(png) > 50, "the screenshot is blank"
    assert f"The inference server at {closed_url} is not running." in text
    for label in ("Prompt", "Compose", "Temperature", "Tempo", "Instrument", "Seed", "Bars"):
        assert label in text
    for tab in ("Hum to tune", "Effects", "Classify"):  # the later stages' tabs, after Compose
        assert tab in text
    assert text.index("Compose") < text.index("Hum to tune") < text.index("Effects") < text.index("Classify")


@pytest.mark.server
def test_a_composed_tune_is_shown_engraved_and_playable(app_module, ui_server, tmp_path):
    with launched(app_module, ui_server.http_url) as url:
        with Browser(tmp_path / "profile") as browser:
            browser.open(url + "?prompt=a+lively+jig+in+D&seed=7")
            text = browser.wait_for_text("Composed and played", timeout=300)
            engraved = browser.evaluate("document.querySelectorAll('.notation svg').length")
            audio = browser.evaluate(
                "Array.from(document.querySelectorAll('[src],[href]'))"
                ".map(e => e.getAttribute('src') || e.getAttribute('href'))"
                ".filter(u => u && u.includes('file=') && u.endsWith('.wav')).length"
            )
            plots = browser.evaluate("document.querySelectorAll('img[src^=\"data:image\"]').length")
            png = browser.screenshot(tmp_path / "composed.png")
    assert "X:" in text and "K:" in text
    assert engraved >= 1, "no notation SVG on the page"
    assert audio >= 1, "the audio player has no WAV file"
    assert plots >= 2, "waveform and spectrogram images are missing"
    assert distinct_colours(png) > 50
