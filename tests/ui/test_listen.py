"""The blind listening test: its statistics, its SQLite store (concurrent voters, a killed app), the
``/listen_round``, ``/vote`` and ``/listen_results`` contract, and a round played in headless Chromium."""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile
from gradio_client import Client
from gradio_client.exceptions import AppError
from scipy import stats as scipy_stats

from tunesmith import paths
from tunesmith.audio.io import encode_wav
from tunesmith.listening import stats
from tunesmith.listening.rounds import discover_arms, experiment_candidates, make_clip_set
from tunesmith.listening.votes import (
    CANT_TELL,
    SCHEMA_VERSION,
    VOTES_ENV,
    Clip,
    ClipSet,
    NewerSchema,
    VoteError,
    VoteStore,
)
from tunesmith.serving.client import MusicClient
from tunesmith.serving.launcher import free_port
from ui_browser import Browser, chromium
from ui_launch import launched, load_app_module

pytestmark = pytest.mark.ui

VOTERS = 32
ARMS = ("real", "tune-generator-v1", "tune-generator-v2")


# -- statistics -------------------------------------------------------------------------------------
def test_wilson_interval_and_binomial_test_are_scipys():
    low, high = stats.wilson(7, 10)
    assert (round(low, 4), round(high, 4)) == (0.3968, 0.8922)  # the Wilson score interval of 7 in 10
    assert stats.wilson(0, 0) == (0.0, 1.0)
    assert stats.binomial_p(7, 10) == pytest.approx(scipy_stats.binomtest(7, 10, 0.5).pvalue)
    assert stats.binomial_p(0, 0) == 1.0


def test_rates_count_each_vote_once_per_pair_and_leave_out_cant_tell():
    votes = [stats.Judgement(ARMS, "real"), stats.Judgement(ARMS, "tune-generator-v2"),
             stats.Judgement(ARMS, None), stats.Judgement(("real", "tune-generator-v1"), "tune-generator-v1")]
    real = stats.pick_rate(votes, "real")
    assert (real["heard"], real["picked"]) == (3, 1)
    assert real["chance"] == pytest.approx((1 / 3 + 1 / 3 + 1 / 2) / 3)
    v1 = stats.head_to_head(votes, "tune-generator-v1", "real")
    assert (v1["wins"], v1["decisions"]) == (1, 2)  # the v2 pick says nothing about v1 against the real tune
    result = stats.summary(votes, bootstrap=0)
    assert (result["total"], result["decided"], result["cant_tell"]) == (4, 3, 1)
    assert list(result["arms"]) == ["tune-generator-v1", "tune-generator-v2"]


def test_bradley_terry_recovers_the_strengths_of_a_simulated_panel():
    true = {"real": 1.0, "tune-generator-v1": 0.3, "tune-generator-v2": 0.6}
    votes = stats.simulate(true, 800, seed=3)
    fitted = stats.bradley_terry(votes, bootstrap=60, seed=1)
    assert fitted["real"]["strength"] == 1.0
    for arm in ("tune-generator-v1", "tune-generator-v2"):
        low, high = fitted[arm]["ci"]
        assert low < fitted[arm]["strength"] < high < 1, (arm, fitted[arm])  # weaker than the real tune
        assert fitted[arm]["strength"] == pytest.approx(true[arm], rel=0.25), (arm, fitted[arm])
    assert stats.bradley_terry(votes[:100], bootstrap=20, seed=1) == stats.bradley_terry(votes[:100], bootstrap=20, seed=1)
    # an arm never picked gets a small strength, not zero (the prior)
    never = [stats.Judgement(("real", "x"), "real")] * 20
    assert 0 < stats.bradley_terry(never, bootstrap=0)["x"]["strength"] < 0.1


