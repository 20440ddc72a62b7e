"""Seldon Experiments served by the gateway: which arm answers, sticky sessions, mirrors, live reload.

An Experiment (``operator/apis/mlops/v1alpha1/experiment_types.go``) splits the traffic of one
route between ``candidates`` (Models, or Pipelines with ``resourceType: pipeline``) by ``weight``
(share = weight / sum of weights), and may copy a ``percent`` of it to a ``mirror`` whose answer
nobody sees. Seldon builds envoy routes for it (``scheduler/pkg/envoy/xdscache/resource.go``,
``envoy/processor/incremental.go``); the gateway makes the same choices per request:

* **Which requests.** ``seldon-model: <experiment>.experiment`` always; and when ``default`` names
  a candidate, every request for that Model or Pipeline (its own header or path): Seldon rewrites
  the default's route.
* **Which arm.** A weighted random choice among the candidates. The answer's ``x-seldon-route``
  says which (``:<model>_1:`` for a model, ``:<pipeline>.pipeline:`` for a pipeline), as envoy's
  ``ResponseHeadersToAdd`` of the chosen cluster does.
* **Sticky sessions.** A request that sends ``x-seldon-route`` back goes to the first candidate
  whose entry the header contains (envoy's ``_experiment`` routes: a *contains* match), whatever
  the weights, even 0; such a request is not mirrored (those routes carry no mirror policy). A
  header that names no candidate matches no envoy route: 404, as on a cluster.
* **Mirror.** ``percent`` of the non-sticky requests are also sent to the mirror, with the same
  request id. The caller never waits for it (envoy's ``RequestMirrorPolicies``): the call starts
  once the caller's answer is ready, so on one machine it does not compete with the call it
  shadows, and at most :data:`MIRRORS_IN_FLIGHT` run at once (more are dropped and counted:
  shadow traffic must never queue up behind itself). Its answer and errors go to the metrics and
  the request log, never to the caller.
* **Live changes.** Editing an Experiment's YAML is picked up without a restart (Seldon applies a
  changed resource as ``kubectl apply`` hands it over): the gateway checks its manifests folder
  every :data:`WATCH_INTERVAL_S` and applies a change once the files have stopped changing, and
  ``POST /v2/experiments/reload`` (``tunesmith experiments reload``) applies it at once and says
  what it did. A request uses the table it started with, so none fails during the change. Only
  Experiments change live: a changed Model, Pipeline or Server needs a restart, and the reload
  says so and keeps serving what it had.

What the gateway refuses (it would need Seldon's mesh, or would answer nothing):

* ``default`` naming a Model that a pipeline step calls: on a cluster the step's call goes
  through envoy and is split too; the executor here calls its models directly.
* no candidates (a mirror alone), or weights that add up to 0: no arm to answer.
* a candidate or mirror that no manifest defines (Seldon waits for it: ``candidatesReady: false``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tunesmith.gateway import manifests as seldon
from tunesmith.gateway import routing
from tunesmith.gateway.manifests import Experiment, ManifestError, Manifests

log = logging.getLogger("tunesmith.gateway")

MIRRORS_IN_FLIGHT = 4
"""The most mirror calls running at once; a mirror due while that many run is dropped (counted)."""
WATCH_INTERVAL_S = 0.5
"""How often the manifests folder is checked for changes; a change is applied once two checks agree."""


class NoRoute(LookupError):
    """A request no route serves: an unknown experiment, or a sticky header naming no candidate (404)."""


class ReloadRefused(ValueError):
    """A reload that would change more than Experiments; the gateway keeps what it serves."""


@dataclass(frozen=True)
class Route:
    """Where one request goes.

    Attributes:
        target: the Model or Pipeline that answers.
        experiment: the Experiment that chose it, if any.
        mirror: the Model or Pipeline that also gets the request (this request was picked for it).
        sticky: the arm was chosen by the caller's ``x-seldon-route``.
    """

    target: routing.Target
    experiment: str | None = None
    mirror: routing.Target | None = None
    sticky: bool = False

    @property
    def arm(self) -> str | None:
        return self.target.name if self.experiment else None


def route_entry(target: routing.Target) -> str:
    """The ``x-seldon-route`` entry that names an arm: ``:<model>_1:`` or ``:<pipeline>.pipeline:``."""
    return routing.pipeline_route(target.name) if target.kind == "pipeline" else routing.model_route(target.name)


class Experiments:
    """The Experiments being served, and the choice of arm for each request.

    Args:
        manifests: the loaded manifests (their ``experiments``).
        rng: the random source of the splits (tests seed it).
    """

    def __init__(self, manifests: Manifests, rng: random.Random | None = None):
        self.rng = rng or random.Random()
        self.manifests = manifests
        self._table = _table(manifests)

    @property
    def experiments(self) -> dict[str, Experiment]:
        return self.manifests.experiments

    def route(self, target: routing.Target, sticky: str | None = None) -> Route:
        """The arm (and mirror) for a request addressed to ``target``, with the caller's ``x-seldon-route``."""
        table = self._table  # one table per request: a reload swaps the reference, never edits it
        if target.kind == "experiment":
            experiment = table.by_name.get(target.name)
            if experiment is None:
                known = ", ".join(sorted(table.by_name)) or "none"
                raise NoRoute(f"experiment {target.name} not found; the manifests define: {known}")
        else:
            experiment = table.by_default.get((target.kind, target.name))
            if experiment is None:
                return Route(target)
        kind = experiment.resource_type
        if sticky is not None:
            for candidate in experiment.candidates:
                arm = routing.Target(candidate.name, kind)
                if route_entry(arm) in sticky:
                    return Route(arm, experiment.name, sticky=True)
            entries = ", ".join(route_entry(routing.Target(c.name, kind)) for c in experiment.candidates)
            raise NoRoute(
                f"experiment {experiment.name}: x-seldon-route {sticky!r} names none of its candidates ({entries}); "
                f"send the header only with a route this experiment gave (or none, to be routed by weight)"
            )
        chosen = self.rng.choices(experiment.candidates, weights=[c.weight for c in experiment.candidates])[0]
        mirror = None
        if experiment.mirror is not None and self.rng.random() * 100 < experiment.mirror.percent:
            mirror = routing.Target(experiment.mirror.name, kind)
        return Route(routing.Target(chosen.name, kind), experiment.name, mirror)

    def describe(self) -> list[dict]:
        """Every experiment with its arms' shares, for ``GET /v2/experiments`` (``seldon experiment status``)."""
        out = []
        for experiment in sorted(self.experiments.values(), key=lambda e: e.name):
            total = sum(c.weight for c in experiment.candidates)
            out.append({
                "name": experiment.name,
                "resourceType": experiment.resource_type,
                "default": experiment.default,
                "candidates": [{"name": c.name, "weight": c.weight, "share": c.weight / total}
                               for c in experiment.candidates],
                "mirror": dataclasses.asdict(experiment.mirror) if experiment.mirror else None,
                "active": True,
            })
        return out

    # -- live changes -----------------------------------------------------------------------------
    def reload(self) -> list[str]:
        """Read the manifests folder again and serve its Experiments; what changed, one line each.

        Raises:
            ManifestError: a manifest is invalid (nothing changes).
            ReloadRefused: a Model, Pipeline, Server or ServerConfig changed (nothing changes).
        """
        fresh = seldon.load(self.manifests.folder)
        changed = [kind for kind, attribute in (("Model", "models"), ("Pipeline", "pipelines"), ("Server", "servers"),
                                                ("ServerConfig", "server_configs"))
                   if getattr(fresh, attribute) != getattr(self.manifests, attribute)]
        if changed:
            raise ReloadRefused(
                f"{', '.join(changed)} manifests changed: only Experiments change while the gateway runs; "
                f"restart it to serve the others (it keeps serving what it had)"
            )
        before, after = self.experiments, fresh.experiments
        lines = [f"experiment {name} removed" for name in sorted(set(before) - set(after))]
        for name in sorted(after):
            if name not in before:
                lines.append(f"experiment {name} added: {_summary(after[name])}")
            elif after[name] != before[name]:
                lines.append(f"experiment {name} changed: {_summary(after[name])}")
        table = _table(fresh)
        self.manifests = dataclasses.replace(self.manifests, experiments=fresh.experiments)
        self._table = table
        return lines

    async def watch(self, on_change: Callable[[list[str] | Exception], None], interval_s: float = WATCH_INTERVAL_S) -> None:
        """Apply changes to the manifests folder while the gateway runs; ``on_change`` hears each outcome."""
        applied = _fingerprint(self.manifests.folder)
        previous = applied
        while True:
            await asyncio.sleep(interval_s)
            current = await asyncio.to_thread(_fingerprint, self.manifests.folder)
            if current == previous and current != applied:  # settled: an editor has finished writing
                applied = current
                try:
                    on_change(await asyncio.to_thread(self.reload))
                except (ManifestError, ReloadRefused) as exc:
                    on_change(exc)
            previous = current


