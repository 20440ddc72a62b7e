"""Headless Chromium for the UI tests: a one-shot screenshot, and a page driven until it shows text.

``chromium --screenshot`` captures the page once its scripts settle in *virtual* time, which runs
ahead of the real clock: it cannot wait for a tune that the server takes seconds to compose. For
that, :class:`Browser` speaks the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (JSON
messages separated by NUL bytes on file descriptors 3 and 4), which needs nothing beyond the
standard library: it opens the page, polls ``document.body.innerText`` until the wanted text
appears, clicks buttons as a person would, and captures a PNG.

A :class:`Browser` started with :func:`fake_microphone_flags` has a microphone that plays a WAV
file and grants the page access to it without asking, so the UI's recording path (getUserMedia and
MediaRecorder) runs for real, headless.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


class PageFrozen(AssertionError):
    """The page's scripts never returned control: it does not react to anything a person does."""


def fake_microphone_flags(wav: Path, loop: bool = False) -> tuple[str, ...]:
    """Chromium flags that make ``wav`` the microphone and allow the page to use it unasked.

    Args:
        wav: a WAV file; Chromium starts playing it when the page opens the microphone.
        loop: play it again and again; otherwise silence follows its end.

    Returns:
        Flags for :class:`Browser`.
    """
    return (
        "--use-fake-ui-for-media-stream",  # grant the microphone without a permission prompt
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}{'' if loop else '%noloop'}",
    )


