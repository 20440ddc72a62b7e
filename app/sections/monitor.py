"""The Monitor section: the platform watched live, from the same metrics Prometheus would scrape.

Every few seconds it reads the gateway's ``/metrics`` (Seldon's families per model, pipeline step and
experiment arm) and MLServer's metrics port (per model, and the drift detector's ``drift_p_value``),
compares the reading with earlier ones (:mod:`tunesmith.monitoring.snapshot`), and draws: requests
and errors per arm, requests per second, mean latency per model and pipeline step, the drift
detector's p-value, the quality of each arm's tunes from the request log
(:mod:`tunesmith.monitoring.quality`) and the listening test's votes so far.

Where the metrics are: the gateway's at ``<server>/metrics`` (a Seldon endpoint), MLServer's at
``$TUNESMITH_METRICS_URL``, else port ``$METRICS_PORT`` (8082) of the server's host.
"""

from __future__ import annotations

import functools
import os
import time
from urllib.parse import urlsplit

import gradio as gr
import pandas as pd

from app.common import AppContext
from tunesmith.monitoring import drift
from tunesmith.monitoring.drift import THRESHOLD
from tunesmith.monitoring.snapshot import Snapshot, mean_between, per_second
from tunesmith.serving.client import METRICS_URL_ENV

LABEL = "Monitor"
NEEDS = ("drift-detector",)
"""Offered once the drift detector of notebook 3.7 is loaded: the last thing stage 3 adds."""
REFRESH_S = 5.0
HISTORY = 60
"""Readings kept per browser session for the time plots: five minutes at :data:`REFRESH_S`."""
VOTES = {"arm": "str", "picked %": "float", "votes": "float"}
MEASURE_NAMES = {"bars_right": "bars right", "novel": "new", "critic_score": "critic"}
DRIFT_MODEL = "drift-detector"
PROMPT_MONITOR = "prompt-monitor"
"""The pipeline of notebook 3.7 that sends every prompt to the drift detector as a side step."""
TRAFFIC = ("normal", "metal", "speech", "noise")
P_VALUE = "p-value"
THRESHOLD_SERIES = f"threshold {THRESHOLD:g}"


def frame(rows: list[dict], columns: dict[str, str]) -> pd.DataFrame:
    """A table with typed columns even when empty: a plot reads a column's type from its first value, and an
    untyped empty column would make later numbers categories."""
    return pd.DataFrame(rows, columns=list(columns)).astype(columns)


def metrics_urls(server_url: str, seldon: bool) -> list[str]:
    """The ``/metrics`` endpoints to read: the gateway's (on a Seldon endpoint) and MLServer's."""
    parts = urlsplit(server_url)
    mlserver = os.environ.get(METRICS_URL_ENV) or f"{parts.scheme}://{parts.hostname}:{os.environ.get('METRICS_PORT', '8082')}"
    mlserver = mlserver.rstrip("/")
    urls = [f"{server_url.rstrip('/')}/metrics"] if seldon else []
    return urls + [mlserver if mlserver.endswith("/metrics") else f"{mlserver}/metrics"]


@functools.lru_cache(maxsize=1)
def _quality():
    from tunesmith.monitoring.quality import QualityByArm

    return QualityByArm()


def votes_so_far() -> pd.DataFrame:
    """Each arm's pick rate in the listening test (the real tune's too), from the stored votes."""
    try:
        from tunesmith.listening.stats import arms_of, pick_rate
        from tunesmith.listening.votes import VoteStore, default_folder

        judgements = VoteStore(default_folder()).judgements()
    except Exception:  # noqa: BLE001 - no votes store yet, or none readable: nothing to show
        return frame([], VOTES)
    rows = []
    for arm in arms_of(judgements):
        rate = pick_rate(judgements, arm)
        if rate["heard"]:
            rows.append({"arm": arm, "picked %": round(100 * rate["rate"], 1), "votes": rate["heard"]})
    return frame(rows, VOTES)


