"""Quality of the tunes each experiment arm (or each model and pipeline) gave its callers, as they are logged.

Error rates and latency say whether the platform answers; they say nothing about *what* it answers.
For every tune in the gateway's request log (:mod:`tunesmith.gateway.requestlog`: each request with
its experiment, arm and outputs) the tune critic of stage 3 (:mod:`tunesmith.generator.critic`)
gives the three numbers a musician would check first:

* ``bars_right``: the share of bars that fill the tune's meter;
* ``novel``: 1 if the tune shares no run of :data:`~tunesmith.generator.critic.RUN_LENGTH` notes
  with any corpus tune (it is not a copy), else 0;
* ``critic_score``: the critic's total (0..1: bars, header, key fit and novelty together).

The tune is judged against its own header (its ``M:``, ``K:``, ``R:``), since the log keeps what the
caller sent, which may be a prompt rather than a header. Each logged tune is scored once; a tune is
a few hundred notes, so scoring takes milliseconds once the critic's corpus index is built (~2 s).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MEASURES = ("bars_right", "novel", "critic_score")
HEADER_FIELDS = ("X:", "M:", "L:", "R:", "K:")


def own_header(abc: str) -> str:
    """The header lines of a tune that the critic reads (``X:`` to ``K:``)."""
    lines = [line for line in abc.splitlines() if line.startswith(HEADER_FIELDS)]
    return "\n".join(lines) if any(line.startswith("K:") for line in lines) else "X:1\nM:4/4\nL:1/8\nK:C"


@dataclass
class ArmQuality:
    """The mean of each measure over the ``tunes`` an arm gave."""

    experiment: str
    arm: str
    tunes: int
    bars_right: float
    novel: float
    critic_score: float


class QualityByArm:
    """Scores every tune of a request log, once, and averages them per (experiment, arm).

    Requests outside any experiment are grouped under the experiment ``"-"`` and their target's
    name, so a plain model or pipeline has its row too. Mirror calls count for their mirror arm.

    Args:
        log_path: the gateway's request log (default :func:`tunesmith.gateway.requestlog.default_path`).
        critic: a :class:`~tunesmith.generator.critic.Critic`; built from the corpus on first use.
    """

    def __init__(self, log_path: str | Path | None = None, critic=None):
        from tunesmith.gateway.requestlog import default_path

        self.log_path = Path(log_path) if log_path is not None else default_path()
        self._critic = critic
        self._scores: dict[tuple, tuple[str, str, list[float]]] = {}
        self._seen = -1  # records in the log when it was last read
        self._arms: list[ArmQuality] = []
        self._lock = threading.Lock()

    @property
    def critic(self):
        if self._critic is None:
            from tunesmith.generator.critic import Critic

            self._critic = Critic.from_corpus()
        return self._critic

    def score(self, abc: str) -> list[float]:
        """``[bars_right, novel, critic_score]`` of one tune."""
        from tunesmith.generator.critic import RUN_LENGTH

        score = self.critic.score(own_header(abc), [abc])[0]
        return [float(score.bars), float(score.longest_run < RUN_LENGTH), float(score.total)]

    def update(self) -> list[ArmQuality]:
        """Score the tunes logged since the last call, and return every arm's means (by experiment, arm)."""
        if not self.log_path.exists():
            return []
        from tunesmith.gateway.requestlog import RequestLog

        log = RequestLog(self.log_path)
        try:
            count = len(log)  # a cheap COUNT(*): the records are read again only when some were added
            if count == self._seen:
                return self._arms
            records = log.records()
        finally:
            log.close()
        with self._lock:
            for record in records:
                tunes = record.outputs.get("abc") if record.status == 200 else None
                tunes = [tunes] if isinstance(tunes, str) else tunes
                if not isinstance(tunes, list):
                    continue
                for i, abc in enumerate(tunes):
                    key = (record.ts, record.request_id, record.target, record.mirror, i)
                    if key not in self._scores and isinstance(abc, str) and abc.strip():
                        self._scores[key] = (record.experiment or "-", record.arm or record.target, self.score(abc))
            groups: dict[tuple[str, str], list[list[float]]] = {}
            for experiment, arm, values in self._scores.values():
                groups.setdefault((experiment, arm), []).append(values)
            self._seen = count
            self._arms = [ArmQuality(experiment, arm, len(rows), *np.mean(rows, axis=0).tolist())
                          for (experiment, arm), rows in sorted(groups.items())]
        return self._arms


# --- as Prometheus metrics ---------------------------------------------------------------------------

QUALITY_METRIC = "tunesmith_tune_quality"
TUNES_METRIC = "tunesmith_tunes_scored"
REFRESH_S = 5.0


class QualityCollector:
    """A Prometheus collector of :class:`QualityByArm`: ``tunesmith_tune_quality{experiment, arm, measure}``
    (the mean of each measure) and ``tunesmith_tunes_scored_total{experiment, arm}``.

    In Seldon an arm's outputs are on its Kafka topic and a consumer beside the cluster would score
    them; here the consumer reads the gateway's request log. A thread scores new tunes every
    ``refresh_s`` seconds, so a scrape never waits for the critic.
    """

    def __init__(self, quality: QualityByArm, refresh_s: float = REFRESH_S):
        self.quality = quality
        self.refresh_s = refresh_s
        self.arms: list[ArmQuality] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tune-quality", daemon=True)

    def start(self) -> QualityCollector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        import logging

        while not self._stop.is_set():
            try:
                self.arms = self.quality.update()
            except Exception:  # noqa: BLE001 - a log being rotated or half-written: try again next time
                logging.getLogger(__name__).exception("tune quality: the request log could not be read")
            self._stop.wait(self.refresh_s)

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        quality = GaugeMetricFamily(QUALITY_METRIC, "Mean quality of the tunes each arm answered (tune critic: "
                                    "bars_right, novel, critic_score; 0..1)", labels=["experiment", "arm", "measure"])
        tunes = CounterMetricFamily(TUNES_METRIC, "Tunes scored per arm", labels=["experiment", "arm"])
        for arm in self.arms:
            for measure in MEASURES:
                quality.add_metric([arm.experiment, arm.arm, measure], getattr(arm, measure))
            tunes.add_metric([arm.experiment, arm.arm], arm.tunes)
        yield quality
        yield tunes


def serve(port: int, log_path: str | Path | None = None, host: str = "127.0.0.1") -> QualityCollector:
    """Serve the quality metrics at ``http://host:port/metrics`` from a thread; returns the collector."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    collector = QualityCollector(QualityByArm(log_path)).start()
    registry.register(collector)
    start_http_server(port, addr=host, registry=registry)
    return collector