def chromium() -> str | None:
    """Path of the Chromium executable, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(url: str, png: Path, profile: Path, size: str = "1280,1600", budget_ms: int = 15000) -> Path:
    """``chromium --headless --screenshot``: load ``url`` and save what it shows as ``png``."""
    subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
         f"--screenshot={png}", f"--window-size={size}", url],
        check=True, capture_output=True, timeout=120,
    )
    return png


def distinct_colours(png: Path) -> int:
    """How many different colours the picture holds (1 means a blank page)."""
    from PIL import Image

    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    return len(colours) if colours is not None else 1 << 20


class Browser:
    """A headless Chromium driven over the DevTools protocol; use as a context manager."""

    def __init__(self, profile: Path, size: tuple[int, int] = (1280, 1600), flags: tuple[str, ...] = ()):
        """Start Chromium.

        Args:
            profile: a fresh folder for the browser's profile.
            size: the window's width and height in pixels.
            flags: Chromium flags added to :data:`CHROMIUM_FLAGS` for this browser only (for
                example :func:`fake_microphone_flags`).
        """
        self.size = size
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire_pipes():  # Chromium reads commands on fd 3 and writes answers on fd 4
            reader, writer = os.dup(to_chrome_r), os.dup(from_chrome_w)  # in case either is 3 or 4
            os.dup2(reader, 3)
            os.dup2(writer, 4)

        self.process = subprocess.Popen(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *flags, "--remote-debugging-pipe",
             f"--window-size={size[0]},{size[1]}", "about:blank"],
            pass_fds=(3, 4),  # kept open in the child after wire_pipes has set them
            preexec_fn=wire_pipes,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _read_message(self, deadline: float | None = None) -> dict:
        while b"\0" not in self._buffer:
            if deadline is not None:
                ready, _, _ = select.select([self._from_chrome], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: bool = True,
             timeout: float | None = None) -> dict:
        """Send one DevTools command and return its result (events in between are skipped).

        Args:
            method: the DevTools method, for example ``"Runtime.evaluate"``.
            params: its parameters.
            session: send it to the attached page rather than to the browser.
            timeout: seconds to wait for the answer; ``None`` waits as long as it takes. A page
                whose scripts never return control (an endless loop) does not answer at all.

        Raises:
            TimeoutError: no answer within ``timeout``; a late answer is skipped by the next call.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def open(self, url: str) -> None:
        """Open ``url`` in a new tab and attach to it."""
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        width, height = self.size
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.send("Page.navigate", {"url": url})

    def text(self) -> str:
        """The visible text of the page."""
        result = self.send("Runtime.evaluate", {"expression": "document.body ? document.body.innerText : ''", "returnByValue": True})
        return result.get("result", {}).get("value") or ""

    def evaluate(self, expression: str, timeout: float | None = None):
        """Run JavaScript in the page and return its value (a promise is awaited).

        Raises:
            RuntimeError: the script threw; the message is the page's own.
            TimeoutError: the page did not answer within ``timeout`` seconds.
        """
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                           timeout=timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise RuntimeError(details.get("exception", {}).get("description") or details.get("text"))
        return result.get("result", {}).get("value")

    def wait_for_text(self, words: str, timeout: float = 180.0) -> str:
        """Poll the page until its text contains ``words``; return the text."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if words in text:
                return text
            time.sleep(0.5)
        raise TimeoutError(f"{words!r} did not appear within {timeout:g} s; the page shows:\n{text[:2000]}")

    def wait_for(self, expression: str, what: str, timeout: float = 60.0):
        """Poll a JavaScript expression until its value is truthy; return that value.

        Args:
            expression: JavaScript evaluated in the page.
            what: what is awaited, in words, for the error message.
            timeout: seconds to wait.

        Raises:
            TimeoutError: the value stayed falsy; the message ends with the page's text.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression, timeout=max(1.0, deadline - time.monotonic()))
            if value:
                return value
            time.sleep(0.25)
        raise TimeoutError(f"{what} did not happen within {timeout:g} s; the page shows:\n{self.text()[:2000]}")

    def click(self, text: str, within: str = "document", timeout: float = 30.0, selector: str = "button") -> None:
        """Click the visible button whose text or aria-label is ``text``, as a person would.

        Args:
            text: the button's visible text (trimmed), or its ``aria-label``.
            within: a JavaScript expression for the element to search in.
            timeout: seconds to wait for the button to appear, and for the page to handle the click.
            selector: CSS selector of the candidates, ``#sections label`` for a section of the app.

        Raises:
            PageFrozen: the page's scripts did not return from handling the click.
        """
        find = (f"Array.from(({within}).querySelectorAll({json.dumps(selector)})).find(b => b.offsetParent !== null && "
                f"!b.disabled && (b.innerText.trim() === {json.dumps(text)} || "
                f"b.getAttribute('aria-label') === {json.dumps(text)}))")
        self.wait_for(f"!!({find})", f"a visible button {text!r}", timeout)
        try:
            self.evaluate(f"({find}).click()", timeout=timeout)
        except TimeoutError:
            raise PageFrozen(f"the page froze handling a click on {text!r}: no answer for {timeout:g} s") from None

    def select_tab(self, label: str, timeout: float = 30.0, frozen_after: float = 15.0) -> None:
        """Open the app's section (tab) named ``label`` and wait until it is on show.

        The app switches sections with a row of radio buttons (``#sections``); each section is a
        column with the id ``section-<label in lower case, hyphens for spaces>``. A click that lands
        while the page is still wiring up its events is lost, as it would be for a person, who
        would click again.

        Args:
            label: the section's name, e.g. ``"Hum to tune"``.
            timeout: seconds until the section must be on show.
            frozen_after: seconds without an answer after a click that count as a frozen page.

        Raises:
            PageFrozen: the page stopped answering after a click.
            TimeoutError: the section never showed.
        """
        panel = "section-" + label.lower().replace(" ", "-")
        shown = f"(e => !!e && e.offsetParent !== null)(document.getElementById({json.dumps(panel)}))"
        deadline = time.monotonic() + timeout
        while not self.evaluate(shown, timeout=timeout):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the section {label!r} was chosen but never shown")
            self.click(label, timeout=frozen_after, selector="#sections label")
            self.wait_until_responsive(frozen_after)
            time.sleep(0.25)

    def wait_until_responsive(self, timeout: float = 20.0) -> None:
        """Raise :class:`PageFrozen` unless the page runs a trivial script within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        try:  # two round trips through the event loop: one right away, one after the next frame
            self.evaluate("1", timeout=timeout)
            self.evaluate("new Promise(r => requestAnimationFrame(() => r(1)))",
                          timeout=max(1.0, deadline - time.monotonic()))
        except TimeoutError:
            raise PageFrozen(f"the page did not answer for {timeout:g} s: its scripts are stuck in a loop") from None

    def screenshot(self, png: Path) -> Path:
        """Save the current view as a PNG."""
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        png.write_bytes(base64.b64decode(data))
        return png
