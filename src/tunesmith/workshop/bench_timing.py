"""How every ``make bench`` table times calls: side by side, in turns, summed up by percentiles.

Two ways of serving the same request are compared on one 2-core machine that other programs share.
Timing one way for all its calls and then the other lets a burst of load fall on one row only, so
:func:`timed_in_turns` times seed ``i`` on every path before seed ``i + 1`` on any: the same work,
under the same conditions, for each.
"""

from __future__ import annotations

import time
from typing import Callable


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile of ``values``, by the nearest rank (no interpolation between calls)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def timed_in_turns(calls: dict[str, Callable[[int], object]], n: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each of ``calls`` (each called with a seed), seed by seed in turns.

    Args:
        calls: name -> ``call(seed)``.
        n: timed calls per name, seeds ``0 .. n - 1``.
        warmup: untimed calls per name first, with seeds from 10,000.
    """
    for i in range(warmup):
        for call in calls.values():
            call(10_000 + i)
    out: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(n):
        for name, call in calls.items():
            start = time.perf_counter()
            call(i)
            out[name].append(time.perf_counter() - start)
    return out


def timed(call: Callable[[int], object], n: int, warmup: int = 2) -> list[float]:
    """Seconds per call of ``call(seed)`` alone (see :func:`timed_in_turns`)."""
    return timed_in_turns({"": call}, n, warmup)[""]
