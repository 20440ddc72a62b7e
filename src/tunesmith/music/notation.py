"""Sheet music for ABC tunes, engraved offline by Verovio as SVG.

Verovio reads ABC natively and needs no network, fonts or external programs. Its ABC reader,
however, is written in C++ and ends the whole Python process with a segmentation fault on some
malformed input (text without an ``X:`` line, an unbalanced body such as ``]]]] (((``). A tune
written by a small language model can be malformed, and a crash must not take the Gradio app or a
notebook kernel down with it. So each rendering runs in a short-lived child process
(``python -m tunesmith.music.notation``, reading a JSON request on stdin); starting it costs a few tens
of milliseconds, and a crash there becomes a :class:`NotationError` here.

Example::

    from tunesmith.music.notation import abc_to_svg
    svg = abc_to_svg("X:1\\nT:Scale\\nM:4/4\\nL:1/8\\nK:D\\nDEFG ABcd|]\\n")
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys

# Verovio layout: pageWidth is in tenths of a millimetre (A4 = 2100); scale is a percentage of the
# default staff size. The SVG gets a viewBox so that it shrinks to the width of its container.
DEFAULT_OPTIONS = {
    "inputFrom": "abc",
    "pageWidth": 2100,
    "pageMarginLeft": 50,
    "pageMarginRight": 50,
    "pageMarginTop": 50,
    "pageMarginBottom": 50,
    "adjustPageHeight": True,
    "scale": 40,
    "footer": "none",
    "svgViewBox": True,
}
RENDER_TIMEOUT = 60.0
MAX_ABC_CHARS = 50_000


class NotationError(ValueError):
    """The ABC text could not be engraved; the message says why in plain words."""


def _check(abc: str) -> str:
    """Refuse, with a clear message, input that Verovio is known to crash on or cannot use."""
    if not isinstance(abc, str):
        raise NotationError(f"ABC must be text, got {type(abc).__name__}")
    abc = abc.strip()
    if not abc:
        raise NotationError("there is no ABC text to engrave")
    if len(abc) > MAX_ABC_CHARS:
        raise NotationError(f"the ABC text has {len(abc)} characters; at most {MAX_ABC_CHARS} are engraved")
    if not re.search(r"^X:", abc, re.MULTILINE):
        raise NotationError("the ABC text has no X: (reference number) line, so it is not a tune")
    if not re.search(r"^K:", abc, re.MULTILINE):
        raise NotationError("the ABC text has no K: (key) line, so it is not a tune")
    return abc + "\n"


def abc_to_svg_pages(abc: str, options: dict | None = None, timeout: float = RENDER_TIMEOUT) -> list[str]:
    """Engrave an ABC tune and return one SVG document per page.

    Args:
        abc: the tune, with at least X: and K: header lines.
        options: Verovio options that override :data:`DEFAULT_OPTIONS` (e.g. ``{"scale": 60}``).
        timeout: seconds to allow the engraving process.

    Returns:
        SVG documents as strings, one per page (most folk tunes fit on one).

    Raises:
        NotationError: the text is not a tune Verovio can read, or Verovio crashed on it.
    """
    abc = _check(abc)
    request = json.dumps({"abc": abc, "options": {**DEFAULT_OPTIONS, **(options or {})}})
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tunesmith.music.notation"],
            input=request,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise NotationError(f"engraving took longer than {timeout:g} s") from None
    if done.returncode < 0 or not done.stdout.strip():
        raise NotationError("Verovio could not read this ABC (the engraver stopped on it)")
    answer = json.loads(done.stdout)
    if answer.get("error"):
        raise NotationError(answer["error"])
    return answer["pages"]


_VIEWBOX = re.compile(r'<svg\b[^>]*?\bviewBox="0 0 ([\d.]+) ([\d.]+)"')


def _stack(pages: list[str]) -> str:
    """Put page SVGs one under another inside a single SVG document.

    One document (rather than several concatenated) is what an ``.svg`` file, a browser and
    ``IPython.display.SVG`` all accept. Each page becomes a nested ``<svg>`` placed at its offset.
    """
    sizes = []
    for page in pages:
        match = _VIEWBOX.search(page)
        if match is None:  # without a viewBox the pages cannot be placed; leave them side by side
            return "\n".join(pages)
        sizes.append((float(match.group(1)), float(match.group(2))))
    width = max(w for w, _ in sizes)
    parts, y = [], 0.0
    for page, (w, h) in zip(pages, sizes):
        body = re.sub(r"^\s*<\?xml[^>]*>\s*", "", page)
        parts.append(body.replace("<svg", f'<svg x="0" y="{y:g}" width="{w:g}" height="{h:g}"', 1))
        y += h
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'viewBox="0 0 {width:g} {y:g}">\n' + "\n".join(parts) + "\n</svg>"
    )


def abc_to_svg(abc: str, options: dict | None = None, timeout: float = RENDER_TIMEOUT) -> str:
    """Engrave an ABC tune as one SVG document; a tune longer than a page has its pages stacked.

    Args and Raises: as :func:`abc_to_svg_pages`.

    Returns:
        SVG markup, ready to put into an HTML page, show with ``IPython.display.SVG``, or save as a
        ``.svg`` file.
    """
    pages = abc_to_svg_pages(abc, options, timeout)
    return pages[0] if len(pages) == 1 else _stack(pages)


def message_svg(text: str, width: int = 640, height: int = 60) -> str:
    """A small SVG that shows ``text``, to stand where the notation would be."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">'
        f'<rect width="100%" height="100%" fill="#fff8e6" stroke="#e0c080"/>'
        f'<text x="12" y="{height // 2 + 5}" font-family="sans-serif" font-size="14" fill="#604000">'
        f"{html.escape(text)}</text></svg>"
    )


def notation_html(abc: str, options: dict | None = None) -> str:
    """HTML for a web page: the engraved tune, or a short message where it cannot be engraved.

    Never raises, so a user interface can show whatever comes back.
    """
    if not (abc or "").strip():
        return ""
    try:
        svg = abc_to_svg(abc, options)
    except NotationError as exc:
        return f'<div class="notation notation-error">{message_svg("No notation: " + str(exc), width=900)}</div>'
    return f'<div class="notation" style="background:#fff;padding:4px">{svg}</div>'


def _render(abc: str, options: dict) -> dict:
    """Run Verovio in this process (the child side of :func:`abc_to_svg_pages`)."""
    import verovio

    verovio.enableLog(verovio.LOG_OFF)
    toolkit = verovio.toolkit()
    toolkit.setOptions(options)
    if not toolkit.loadData(abc):
        return {"error": "Verovio could not read this ABC"}
    pages = toolkit.getPageCount()
    if pages < 1:
        return {"error": "Verovio read the ABC but found no music to engrave"}
    return {"pages": [toolkit.renderToSVG(page) for page in range(1, pages + 1)]}


def _main() -> int:
    request = json.loads(sys.stdin.read())
    json.dump(_render(request["abc"], request["options"]), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
