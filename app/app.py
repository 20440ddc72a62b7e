"""Tunesmith's web UI: compose a folk tune from a prompt, see it engraved, hear it played.

The app holds no model code. Every action is a V2 REST call to the inference server through
:mod:`tunesmith.serving.client`, so what the UI shows is exactly what any other client of the server gets,
and the UI keeps working (and says so plainly) while the server is down or a model is missing.

Run it from the repository root (``make app`` does this)::

    python -m app                       # server at $TUNESMITH_SERVER_URL or http://127.0.0.1:8080
    python -m app --port 7861 --server-url http://127.0.0.1:9080

The Compose action is also an API endpoint::

    from gradio_client import Client
    abc = Client("http://127.0.0.1:7860").predict("a lively jig in D", api_name="/compose")[1]

The other tabs are API endpoints too: ``/hum_to_tune`` (a recording in, its transcription and a
tune that continues it out), ``/effects`` (an audio file and effect settings in, the processed
audio out), ``/classify`` (an audio file in, the probability of each dance rhythm out) and
``/studio`` (a prompt in; stage 3's pipeline: the critic's pick of both generator versions' tunes,
its scores and report out)::

    client.predict(handle_file("hummed.wav"), api_name="/hum_to_tune")

The server may be a plain MLServer or a Seldon Core v2 endpoint (``tunesmith gateway``, which ``make
up`` runs once stage 3's manifests exist, or a cluster's mesh): ``--seldon`` or
``TUNESMITH_SELDON=1`` says which. A Seldon endpoint names each generator version as a model of its
own and serves pipelines; the status line then lists its models and pipelines, loading ones too.

This module is the frame: the title, the server status line, the section radio and the launch
options. Each section (tab) is a module of :mod:`app.sections` registered in :data:`TABS`, so a later
stage adds a section by writing a module and appending it there; what sections share is in
:mod:`app.common`.

The app grows with the workshop: a section module declares the models it needs (``NEEDS``), and the
radio offers a section only once the server has all of them loaded, so a stage-1 learner sees a
stage-1 app. The page answers at once, also while the server is still starting: the status line says
so, and the app checks again every few seconds until the server answers and nothing is loading; after
that it keeps looking (less often) for models loaded later, e.g. by a notebook of the next stage.
"""

from __future__ import annotations

import argparse
import os
from typing import Callable

import gradio as gr

from app.common import AppContext
from app.sections import classify, compose, effects, hum, listen, monitor, studio
from tunesmith.serving.client import (
    CLASSIFIER,
    DEFAULT_URL,
    EFFECTS,
    GENERATOR,
    SELDON_ENV,
    STARTING_ENV,
    SYNTHESIZER,
    TRANSCRIBER,
    URL_ENV,
    ClientError,
    MusicClient,
    ServerUnavailable,
    seldon_from_env,
)

TITLE = "Tunesmith"
MODELS = (GENERATOR, SYNTHESIZER)
"""The models of stage 1: the status line always names them."""
LATER_MODELS = (TRANSCRIBER, EFFECTS, CLASSIFIER)
"""Models of later stages: named in the status line once the server has them."""
RECHECK_S = 3.0
"""Seconds between status checks while the server is starting or its models are loading."""
STARTING = "The inference server at {url} is starting… The sections appear as their models become ready."
WATCH_S = 15.0
"""Seconds between status checks while some section waits for a model nobody is loading yet (a
learner's next notebook may load it): rare enough to cost nothing, often enough to notice."""
CSS = """
.notation svg { width: 100%; height: auto; }
.status-line p { margin: 0; }
.sections { border-bottom: 1px solid var(--border-color-primary); padding-bottom: 6px; }
.sections label { font-weight: 600; }
"""


# -- server status ---------------------------------------------------------------------------------
def server_status(server_url: str, seldon: bool | None = None) -> str:
    """One plain Markdown line: is the server running, and which models are loaded.

    Args:
        server_url: base URL of the inference server.
        seldon: whether it is a Seldon endpoint (then its models and pipelines are listed, loading
            ones too); ``None``: ``$TUNESMITH_SELDON``.

    Returns:
        Markdown text, never an exception: the UI shows it as it is.
    """
    return _status(server_url, seldon)[0]


def _status(server_url: str, seldon: bool | None = None) -> tuple[str, bool, list[str]]:
    """:func:`server_status`'s line, whether it is worth checking again soon (the server is not up yet,
    or models are still loading), and the labels of the sections whose models are all ready."""
    client = MusicClient(server_url, timeout=5, seldon=seldon)
    try:
        if client.seldon:
            line, loading, ready = _seldon_status(client)
            return line, loading, shown_sections(client, ready)
        if not client.live():
            return str(ServerUnavailable(server_url)), True, shown_sections(client, set())
        listed = client.models()
        known = {m["name"] for m in listed}
        names = list(MODELS) + [name for name in LATER_MODELS if name in known]
        ready = {name: client.model_ready(name) for name in names}
        states = ", ".join(f"`{name}` {'ready' if ok else '**not loaded**'}" for name, ok in ready.items())
        line = f"Inference server at {server_url} is running: {states}."
        if not all(ready.values()):
            line += " Run the notebook that writes the missing model's folder, then restart `make serve`."
        loaded = {m["name"] for m in listed if m.get("state") == "READY"}
        loading = any(m.get("state") in ("LOADING", "REGISTERED") for m in listed)
        return line, loading, shown_sections(client, loaded)
    except ClientError as exc:
        return str(exc), False, shown_sections(client, set())
    finally:
        client.close()