def readings(history: list[Snapshot]) -> dict[str, pd.DataFrame]:
    """The tables behind the plots, from the readings so far (oldest first)."""
    now = history[-1]
    start = history[0].at

    # requests and errors per experiment arm; per model while no experiment has run
    arm_totals = now.total("seldon_experiment_infer_total", ("experiment", "arm", "role"))
    if arm_totals:
        errors = now.errors("seldon_experiment_infer_total", ("experiment", "arm", "role"))
        name = lambda key: f"{key[0]}: {key[1]}" + (" (mirror)" if key[2] == "mirror" else "")  # noqa: E731
    else:
        arm_totals = now.total("seldon_model_infer_total", ("model",))
        errors = now.errors("seldon_model_infer_total", ("model",))
        name = lambda key: key[0]  # noqa: E731
    rows = []
    for key, count in sorted(arm_totals.items()):
        failed = {kind: errors.get(key + (kind,), 0.0) for kind in ("refused", "server error")}
        rows.append({"arm": name(key), "result": "answered", "requests": count - sum(failed.values())})
        rows += [{"arm": name(key), "result": kind, "requests": n} for kind, n in failed.items() if n]
    requests_per_arm = frame(rows, {"arm": "str", "result": "str", "requests": "float"})

    rate_rows = []
    for before, after in zip(history, history[1:]):
        for (model,), value in per_second(before, after, "seldon_model_infer_total", ("model",)).items():
            rate_rows.append({"seconds": round(after.at - start, 1), "model": model, "requests/s": round(value, 3)})
    if not rate_rows:  # a plain MLServer: its own counter
        for before, after in zip(history, history[1:]):
            for (model,), value in per_second(before, after, "model_infer_request_success_total", ("model",)).items():
                rate_rows.append({"seconds": round(after.at - start, 1), "model": model, "requests/s": round(value, 3)})
    rates = frame(rate_rows, {"seconds": "float", "model": "str", "requests/s": "float"})

    latency_rows = [{"where": f"model {model}", "ms": round(1000 * mean, 1), "calls": n}
                    for (model,), (mean, n) in mean_between(None, now, "model_infer_request_duration_sum",
                                                           "model_infer_request_duration_count", ("model",)).items()]
    steps = mean_between(None, now, "seldon_pipeline_step_infer_seconds_total", "seldon_pipeline_step_infer_total",
                         ("pipeline", "step"))
    latency_rows += [{"where": f"{pipeline} / {step}", "ms": round(1000 * mean, 1), "calls": n}
                     for (pipeline, step), (mean, n) in steps.items()]
    latency = frame(latency_rows, {"where": "str", "ms": "float", "calls": "float"})

    drift_rows = []
    for before, after in zip(history, history[1:]):
        for (model,), (mean, n) in mean_between(before, after, "drift_p_value_sum", "drift_p_value_count",
                                                ("model_name",)).items():
            series = P_VALUE if model == DRIFT_MODEL else f"{P_VALUE} ({model})"
            drift_rows.append({"seconds": round(after.at - start, 1), "series": series, "p": round(mean, 4)})
    if drift_rows:
        ends = (0.0, round(now.at - start, 1))
        drift_rows += [{"seconds": t, "series": THRESHOLD_SERIES, "p": THRESHOLD} for t in ends]
    drift_frame = frame(drift_rows, {"seconds": "float", "series": "str", "p": "float"})
    return {"requests": requests_per_arm, "rates": rates, "latency": latency, "drift": drift_frame}


def quality_table() -> pd.DataFrame:
    """Mean bars right, share of new tunes and critic score per arm, from the gateway's request log."""
    rows = []
    try:
        arms = _quality().update()
    except Exception:  # noqa: BLE001 - no log yet, or a log of another schema: nothing to show
        arms = []
    for arm in arms:
        label = arm.arm if arm.experiment == "-" else f"{arm.experiment}: {arm.arm}"
        rows += [{"arm": label, "measure": measure, "bar": f"{label} · {MEASURE_NAMES[measure]}",
                  "mean": round(getattr(arm, measure), 3), "tunes": arm.tunes} for measure in MEASURE_NAMES]
    return frame(rows, {"arm": "str", "measure": "str", "bar": "str", "mean": "float", "tunes": "float"})


def drift_line(now: Snapshot) -> str:
    tests = now.total("drift_p_value_count", ("model_name",))
    alarms = now.total("drift_alarm_sum", ("model_name",))
    if not tests:
        return (f"Drift: no test yet. `{DRIFT_MODEL}` tests the last 20 prompts once 20 have arrived "
                "(the `prompt-monitor` pipeline sends it every prompt).")
    return "Drift: " + "; ".join(f"`{model}` ran {tests[(model,)]:.0f} tests, {alarms.get((model,), 0):.0f} alarmed"
                                 for (model,) in tests) + f" (alarm when p < {THRESHOLD:g})."


