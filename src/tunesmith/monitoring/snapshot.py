"""The platform's metrics read straight from its ``/metrics`` endpoints, for a live view without Prometheus.

Prometheus keeps history and answers PromQL; a UI on a laptop can do the little it needs by itself:
scrape the gateway (Seldon's families per model, pipeline, step and experiment arm) and MLServer's
metrics port (per model, and the models' own metrics such as ``drift_p_value``), keep the last few
scrapes, and compare two of them. Counters only ever grow, so "per second" and "mean over the last
interval" are differences between scrapes, exactly what ``rate()`` computes in Prometheus.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

import requests
from prometheus_client.parser import text_string_to_metric_families

SERVER_SIDE_ERRORS = ("5", "Internal", "Unavailable", "Unknown", "DeadlineExceeded")
"""``code`` values that are the platform's fault (prefix match): a 400 is the caller's mistake."""

Sample = tuple[str, dict, float]


def scrape(url: str, timeout: float = 5.0) -> list[Sample]:
    """Every sample of one ``/metrics`` endpoint as (name, labels, value); [] if it does not answer."""
    try:
        reply = requests.get(url, timeout=timeout)
        reply.raise_for_status()
    except requests.RequestException:
        return []
    return [(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(reply.text) for s in family.samples]


@dataclass
class Snapshot:
    """The samples of every endpoint at one moment."""

    at: float
    samples: list[Sample] = field(default_factory=list)

    @classmethod
    def take(cls, urls: Iterable[str]) -> Snapshot:
        samples: list[Sample] = []
        for url in urls:
            samples += scrape(url)
        return cls(time.time(), samples)

    def total(self, name: str, by: tuple[str, ...], **where: str) -> dict[tuple[str, ...], float]:
        """Sum of the samples called ``name`` whose labels include ``where``, grouped by the labels ``by``."""
        sums: dict[tuple[str, ...], float] = defaultdict(float)
        for sample_name, labels, value in self.samples:
            if sample_name == name and all(labels.get(k) == v for k, v in where.items()):
                sums[tuple(labels.get(k, "") for k in by)] += value
        return dict(sums)

    def errors(self, name: str, by: tuple[str, ...]) -> dict[tuple[str, ...], float]:
        """Like :meth:`total`, counting only samples whose ``code`` is a server-side error or a refusal
        (anything but ``200``/``OK``), grouped by ``by`` plus whether it was the server's fault."""
        sums: dict[tuple[str, ...], float] = defaultdict(float)
        for sample_name, labels, value in self.samples:
            code = labels.get("code", "")
            if sample_name == name and code not in ("200", "OK", ""):
                kind = "server error" if code.startswith(SERVER_SIDE_ERRORS) else "refused"
                sums[tuple(labels.get(k, "") for k in by) + (kind,)] += value
        return dict(sums)


def per_second(before: Snapshot, after: Snapshot, name: str, by: tuple[str, ...], **where: str) -> dict:
    """The growth of a counter per second between two snapshots, per group (``rate()``)."""
    seconds = max(after.at - before.at, 1e-9)
    old = before.total(name, by, **where)
    return {key: max(value - old.get(key, 0.0), 0.0) / seconds for key, value in after.total(name, by, **where).items()}


def mean_between(before: Snapshot | None, after: Snapshot, sum_name: str, count_name: str,
                 by: tuple[str, ...]) -> dict[tuple[str, ...], tuple[float, float]]:
    """(mean, count) of the observations between two snapshots, per group: a histogram's or a summary's
    ``_sum`` over its ``_count``. With no ``before``, everything since the servers started."""
    sums, counts = after.total(sum_name, by), after.total(count_name, by)
    if before is not None:
        old_sums, old_counts = before.total(sum_name, by), before.total(count_name, by)
        sums = {k: v - old_sums.get(k, 0.0) for k, v in sums.items()}
        counts = {k: v - old_counts.get(k, 0.0) for k, v in counts.items()}
    return {k: (sums[k] / n, n) for k, n in counts.items() if n > 0}
