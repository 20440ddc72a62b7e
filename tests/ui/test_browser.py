"""The app as a person sees it: headless Chromium renders the page."""

from __future__ import annotations

import re
import time
from contextlib import contextmanager

import librosa
import pytest

from tunesmith.audio.io import encode_wav
from tunesmith.transcriber.voice import voice_like
from ui_browser import Browser, chromium, distinct_colours, fake_microphone_flags, screenshot
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
    for tab in ("Hum to tune", "Effects", "Classify", "Studio"):  # offered once their models are loaded
        assert tab not in text


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


PANEL = "Array.from(document.querySelectorAll('[id^=section-]')).find(p => p.offsetParent !== null)"
"""JavaScript: the section (tab) on show."""
MESSAGE = f"(({PANEL}).querySelector('.status-line [data-testid=markdown]') || {{innerText: ''}}).innerText.trim()"
"""JavaScript: the message line of the tab on show, once its button's action has finished."""


SECTIONS = (("Hum to tune", "Your melody"), ("Effects", "Before"), ("Classify", "A tune"),
            ("Studio", "Ask the studio"), ("Compose", "Prompt"))
"""Every section but the first, then the first again, with a label that shows it is on show."""


@pytest.mark.server
def test_every_tab_opens_and_the_page_stays_responsive(app_module, ui_server, tmp_path):
    """A person reaches each tab's inputs: the Hum to tune, Effects and Classify recorders included.
    Every section is offered, in order, since the server has every model loaded."""
    with launched(app_module, ui_server.http_url) as url:
        with Browser(tmp_path / "profile") as browser:
            browser.open(url)
            text = browser.wait_for_text("is running", timeout=60)
            assert (text.index("Compose") < text.index("Hum to tune") < text.index("Effects")
                    < text.index("Classify") < text.index("Studio"))
            shown = {}
            for tab, label in SECTIONS:
                browser.select_tab(tab)
                shown[tab] = browser.evaluate(f"{PANEL}.innerText")
    for tab, label in SECTIONS:
        assert label in shown[tab], (tab, shown[tab][:500])
    assert "Composer" in shown["Compose"]  # a generator version or the studio pipeline
    for tab in ("Hum to tune", "Effects", "Classify"):
        assert "Record" in shown[tab], f"the {tab} tab offers no microphone"


HUMMED = """X:1
T:Four bars
M:4/4
L:1/8
K:D
D2F2 A2d2|c2A2 F2A2|B2G2 E2G2|F2E2 D4|]
"""
"""The melody sung into the fake microphone: four bars in D, from D4 up to D5."""
HUMMED_RANGE = (62, 74)
"""Its lowest and highest notes, D4 and D5, as MIDI numbers."""
HUM_SECONDS = 6.0
"""How long the test records: three of the four bars at 120 quarter notes per minute."""


@pytest.fixture(scope="module")
def hummed_wav(tmp_path_factory):
    """The melody as a person might hum it (drifting tempo, vibrato, breath), at a microphone's 48 kHz."""
    path = tmp_path_factory.mktemp("microphone") / "hummed.wav"
    path.write_bytes(encode_wav(voice_like(HUMMED, seed=3, tempo=120, sample_rate=48000), 48000))
    return path


def _audio_box(label: str) -> str:
    """JavaScript: the audio input labelled ``label``."""
    return f"document.querySelector('[data-testid=\"waveform-{label}\"]')"


def _record(browser: Browser, box: str) -> tuple[list[str], str]:
    """Record :data:`HUM_SECONDS` from the microphone into an audio input, as a person would.

    Args:
        browser: a browser started with :func:`fake_microphone_flags`, showing the input's tab.
        box: JavaScript for the audio input (:func:`_audio_box`).

    Returns:
        The microphones the page offers, and the URL of the recording it uploaded.
    """
    browser.wait_for(f"!!{box}", "the audio input", timeout=30)
    browser.click("Record audio", within=box)  # the microphone, not the file upload
    devices = browser.wait_for(f"Array.from({box}.querySelectorAll('select option')).map(o => o.text)",
                               "the list of microphones", timeout=30)
    browser.click("Record", within=box)
    browser.wait_for(f"Array.from({box}.querySelectorAll('button')).some("
                     "b => b.offsetParent !== null && b.innerText.trim() === 'Stop')",
                     "recording to start", timeout=30)
    time.sleep(HUM_SECONDS)  # the person hums for a while
    browser.click("Stop", within=box)
    recording = browser.wait_for(
        f"(a => a && a.href.includes('file=') && a.href)({box}.querySelector('a[download]'))",
        "the recording to be uploaded", timeout=60)
    return devices, recording


