"""Headless Chromium for the UI tests: a one-shot screenshot, and a page driven until it shows text.

``chromium --screenshot`` captures the page once its scripts settle in *virtual* time, which runs
ahead of the real clock: it cannot wait for a tune that the server takes seconds to compose. For
that, :class:`Browser` speaks the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (JSON
messages separated by NUL bytes on file descriptors 3 and 4), which needs nothing beyond the
standard library: it opens the page, polls ``document.body.innerText`` until the wanted text
appears, and captures a PNG.
"""

from __future__ import annotations

import base64
import json
import os
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

    def __init__(self, profile: Path, size: tuple[int, int] = (1280, 1600)):
        self.size = size
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire_pipes():  # Chromium reads commands on fd 3 and writes answers on fd 4
            reader, writer = os.dup(to_chrome_r), os.dup(from_chrome_w)  # in case either is 3 or 4
            os.dup2(reader, 3)
            os.dup2(writer, 4)

        self.process = subprocess.Popen(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
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

    def _read_message(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        """Send one DevTools command and return its result (events in between are skipped)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read_message()
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

    def evaluate(self, expression: str):
        """Run JavaScript in the page and return its value."""
        return self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}).get("result", {}).get("value")

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

    def screenshot(self, png: Path) -> Path:
        """Save the current view as a PNG."""
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        png.write_bytes(base64.b64decode(data))
        return png