def test_the_bootstrap_resamples_clip_sets_when_votes_name_them():
    """Four clip sets, twenty votes each: in two every listener picks v2, in the other two the real
    tune. Votes on one set are not independent trials, and the intervals say so."""
    pair = ("real", "tune-generator-v2")
    votes = [stats.Judgement(pair, pair[n // 40], f"listener-{n}", f"set-{n // 20}") for n in range(80)]
    unnamed = [stats.Judgement(v.heard, v.chosen, v.listener) for v in votes]

    def width(judgements):
        low, high = stats.bradley_terry(judgements, bootstrap=100, seed=0)["tune-generator-v2"]["ci"]
        return np.log(high) - np.log(low)

    assert width(votes) > 2 * width(unnamed)


def test_a_panel_that_cannot_tell_is_at_chance():
    votes = stats.simulate({arm: 1.0 for arm in ARMS}, 600, seed=5)
    result = stats.summary(votes, bootstrap=0)
    low, high = result["real"]["ci"]
    assert low < 1 / 3 < high and result["real"]["p_value"] > 0.01
    assert "No votes yet." == stats.format_table(stats.summary([], bootstrap=0))
    assert "| `tune-generator-v1` |" in stats.format_table(result)


# -- the store --------------------------------------------------------------------------------------
def clip_set(n: int = 3) -> ClipSet:
    """A clip set of ``n`` short tones (the store keeps whatever audio it is given)."""
    t = np.arange(22050) / 22050
    clips = [Clip(arm, f"X:1\nK:D\n{arm}|]\n", encode_wav(0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t), 22050),
                  None if arm == "real" else 0.9) for i, arm in enumerate(ARMS[:n])]
    return ClipSet(clips, "fiddle", 168, 1.0, "6/8", "D", "jig", "test/tune.abc#1")


def test_a_round_names_clips_by_letter_and_hides_the_arms(tmp_path):
    store = VoteStore(tmp_path)
    assert store.schema_version() == SCHEMA_VERSION
    set_id = store.add_set(clip_set())
    orders = {tuple(c.arm for c in store.new_round(set_id, "x").clips) for _ in range(40)}
    assert len(orders) > 1  # the order differs from round to round
    played = store.next_round("listener")
    assert played.letters == ("A", "B", "C") and played.set_id == set_id
    assert all(arm not in clip.path.name for clip in played.clips for arm in ("real", "v1", "v2"))
    assert soundfile.info(played.clips[0].path).duration == pytest.approx(1.0)
    assert store.next_round("listener") is None  # served once: not again, voted or not
    assert store.round(played.id) == played


def test_one_vote_per_listener_and_clip_set(tmp_path):
    store = VoteStore(tmp_path)
    set_id = store.add_set(clip_set(2))
    first = store.new_round(set_id, "ann")
    assert store.vote(first.id, "b").counted
    again = store.vote(store.new_round(set_id, "ann").id, "A")
    assert not again.counted and again.earlier == "B"
    assert store.vote(store.new_round(set_id, "bob").id, "can’t tell").counted  # a curly apostrophe too
    assert store.total() == 2
    with pytest.raises(VoteError, match="has clips A, B only"):
        store.vote(first.id, "C", "cid")
    with pytest.raises(VoteError, match="unknown round"):
        store.vote("nope", "A")
    with pytest.raises(VoteError, match="unknown choice"):
        store.vote(first.id, "D")
    rows = list(csv.DictReader(open(store.export_csv(tmp_path / "votes.csv"), encoding="utf-8")))
    assert [row["choice"] for row in rows] == ["B", CANT_TELL]
    assert rows[0]["chosen"] == rows[0]["clip_B"] and rows[1]["chosen"] == "" and rows[0]["clip_C"] == ""
    assert [j.chosen for j in store.judgements()] == [rows[0]["clip_B"], None]


def test_a_database_from_a_newer_schema_is_refused(tmp_path):
    VoteStore(tmp_path)
    with sqlite3.connect(tmp_path / "votes.sqlite") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(NewerSchema, match="schema version"):
        VoteStore(tmp_path)


def _vote_in_a_process(folder: str, rounds: list[str], start, index: int) -> None:
    start.wait()
    store = VoteStore(folder)
    for round_id in rounds:
        store.vote(round_id, random.Random(index).choice("ABC"), f"voter-{index}")


def test_32_processes_voting_at_once_lose_no_vote(tmp_path):
    """Separate processes, each with its own connections, all writing at the same moment."""
    store = VoteStore(tmp_path)
    sets = [store.add_set(clip_set()) for _ in range(3)]
    rounds = {i: [store.new_round(s, f"voter-{i}").id for s in sets] for i in range(VOTERS)}
    context = multiprocessing.get_context("fork")
    start = context.Barrier(VOTERS)
    workers = [context.Process(target=_vote_in_a_process, args=(str(tmp_path), rounds[i], start, i))
               for i in range(VOTERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0] * VOTERS
    assert store.total() == VOTERS * len(sets)


# -- the app ----------------------------------------------------------------------------------------
def test_the_contract_of_the_listening_endpoints(app_module, closed_url, tmp_path, monkeypatch):
    monkeypatch.setenv(VOTES_ENV, str(tmp_path))
    with launched(app_module, closed_url) as url:
        client = Client(url, verbose=False)
        api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        with pytest.raises(AppError, match=f"Could not make a listening round: The inference server at {closed_url}"):
            client.predict(api_name="/listen_round")
        unknown = client.predict("nope", "A", api_name="/vote")
        results = client.predict(api_name="/listen_results")
    assert [p["parameter_name"] for p in api["/listen_round"]["parameters"]] == []
    assert [r["label"] for r in api["/listen_round"]["returns"]] == ["Round", "Clip A", "Clip B", "Clip C"]
    assert [p["parameter_name"] for p in api["/vote"]["parameters"]] == ["round_id", "choice"]
    assert [p["parameter_name"] for p in api["/listen_results"]["parameters"]] == []
    assert unknown.startswith("Not counted: unknown round 'nope'")
    assert results["total"] == 0 and results["arms"] == {}
    assert load_app_module("app.sections.listen").NEEDS == ("tune-generator", "synthesizer", "tune-critic")


class AppProcess:
    """``python -m app`` in a process of its own, so that it can be killed with SIGKILL."""

    def __init__(self, server_url: str, votes: Path, log: Path):
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = open(log, "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "--port", self.url.rsplit(":", 1)[1], "--server-url", server_url],
            cwd=paths.REPO, env={**os.environ, VOTES_ENV: str(votes)}, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if requests.get(self.url, timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.kill()
        raise RuntimeError(f"the app did not answer at {self.url}: {log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)
        self.log.close()


@pytest.fixture()
def app_process(ui_server, tmp_path):
    """The app in a process of its own on ``tmp_path / "votes"``, killed at the end if the test did not."""
    app = AppProcess(ui_server.http_url, tmp_path / "votes", tmp_path / "app.log")
    yield app
    app.kill()


PATIENT = {"timeout": 300}
"""httpx settings of the test's clients: 32 at once on two cores wait their turn, they do not give up."""


def _listen_and_vote(client: Client, index: int) -> tuple[str, str]:
    round_id, *clips = client.predict(api_name="/listen_round")
    choice = random.Random(index).choice(["A", "B", "C"][: sum(bool(c) for c in clips)] + ["can't tell"])
    return round_id, client.predict(round_id, choice, api_name="/vote")


@pytest.mark.server
@pytest.mark.slow
def test_no_vote_is_lost_to_32_voters_at_once_nor_to_sigkill(app_module, app_process, ui_server, tmp_path,
                                                             monkeypatch):
    """32 listeners at once through the real app, which is then killed with SIGKILL right after the
    last answer: every vote is in the store, and a round served before the kill still takes its vote
    in an app started afterwards on the same folder."""
    with ThreadPoolExecutor(VOTERS) as pool:
        clients = list(pool.map(lambda _: Client(app_process.url, verbose=False, download_files=False,
                                                 httpx_kwargs=PATIENT), range(VOTERS + 1)))
        answers = list(pool.map(_listen_and_vote, clients[:VOTERS], range(VOTERS)))
    late_round = clients[-1].predict(api_name="/listen_round")[0]
    app_process.kill()
    store = VoteStore(tmp_path / "votes")
    counted = store.total()

    monkeypatch.setenv(VOTES_ENV, str(tmp_path / "votes"))
    with launched(app_module, ui_server.http_url) as url:
        client = Client(url, verbose=False)
        reveal = client.predict(late_round, "A", api_name="/vote")
        after = client.predict(api_name="/listen_results")
    rows = list(csv.DictReader(open(store.export_csv(tmp_path / "votes.csv"), encoding="utf-8")))
    assert all(text.startswith("Counted") for _, text in answers), answers
    assert len({round_id for round_id, _ in answers}) == VOTERS
    assert counted == VOTERS
    assert reveal.startswith("Counted"), reveal
    assert after["total"] == VOTERS + 1 and len(rows) == VOTERS + 1 and after["listeners"] == VOTERS + 1
    assert set(after["arms"]) == {"tune-generator-v1", "tune-generator-v2"}
    assert {rows[0][f"clip_{letter}"] for letter in "ABC"} == set(ARMS)


@pytest.mark.server
def test_a_seldon_endpoint_s_arms_are_its_generator_models(ui_gateway):
    """Talking Seldon, the arms are the generator Models (narrowed to experiment candidates when the
    gateway lists experiments), and each clip is credited to the model that answered."""
    with MusicClient(ui_gateway.http_url, seldon=True) as client:
        arms = discover_arms(client)
        candidates = experiment_candidates(client)
        made = make_clip_set(client, arms, random.Random(2))
    assert [arm.name for arm in arms] == ["tune-generator-v1", "tune-generator-v2"]
    assert [arm.version for arm in arms] == ["v1", "v2"]
    assert not candidates or {"tune-generator-v1", "tune-generator-v2"} <= set(candidates), candidates
    assert sorted(clip.arm for clip in made.clips) == sorted(ARMS)
    assert all((clip.critic is None) == (clip.arm == "real") for clip in made.clips)
    assert len({soundfile.info(io.BytesIO(clip.wav)).frames for clip in made.clips}) == 1  # one length


PANEL = "document.getElementById('section-listen')"


@pytest.mark.server
@pytest.mark.browser
@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (apt-get install chromium)")
def test_a_listener_plays_a_round_and_votes_in_a_browser(app_module, ui_server, tmp_path, monkeypatch):
    votes = tmp_path / "votes"
    monkeypatch.setenv(VOTES_ENV, str(votes))
    with launched(app_module, ui_server.http_url) as url:
        with Browser(tmp_path / "profile") as browser:
            browser.open(url)
            browser.wait_for_text("is running", timeout=60)
            browser.select_tab("Listen")
            browser.click("New round", within=PANEL)
            wavs = browser.wait_for(
                f"(l => l.length === 3 && l)([...new Set(Array.from({PANEL}.querySelectorAll('[src],[href]'))"
                ".map(e => e.getAttribute('src') || e.getAttribute('href'))"
                ".filter(u => u && u.includes('file=') && u.endsWith('.wav')))])", "three clips", timeout=120)
            seconds = [browser.evaluate(f"fetch({wav!r}).then(r => r.arrayBuffer()).then(b => new OfflineAudioContext("
                                        "1, 1, 22050).decodeAudioData(b)).then(a => a.duration)", timeout=60)
                       for wav in wavs]
            browser.click("B", within=PANEL, selector="label")
            browser.click("Vote", within=PANEL)
            answer = browser.wait_for("(t => t.startsWith('Counted') && t)(document.getElementById('listen-answer')"
                                      ".innerText.trim())", "the answer", timeout=60)
            table = browser.wait_for("(t => t.includes('1 votes') && t)(document.getElementById('listen-results')"
                                     ".innerText)", "the statistics", timeout=60)
            cookie = browser.evaluate("document.cookie")
            browser.click("Export the votes (CSV)", within=PANEL)
            exported = browser.wait_for(
                f"Array.from({PANEL}.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))"
                ".find(u => u.endsWith('votes.csv'))", "the CSV file", timeout=60)
            csv_text = browser.evaluate(f"fetch({exported!r}).then(r => r.text())", timeout=30)
    assert answer.startswith("Counted: you picked B"), answer
    assert "the real tune" in answer and "tune-generator-v1" in answer and "tune-generator-v2" in answer
    assert len(set(seconds)) == 1 and seconds[0] > 3, seconds  # the same length, every clip
    assert "tune-generator-v1" in table and "The real tune was picked" in table
    assert "tunesmith_listener=" in cookie
    assert csv_text.splitlines()[0].startswith("vote,time,listener,round,clip_set,clip_A,clip_B,clip_C,choice")
    assert len(csv_text.splitlines()) == 2 and ",B," in csv_text.splitlines()[1]
    listener = VoteStore(votes).rows()[0]["listener"]
    from tunesmith.listening.votes import listener_id

    assert listener == listener_id("browser:" + cookie.split("tunesmith_listener=")[1].split(";")[0])