def refresh(server_url: str, seldon: bool, history: list[Snapshot] | None):
    """One reading: the new history and every plot's table."""
    history = list(history or [])[-(HISTORY - 1):] + [Snapshot.take(metrics_urls(server_url, seldon))]
    if not history[-1].samples:
        message = f"No metrics at {', '.join(metrics_urls(server_url, seldon))}: is the platform running (`make up`)?"
    else:
        message = drift_line(history[-1]) + f" Reading every {REFRESH_S:.0f} s at {time.strftime('%H:%M:%S')}."
    tables = readings(history)
    votes = votes_so_far()
    if len(votes):
        message += f" Listening test: {int(votes['votes'].sum())} judgements so far."
    return history, message, tables["requests"], tables["rates"], tables["latency"], tables["drift"], quality_table(), votes


def send_prompts(server_url: str, kind: str, n: int = 10, seldon: bool = True) -> str:
    """Send ``n`` prompts of one kind (``normal``: written like the reference's; ``metal``, ``speech``,
    ``noise``: off-distribution) through the ``prompt-monitor`` pipeline, so the drift plot has
    something to show; returns what happened, in one line."""
    from tunesmith.serving.client import ClientError, MusicClient

    prompts = (drift.reference_prompts(n, split="test", seed=int(time.time()) % 1000) if kind == "normal"
               else drift.off_distribution(kind, n, seed=int(time.time()) % 1000))
    client = MusicClient(server_url, seldon=seldon)
    try:
        for prompt in prompts:
            client.pipeline(PROMPT_MONITOR, prompt=[prompt])
    except ClientError as exc:
        return f"The `{PROMPT_MONITOR}` pipeline did not answer: {exc}"
    finally:
        client.close()
    return f"Sent {len(prompts)} {kind} prompts through `{PROMPT_MONITOR}`; the next readings show the detector's verdict."


def build(ctx: AppContext) -> None:
    gr.Markdown(
        "The platform as an operator sees it, read from the same `/metrics` endpoints Prometheus scrapes "
        "(`monitoring/` has the scrape config, alerts and a Grafana dashboard for a cluster).",
        elem_classes=["tab-intro"],
    )
    history = gr.State([])
    message = gr.Markdown(elem_classes=["status-line"])
    with gr.Row():
        kind = gr.Radio(list(TRAFFIC), value="normal", label="Try the drift detector: prompts to send", scale=3)
        send = gr.Button("Send 10 prompts", scale=1)
    sent = gr.Markdown(elem_classes=["status-line"])
    with gr.Row():
        requests_plot = gr.BarPlot(x="arm", y="requests", color="result", label="Requests and errors per arm",
                                   color_map={"answered": "#16a34a", "refused": "#f59e0b", "server error": "#dc2626"},
                                   x_title="", y_title="requests since start", height=280)
        rates_plot = gr.LinePlot(x="seconds", y="requests/s", color="model", label="Requests per second, by model",
                                 x_title="seconds since the page opened", height=280)
    with gr.Row():
        latency_plot = gr.BarPlot(x="where", y="ms", label="Mean latency: models in MLServer, pipeline steps",
                                  x_title="", y_title="ms per call", height=280, sort="-y", x_label_angle=-30)
        drift_plot = gr.LinePlot(x="seconds", y="p", color="series", label="Prompt drift: mean p-value per reading",
                                 x_title="seconds since the page opened", y_title="p-value", y_lim=[0, 1], height=280,
                                 color_map={P_VALUE: "#2563eb", THRESHOLD_SERIES: "#dc2626"})
    with gr.Row():
        quality_plot = gr.BarPlot(x="bar", y="mean", color="measure", label="Quality per arm (request log, tune critic)",
                                  x_title="", y_title="mean (0-1)", y_lim=[0, 1], height=280, sort="x",
                                  x_label_angle=-30)
        votes_plot = gr.BarPlot(x="arm", y="picked %", label="Listening test: how often each was picked as the real tune",
                                x_title="", y_title="% of votes where it was heard", height=280)
    outputs = [history, message, requests_plot, rates_plot, latency_plot, drift_plot, quality_plot, votes_plot]

    def update(state):
        return refresh(ctx.server_url, ctx.seldon, state)

    send.click(lambda chosen: send_prompts(ctx.server_url, chosen, seldon=ctx.seldon), kind, sent,
               api_visibility="private", concurrency_limit=1)
    timer = gr.Timer(REFRESH_S)
    timer.tick(update, inputs=[history], outputs=outputs, api_visibility="private", show_progress="hidden")
    ctx.demo.load(update, inputs=[history], outputs=outputs, api_visibility="private", show_progress="hidden")