@contextmanager
def _hummed_into(app_module, server_url: str, hummed_wav, profile, section: str, box_label: str):
    """The app in a browser whose microphone hums ``hummed_wav``, recorded into a section's audio input.

    Yields:
        ``(browser, devices, recording)``: the browser showing ``section``, the microphones the page
        offered, and the URL of the uploaded recording.
    """
    with launched(app_module, server_url) as url:
        with Browser(profile, flags=fake_microphone_flags(hummed_wav)) as browser:
            browser.open(url)
            browser.wait_for_text("Inference server at", timeout=60)
            browser.select_tab(section)
            devices, recording = _record(browser, _audio_box(box_label))
            yield browser, devices, recording


def _pitch_letters(abc: str) -> list[str]:
    """The note letters of an ABC tune's first bar (``D2 F2 A2 d2 |`` gives D, F, A, d)."""
    body = abc.split("\nK:", 1)[1].split("\n", 1)[1]
    return re.findall(r"[A-Ga-g]", body.split("|", 1)[0])


@pytest.mark.server
def test_a_melody_hummed_into_the_microphone_is_transcribed_continued_and_played(
    app_module, ui_server, hummed_wav, tmp_path
):
    """Record from the microphone on the Hum to tune tab, as a person would, and get a tune back.

    Chromium's fake microphone plays ``hummed_wav``; the page records it with its own recorder
    (getUserMedia and MediaRecorder), uploads the recording and sends it to the transcriber.
    """
    with _hummed_into(app_module, ui_server.http_url, hummed_wav, tmp_path / "profile", "Hum to tune",
                      "Your melody") as (browser, devices, recording):
        browser.click("Transcribe and continue")
        message = browser.wait_for(MESSAGE, "the tab's answer", timeout=240)
        text = browser.evaluate(f"{PANEL}.innerText")
        engraved = browser.evaluate(f"{PANEL}.querySelectorAll('.notation svg').length")
        tune_wav = browser.wait_for(
            f"Array.from({PANEL}.querySelectorAll('[src],[href]')).map(e => e.getAttribute('src') || "
            f"e.getAttribute('href')).find(u => u && u.includes('file=') && u !== {recording!r} && "
            "u.endsWith('.wav'))", "the tune's audio player", timeout=30)
        played = browser.evaluate(  # what the page's own audio stack makes of the tune's file
            f"fetch({tune_wav!r}).then(r => r.arrayBuffer()).then(b => new OfflineAudioContext(1, 1, 22050)"
            ".decodeAudioData(b)).then(a => ({seconds: a.duration, rate: a.sampleRate}))", timeout=60)
        tune_abc = browser.evaluate(f"Array.from({PANEL}.querySelectorAll('.cm-content'))"
                                    ".map(e => e.innerText).find(t => t.includes('K:')) || ''")
        png = browser.screenshot(tmp_path / "hummed.png")
    assert any("Fake" in name for name in devices), devices
    assert message.startswith("Heard ") and " in D;" in message, message
    assert "continued it and played the tune on fiddle" in message, message
    said_seconds = float(re.search(r": ([0-9.]+) s at", message).group(1))
    assert played["seconds"] == pytest.approx(said_seconds, abs=0.1), (played, message)
    summary = re.search(r"(\d+) notes from ([A-G][#♯b♭]?\d) to ([A-G][#♯b♭]?\d)", text)
    assert summary, text
    low, high = (librosa.note_to_midi(n.replace("♯", "#").replace("♭", "b")) for n in summary.group(2, 3))
    assert int(summary.group(1)) >= 6, summary.group(0)  # three bars of four notes, at the least
    assert HUMMED_RANGE[0] - 2 <= low <= high <= HUMMED_RANGE[1] + 2, summary.group(0)
    assert engraved >= 1, "no notation SVG for the tune"
    assert "K:D" in tune_abc and _pitch_letters(tune_abc) == _pitch_letters(HUMMED), tune_abc
    assert distinct_colours(png) > 50


