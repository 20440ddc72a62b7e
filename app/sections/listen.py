"""The Listen section: a blind listening test. Which clip sounds most like a real folk tune?

Each round plays a real tune of the held-out test split and the tunes two generator versions (the
experiment's arms) wrote under the same header, on the same instrument at the same tempo, cut to the
same length, in random order and without labels (:mod:`tunesmith.listening.rounds`). The listener
picks one, or says "can't tell"; then the answer is revealed, with the tune critic's scores of the
generated clips beside it. Votes are kept in SQLite (:mod:`tunesmith.listening.votes`), so none is
lost to concurrent voters or a killed app, and the statistics (:mod:`tunesmith.listening.stats`)
update live.

Three API endpoints (scripts and tests rely on them)::

    from gradio_client import Client
    client = Client("http://127.0.0.1:7860")
    round_id, a, b, c = client.predict(api_name="/listen_round")    # c is None in a two-clip round
    reveal = client.predict(round_id, "B", api_name="/vote")         # "A", "B", "C" or "can't tell"
    results = client.predict(api_name="/listen_results")             # {"total": ..., "arms": {...}, ...}

A listener is the browser (an id kept in a cookie), or, over the API, the client's session:
one listener's vote counts once per clip set.
"""

from __future__ import annotations

import functools
import tempfile
import threading
from pathlib import Path

import gradio as gr

from app.common import AppContext
from tunesmith.listening.rounds import CRITIC, discover_arms, make_clip_set
from tunesmith.listening.stats import REAL, format_table, summary
from tunesmith.listening.votes import (
    CANT_TELL,
    CHOICES,
    LETTERS,
    Counted,
    Round,
    VoteError,
    VoteStore,
    default_folder,
    listener_id,
)
from tunesmith.serving.client import GENERATOR, SYNTHESIZER, ClientError, MusicClient

LABEL = "Listen"
NEEDS = (GENERATOR, SYNTHESIZER, CRITIC)
"""Models that must be loaded before the app offers this section: the generator and the synthesizer
make the clips; the critic, stage 3's judge of tunes, is quoted in the reveal (a round without it
still plays), and it puts the section where it belongs, in stage 3 with the experiments it judges."""
BOOTSTRAP = 200
"""Bootstrap resamples behind the live Bradley-Terry intervals (a fraction of a second for 1,000 votes)."""
REFRESH_S = 20.0
"""Seconds between live updates of the statistics while the page is open (other people vote too)."""
LISTENER_COOKIE = "tunesmith_listener"
SET_COOKIE_JS = f"""
() => {{
  if (!document.cookie.split("; ").some(c => c.startsWith("{LISTENER_COOKIE}="))) {{
    const id = Math.random().toString(36).slice(2) + Date.now().toString(36);
    document.cookie = `{LISTENER_COOKIE}=${{id}}; max-age=31536000; path=/; SameSite=Lax`;
  }}
}}
"""
"""Runs in the browser at page load: gives the browser a listener id in a cookie (kept a year), which
every request then carries, so one person's votes count once per clip set across reloads."""

_making = threading.Lock()
"""One clip set is made at a time: a request that waited for it then gets a round of the new set."""


@functools.lru_cache(maxsize=None)
def _store(folder: str | None) -> VoteStore:
    return VoteStore(folder)


def votes_store() -> VoteStore:
    """The votes of ``$TUNESMITH_VOTES_DIR`` (else ``data/votes/``), opened on first use."""
    return _store(str(default_folder()))


class NoRound(Exception):
    """No round can be served: nothing stored is left for this listener and no new set can be made."""


def listen_round(server_url: str, listener: str, store: VoteStore | None = None, seldon: bool | None = None) -> Round:
    """A round for ``listener``: a stored clip set they have not heard yet, else a new one.

    Raises:
        NoRound: the server cannot make a new set; the message says why.
    """
    store = store or votes_store()
    played = store.next_round(listener)
    if played is not None:
        return played
    with _making:
        played = store.next_round(listener)  # another request may have made one meanwhile
        if played is not None:
            return played
        with MusicClient(server_url, seldon=seldon) as client:
            try:
                clip_set = make_clip_set(client, discover_arms(client))
            except (ClientError, ValueError) as exc:
                raise NoRound(f"Could not make a listening round: {exc}") from exc
        store.add_set(clip_set)
        return store.next_round(listener)


def _who(played: Round, letter: str) -> str:
    clip = played.clips[played.letters.index(letter)]
    if clip.arm == REAL:
        return "the real tune"
    return f"`{clip.arm}`" + (f" (critic {clip.critic:.2f})" if clip.critic is not None else "")