@dataclass(frozen=True)
class _Table:
    by_name: dict[str, Experiment]
    by_default: dict[tuple[str, str], Experiment]


def _table(manifests: Manifests) -> _Table:
    experiments = manifests.experiments
    return _Table(
        dict(experiments),
        {(e.resource_type, e.default): e for e in experiments.values() if e.default},
    )


def _summary(experiment: Experiment) -> str:
    total = sum(c.weight for c in experiment.candidates) or 1
    arms = ", ".join(f"{c.name} {100 * c.weight / total:g}%" for c in experiment.candidates)
    mirror = f"; mirror {experiment.mirror.name} {experiment.mirror.percent}%" if experiment.mirror else ""
    return arms + mirror


def _fingerprint(folder: Path) -> tuple:
    """Names, sizes and modification times of the folder's manifests (what :func:`manifests.load` reads)."""
    files = []
    for path in sorted(Path(folder).rglob("*")):
        if path.suffix in (".yaml", ".yml") and not any(p.startswith(".") for p in path.relative_to(folder).parts):
            try:
                stat = path.stat()
            except OSError:
                continue
            files.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(files)


# -- tunesmith experiments: list or reload a running gateway's experiments ----------------------------
def main(argv: list[str] | None = None) -> int:
    import httpx

    parser = argparse.ArgumentParser(
        prog="tunesmith experiments",
        description="Show a running gateway's Experiments, or make it apply its manifests' Experiments now "
                    "(it also does so by itself within a second of a change).",
    )
    parser.add_argument("action", nargs="?", choices=["list", "reload"], default="list")
    parser.add_argument("--url", default=None, help="the gateway (default http://$HOST:$HTTP_PORT, 127.0.0.1:8080)")
    args = parser.parse_args(argv)
    url = args.url or f"http://{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('HTTP_PORT', '8080')}"
    try:
        if args.action == "reload":
            reply = httpx.post(f"{url}/v2/experiments/reload", json={}, timeout=30)
        else:
            reply = httpx.get(f"{url}/v2/experiments", timeout=10)
    except httpx.HTTPError as exc:
        print(f"no gateway answers at {url} ({type(exc).__name__}): start one with `make gateway`", file=sys.stderr)
        return 1
    body = reply.json()
    if reply.status_code != 200:
        print(body.get("error", reply.text), file=sys.stderr)
        return 1
    for line in body.get("changes", []):
        print(line)
    if args.action == "reload" and not body.get("changes"):
        print("no change")
    for experiment in body["experiments"]:
        arms = ", ".join(f"{c['name']} {100 * c['share']:g}%" for c in experiment["candidates"])
        mirror = f"; mirror {experiment['mirror']['name']} {experiment['mirror']['percent']}%" if experiment["mirror"] else ""
        print(f"{experiment['name']:24} {experiment['resourceType']:8} {arms}{mirror}")
    return 0