@pytest.mark.server
def test_a_melody_hummed_into_the_microphone_is_classified(app_module, ui_server, hummed_wav, tmp_path):
    """The Classify tab's microphone: record, press Classify, see the most likely dance rhythm."""
    with _hummed_into(app_module, ui_server.http_url, hummed_wav, tmp_path / "profile", "Classify",
                      "A tune") as (browser, _, _):
        browser.click("Classify", within=PANEL)
        text = browser.wait_for(MESSAGE, "the tab's answer", timeout=120)
        top = browser.wait_for(f"Array.from({PANEL}.querySelectorAll('textarea, input[type=text]'))"
                               ".map(e => e.value).find(v => v)", "the top label", timeout=30)
    said = re.search(r"Most likely an? (.+?) \((\d+)%\)", text)
    assert said, text
    assert said.group(1) == top
    assert 0 < int(said.group(2)) <= 100


@pytest.mark.server
def test_the_studio_plays_the_winner_and_charts_the_critics_scores(app_module, ui_gateway, tmp_path):
    """The Studio section against a Seldon gateway: pick an example prompt, ask, see and hear the winner."""
    with launched(app_module, ui_gateway.http_url, seldon=True) as url:
        with Browser(tmp_path / "profile") as browser:
            browser.open(url)
            browser.wait_for_text("Seldon endpoint at", timeout=60)
            browser.select_tab("Studio")
            browser.wait_for_text("pipeline is ready", timeout=60)
            browser.click("a lively jig in D", within=PANEL)  # an example fills the prompt
            browser.wait_for(f"{PANEL}.querySelector('textarea').value === 'a lively jig in D'", "the prompt")
            browser.click("Ask the studio", within=PANEL)
            message = browser.wait_for(MESSAGE, "the studio's answer", timeout=240)
            bars = browser.wait_for("document.querySelectorAll('#studio-scores .mark-rect path').length",
                                    "the critic's bar chart", timeout=30)
            captions = browser.evaluate("Array.from(document.querySelectorAll('#studio-scores text'))"
                                        ".map(t => t.textContent).filter(t => /^[A-Z]: [0-9.]+$/.test(t))")
            engraved = browser.evaluate(f"{PANEL}.querySelectorAll('.notation svg').length")
            wav = browser.wait_for(
                f"Array.from({PANEL}.querySelectorAll('[src],[href]')).map(e => e.getAttribute('src') || "
                "e.getAttribute('href')).find(u => u && u.includes('file=') && u.endsWith('.wav'))",
                "the winner's audio player", timeout=30)
            played = browser.evaluate(
                f"fetch({wav!r}).then(r => r.arrayBuffer()).then(b => new OfflineAudioContext(1, 1, 22050)"
                ".decodeAudioData(b)).then(a => a.duration)", timeout=60)
            report = browser.evaluate(f"Array.from({PANEL}.querySelectorAll('textarea')).map(e => e.value)"
                                      ".find(v => v.includes('winner')) || ''")
            png = browser.screenshot(tmp_path / "studio.png")
    chosen = re.search(r"The critic chose ([A-Z]) of (\d+) candidates", message)
    assert chosen, message
    assert "studio pipeline" in message and ":studio.pipeline:" in message
    assert bars == int(chosen.group(2)) == len(captions) >= 2, (bars, captions, message)
    assert engraved >= 1, "no notation SVG for the winner"
    assert played > 1, played
    assert f"winner {chosen.group(1)}" in report, report
    assert distinct_colours(png) > 50