def reveal(counted: Counted) -> str:
    """The answer to a vote, in Markdown: was it counted, what was picked, and who wrote each clip."""
    played = counted.round
    if not counted.counted:
        first = f"**{counted.earlier}**" if counted.earlier != CANT_TELL else f"\"{CANT_TELL}\""
        head = f"Not counted again: you already voted on these clips (you chose {first})."
    elif counted.choice == CANT_TELL:
        head = "Counted: you could not tell."
    elif played.arm_of(counted.choice) == REAL:
        head = f"Counted: you picked **{counted.choice}**, and it is the real tune."
    else:
        head = f"Counted: you picked **{counted.choice}**, written by {_who(played, counted.choice)}."
    rhythm = f"{played.rhythm} in {played.key}" if played.rhythm else f"tune in {played.key}"
    clips = "; ".join(f"**{letter}**: {_who(played, letter)}" for letter in played.letters)
    tempo = f" at {played.tempo} bpm" if played.tempo else ""
    return (f"{head}\n\n{clips}. The real tune is a {rhythm} ({played.source}, from the test split); "
            f"every clip was played on {played.instrument}{tempo}.")


def vote(round_id: str, choice: str, listener: str, store: VoteStore | None = None) -> str:
    """Count a vote and reveal the answer; a vote that cannot be counted is answered with why."""
    store = store or votes_store()
    try:
        return reveal(store.vote((round_id or "").strip(), choice, listener))
    except VoteError as exc:
        return f"Not counted: {exc}."


def listen_results(store: VoteStore | None = None) -> dict:
    """The statistics of every stored vote (:func:`tunesmith.listening.stats.summary`)."""
    return summary((store or votes_store()).judgements(), bootstrap=BOOTSTRAP)


def _listener(request: gr.Request | None) -> str:
    """The browser's cookie (:data:`SET_COOKIE_JS`) when it sent one, else the session (an API client's own)."""
    cookie = (request.cookies.get(LISTENER_COOKIE) if request is not None else None) or ""
    if cookie:
        return listener_id(f"browser:{cookie}")
    return listener_id(f"session:{request.session_hash}" if request is not None and request.session_hash else None)


def build(ctx: AppContext) -> None:
    """The clips and the vote on the left; the statistics on the right."""
    gr.Markdown(
        "One real folk tune from the test split (no model trained on it) and tunes the generator versions "
        "wrote in its metre, key and rhythm, all played alike in random order. Which one is the real tune? "
        "Your vote is counted once per set of clips; the answer shows right after it.",
        elem_classes=["tab-intro"],
    )
    with gr.Row():
        with gr.Column(scale=3, min_width=320):
            new = gr.Button("New round", variant="primary")
            round_id = gr.Textbox(label="Round", interactive=False, max_lines=1)
            with gr.Row():
                clips = [gr.Audio(label=f"Clip {letter}", type="filepath", interactive=False) for letter in LETTERS]
            choice = gr.Radio(list(CHOICES), label="Which sounds most like a real folk tune?")
            cast = gr.Button("Vote")
            answer = gr.Markdown(label="Answer", elem_classes=["status-line"], elem_id="listen-answer")
        with gr.Column(scale=2, min_width=300):
            table = gr.Markdown(elem_id="listen-results")
            refresh = gr.Button("Refresh results", size="sm")
            with gr.Accordion("Every number (JSON)", open=False):
                results = gr.JSON(label="Results")
            export = gr.Button("Export the votes (CSV)", size="sm")
            csv_file = gr.File(label="Votes (CSV)", interactive=False, height=90)

    def play(request: gr.Request):
        try:
            played = listen_round(ctx.server_url, _listener(request), seldon=ctx.seldon)
        except NoRound as exc:
            raise gr.Error(str(exc)) from None
        # The clips go out as bytes, not paths: Gradio serves files only from the working folder and
        # the temporary one (the notebooks run the app from notebooks/), and caches bytes under names
        # of its own, which say nothing about the arm.
        clips = [clip.path.read_bytes() for clip in played.clips]
        return played.id, *clips, *[None] * (len(LETTERS) - len(clips))

    def judge(round_id, choice, request: gr.Request):
        return vote(round_id, choice, _listener(request))

    def statistics():
        return listen_results()

    def update():  # the same numbers, for the page's own (private) refreshes
        return listen_results()

    def export_csv():
        return str(votes_store().export_csv(Path(tempfile.mkdtemp(prefix="votes-")) / "votes.csv"))

    new.click(play, None, [round_id, *clips], api_name="listen_round", concurrency_limit=8,
              api_description="A listening round: its id and its clips A, B (and C), in random order, unlabelled.",
              ).then(lambda: ("", None), None, [answer, choice], api_visibility="private")
    cast.click(judge, [round_id, choice], answer, api_name="vote", concurrency_limit=8,
               api_description="Vote on a round: 'A', 'B', 'C' or \"can't tell\"; returns the reveal.",
               ).then(update, None, results, api_visibility="private")
    refresh.click(statistics, None, results, api_name="listen_results", concurrency_limit=2,
                  api_description="The statistics of every vote: total, the real tune's pick rate, per-arm rates, "
                                  "win rates against the real tune and Bradley-Terry strengths.")
    results.change(format_table, results, table, api_visibility="private")
    ctx.demo.load(update, None, results, js=SET_COOKIE_JS, api_visibility="private")
    gr.Timer(REFRESH_S).tick(update, None, results, api_visibility="private")
    export.click(export_csv, None, csv_file, api_visibility="private")