def starting_from_env() -> bool:
    """Whether the launcher said the server is still starting (:data:`STARTING_ENV`)."""
    return os.environ.get(STARTING_ENV, "").strip().lower() in ("1", "true", "yes")


def shown_sections(client: MusicClient, ready: set[str]) -> list[str]:
    """The labels of the sections whose ``NEEDS`` are all among the ``ready`` models, in order.

    A need is a model's plain name (``tune-generator``); talking Seldon it is looked up under the
    Seldon Model that serves it (``tune-generator-v2``, see :func:`tunesmith.serving.client.seldon_name`).
    """
    return [label for label, _ in TABS if all(client.model_name(need) in ready for need in NEEDS[label])]


def _seldon_status(client: MusicClient) -> tuple[str, bool, set[str]]:
    """The status line of a Seldon endpoint: its models by state, then its pipelines.

    The gateway answers while MLServer behind it is still loading, so "loading" is a normal state
    here; a model that failed shows its reason.
    """
    url = client.url
    try:
        models = client.models()
    except ServerUnavailable as exc:
        return str(exc), True, set()
    except ClientError:  # a cluster's mesh has no listing: offer every section, each says what is missing
        return (f"Seldon endpoint at {url}: " + ("answering" if client.live() else "not answering")
                + " (it lists no models; `seldon model status` does on a cluster)."), False, EVERY_MODEL
    ready = [m["name"] for m in models if m["state"] == "READY"]
    failed = [m for m in models if m["state"] == "UNAVAILABLE" and m.get("reason")]
    loading = [m["name"] for m in models if m["name"] not in ready and m not in failed]
    if not models:
        line = f"Seldon endpoint at {url} is running, with no models."
    elif len(ready) == len(models):
        line = f"Seldon endpoint at {url} is running: all {len(models)} models ready."
    else:
        line = f"Seldon endpoint at {url} is running: {len(ready)} of {len(models)} models ready"
        if loading:
            line += "; loading: " + ", ".join(f"`{name}`" for name in loading)
        if failed:
            line += "; **failed**: " + ", ".join(f"`{m['name']}` ({m['reason']})" for m in failed)
        line += "."
    try:
        pipelines = client.pipelines()
    except ClientError:
        pipelines = []
    if pipelines:
        line += " Pipelines: " + ", ".join(
            f"`{p['name']}` {'ready' if p.get('ready') else '**not ready**'}" for p in pipelines) + "."
    return line, bool(loading), set(ready)


SECTIONS = (compose, hum, effects, classify, studio, listen, monitor)
"""The section modules, in the order they are shown."""
TABS: list[tuple[str, Callable[[AppContext], None]]] = [(section.LABEL, section.build) for section in SECTIONS]
"""The app's tabs, in order: a label and the function that builds the tab's contents (one module
of :mod:`app.sections` each)."""
NEEDS: dict[str, tuple[str, ...]] = {section.LABEL: tuple(getattr(section, "NEEDS", ())) for section in SECTIONS}
"""The models each section needs loaded before it is offered (a section without ``NEEDS`` is always offered)."""


class _EveryModel(set):
    """Stands for "every model" where a listing is missing (a cluster's mesh): every section is offered."""

    def __contains__(self, name) -> bool:
        return True


EVERY_MODEL = _EveryModel()


# -- the app ---------------------------------------------------------------------------------------
def section_id(label: str) -> str:
    """The HTML id of a section's column: ``"Hum to tune"`` -> ``"section-hum-to-tune"``."""
    return "section-" + label.lower().replace(" ", "-")


def sections_css(shown: str) -> str:
    """Style rules that show the section ``shown`` and hide the others."""
    return "\n".join(
        f"#{section_id(label)} {{ display: {'flex' if label == shown else 'none'} !important; }}" for label, _ in TABS
    )


SHOW_SECTION_JS = """
(choice) => {
  const slug = (label) => "section-" + label.toLowerCase().replaceAll(" ", "-");
  for (const option of document.querySelectorAll("#sections input[type=radio]")) {
    const section = document.getElementById(slug(option.value));
    if (section) section.style.setProperty("display", option.value === choice ? "flex" : "none", "important");
  }
  return [];
}
"""
"""Browser-side handler of the section radio: sets each section's display in its inline style, which
outranks the page's style sheets (:func:`sections_css` hides all but the first section at load)."""


def build_app(server_url: str | None = None, seldon: bool | None = None) -> gr.Blocks:
    """Build the whole UI.

    Args:
        server_url: inference server base URL; defaults to ``$TUNESMITH_SERVER_URL``, else
            ``http://127.0.0.1:8080``.
        seldon: whether the server is a Seldon endpoint (``tunesmith gateway``, a cluster's mesh);
            defaults to ``$TUNESMITH_SELDON``.

    Returns:
        The Gradio Blocks app, not yet launched.
    """
    server_url = (server_url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    seldon = seldon_from_env() if seldon is None else seldon
    served_by = "Seldon Core v2 (models and pipelines behind one address)" if seldon else "MLServer"
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        ctx = AppContext(server_url, demo, seldon=seldon)
        gr.Markdown(f"# {TITLE}\nFolk tunes from a prompt, served by {served_by} over the V2 inference protocol.")
        with gr.Row(equal_height=True):
            status = gr.Markdown(label="Status", elem_classes=["status-line"])
            refresh = gr.Button("Check server", size="sm", scale=0, min_width=140)
        # The sections are switched by a radio rather than gr.Tabs: in gradio 6.11-6.15, gr.Tabs
        # with three or more tabs locks the page in an endless update loop on the first tab switch
        # (gradio issue 13198, fixed in 6.16), and MLServer 1.7.1's fastapi pin holds gradio at 6.15.
        # Every section is rendered once at load and shown or hidden in the browser: no server
        # round trip, so a switch never waits behind a tune being composed.
        # At first only the sections that need no model: the page-load check offers the others.
        section = gr.Radio([label for label, _ in TABS if not NEEDS[label]], value=TABS[0][0], show_label=False, container=False,
                           elem_id="sections", elem_classes=["sections"])
        for label, build_tab in TABS:
            with gr.Column(elem_id=section_id(label)):
                build_tab(ctx)
        section.change(None, section, None, js=SHOW_SECTION_JS, api_visibility="private")

        answered = {"yet": not starting_from_env()}  # until the server first answers, "not running" means "starting"

        def said(line: str) -> str:
            if line.startswith(("Inference server at", "Seldon endpoint at")):
                answered["yet"] = True
            elif not answered["yet"] and line == str(ServerUnavailable(ctx.server_url)):
                return STARTING.format(url=ctx.server_url)
            return line

        def check():
            return said(server_status(ctx.server_url, ctx.seldon))

        # The page answers before the server does (``make up`` opens the UI while the server starts):
        # the status line and the sections on offer are checked again every few seconds while the
        # server is starting or loading, then every WATCH_S while a section still waits for a model.
        recheck = gr.Timer(RECHECK_S, active=False)

        def check_and_recheck(shown: str):
            line, soon, labels = _status(ctx.server_url, ctx.seldon)
            line = said(line)
            waiting = len(labels) < len(TABS)
            timer = gr.Timer(RECHECK_S if soon else WATCH_S, active=soon or waiting)
            value = shown if shown in labels else labels[0] if labels else None
            return line, timer, gr.Radio(choices=labels, value=value)

        demo.load(check_and_recheck, section, [status, recheck, section], api_visibility="private")
        recheck.tick(check_and_recheck, section, [status, recheck, section], api_visibility="private",
                     show_progress="hidden")
        refresh.click(check, None, status, api_name="status")
        refresh.click(check_and_recheck, section, [status, recheck, section], api_visibility="private")
    demo.server_url = ctx.server_url
    demo.seldon = ctx.seldon
    return demo


def offline_theme() -> gr.themes.Base:
    """Gradio's default look with fonts served by the app itself.

    The default theme loads "Source Sans Pro" from Google Fonts, a request that fails offline (or
    hangs behind a firewall that drops it). IBM Plex Sans ships inside the gradio package.
    """
    from gradio.themes.utils import fonts

    return gr.themes.Default(font=(fonts.LocalFont("IBM Plex Sans"), "ui-sans-serif", "system-ui", "sans-serif"))


def launch_options() -> dict:
    """Keyword arguments for ``Blocks.launch`` shared by :func:`main`, the notebook and the tests.

    Server-side rendering needs Node.js and is off; no share link; fonts come from the app.
    """
    return {"ssr_mode": False, "share": False, "css": CSS + sections_css(TABS[0][0]), "theme": offline_theme()}


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m app [--host H] [--port P] [--server-url URL]``."""
    parser = argparse.ArgumentParser(prog="python -m app", description="Tunesmith web UI")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"),
                        help="address to listen on (default: $HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("UI_PORT", "7860")),
                        help="port to listen on (default: $UI_PORT or 7860)")
    parser.add_argument("--server-url", default=None,
                        help=f"inference server (default: ${URL_ENV} or {DEFAULT_URL})")
    parser.add_argument("--seldon", action=argparse.BooleanOptionalAction, default=None,
                        help=f"the server is a Seldon endpoint, e.g. tunesmith gateway (default: ${SELDON_ENV})")
    args = parser.parse_args(argv)
    demo = build_app(args.server_url, args.seldon)
    kind = "Seldon endpoint" if demo.seldon else "inference server"
    print(f"UI on http://{args.host}:{args.port}, calling the {kind} at {demo.server_url}", flush=True)
    demo.queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=args.port, **launch_options())


if __name__ == "__main__":
    main()
