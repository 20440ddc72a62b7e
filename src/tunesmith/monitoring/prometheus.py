"""A real Prometheus on the platform: the project's scrape config pointed at running servers, and queries.

The files live in ``monitoring/`` at the top of the repository: ``prometheus.yml`` (scrape config for
the workshop's default ports: the gateway, MLServer and the tune-quality exporter of
:mod:`tunesmith.monitoring.quality`), ``alerts.yml`` (alerting rules, unit-tested by ``alerts-test.yml``)
and ``grafana-dashboard.json`` (the dashboard for a cluster's Grafana). :class:`Prometheus` runs the
``prometheus`` binary (Debian's package) on that config, with only the targets rewritten to the
ports a platform actually runs on, so a notebook or a test sees what an operator would.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests
import yaml

from tunesmith import paths
from tunesmith.serving.launcher import free_port

FOLDER = paths.REPO / "monitoring"
CONFIG = FOLDER / "prometheus.yml"
ALERTS = FOLDER / "alerts.yml"
ALERT_TESTS = FOLDER / "alerts-test.yml"
DASHBOARD = FOLDER / "grafana-dashboard.json"
GATEWAY_JOB = "seldon-gateway"
MLSERVER_JOB = "mlserver"
QUALITY_JOB = "tune-quality"


def _host_port(url: str) -> str:
    parts = urlsplit(url if "//" in url else f"http://{url}")
    return f"{parts.hostname}:{parts.port}"


def local_config(gateway_url: str, mlserver_metrics_url: str, quality_url: str | None = None, *,
                 config: Path = CONFIG, scrape_interval: str | None = None) -> dict:
    """The project's scrape config with its targets set to a running gateway, MLServer and quality exporter.

    Args:
        gateway_url: the gateway's HTTP address (its ``/metrics`` is scraped).
        mlserver_metrics_url: MLServer's metrics address (``METRICS_PORT``).
        quality_url: the tune-quality exporter's address (:func:`tunesmith.monitoring.quality.serve`);
            ``None`` leaves its job out.
        config: the scrape config to start from.
        scrape_interval: e.g. ``"1s"`` to see results sooner; default the config's own.

    Returns:
        The config as a dict, rule files as absolute paths.
    """
    settings = yaml.safe_load(Path(config).read_text())
    targets = {GATEWAY_JOB: _host_port(gateway_url), MLSERVER_JOB: _host_port(mlserver_metrics_url),
               QUALITY_JOB: _host_port(quality_url) if quality_url else None}
    jobs = {job["job_name"] for job in settings["scrape_configs"]}
    if jobs != set(targets):
        raise ValueError(f"{config}: expected the scrape jobs {sorted(targets)}, found {sorted(jobs)}")
    settings["scrape_configs"] = [job for job in settings["scrape_configs"] if targets[job["job_name"]]]
    for job in settings["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    settings["rule_files"] = [str((Path(config).parent / f).resolve()) for f in settings.get("rule_files", [])]
    if scrape_interval:
        settings["global"]["scrape_interval"] = settings["global"]["evaluation_interval"] = scrape_interval
    return settings


def dashboard_queries(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """Every PromQL expression of the Grafana dashboard, as (panel title, expression)."""
    dashboard = json.loads(Path(path).read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def promtool(*args: str) -> subprocess.CompletedProcess:
    """Run ``promtool`` (``check rules``, ``test rules``, ...) and return what it said."""
    binary = shutil.which("promtool")
    if binary is None:
        raise FileNotFoundError("promtool is not installed (Debian: apt-get install prometheus)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)


class Prometheus:
    """The ``prometheus`` binary on a config, on a free port, with its data in a temporary folder.

    Use as a context manager; :meth:`stop` ends the process. ``url`` is its HTTP API.
    """

    def __init__(self, config: dict, *, port: int | None = None, binary: str | None = None):
        self.binary = binary or shutil.which("prometheus")
        if self.binary is None:
            raise FileNotFoundError("prometheus is not installed (Debian: apt-get install prometheus)")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = config
        self.process: subprocess.Popen | None = None
        self._folder: tempfile.TemporaryDirectory | None = None

    def start(self, timeout: float = 60.0) -> Prometheus:
        self._folder = tempfile.TemporaryDirectory(prefix="prometheus-")
        folder = Path(self._folder.name)
        (folder / "prometheus.yml").write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.log = folder / "prometheus.log"
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                [self.binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus was not ready within {timeout:.0f} s")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def api(self, path: str, **params) -> dict | list:
        reply = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = reply.json()
        if body.get("status") != "success":
            raise ValueError(f"{path} {params}: {body.get('error', reply.text)}")
        return body["data"]

    def query(self, expr: str, wait: float = 0.0) -> list[dict]:
        """An instant query: the result's series (``metric`` labels and ``value``).

        ``wait``: seconds to keep asking while the result is empty; a ``rate()`` has no value until
        two scrapes of its series are stored, and each target is scraped on its own schedule.
        """
        deadline = time.monotonic() + wait
        while not (result := self.api("query", query=expr)["result"]) and time.monotonic() < deadline:
            time.sleep(0.5)
        return result

    def targets(self) -> list[dict]:
        return self.api("targets")["activeTargets"]

    def wait_for_scrapes(self, after: float, timeout: float = 60.0) -> None:
        """Wait until every target was scraped successfully after the time ``after`` (``time.time()``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            targets = self.targets()
            if targets and all(t["health"] == "up" and _seconds(t["lastScrape"]) > after for t in targets):
                return
            time.sleep(0.5)
        raise TimeoutError(f"not every target was scraped within {timeout:.0f} s: {self.targets()}")


def _seconds(timestamp: str) -> float:
    """Prometheus' RFC 3339 time (nanoseconds, ``Z``) as a Unix time; Python reads microseconds."""
    from datetime import datetime

    stamp = re.sub(r"(\.\d{6})\d*", r"\1", timestamp).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


def main(argv: list[str] | None = None) -> int:
    """``make prometheus``: Prometheus on the running platform until Ctrl-C, its UI at ``--port``."""
    import argparse
    import signal

    def stop(signum, frame):  # a launcher's SIGTERM or a closed terminal ends Prometheus like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)

    parser = argparse.ArgumentParser(description="Run Prometheus with monitoring/prometheus.yml on the running platform.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8080, help="the gateway's HTTP port (its /metrics)")
    parser.add_argument("--metrics-port", type=int, default=8082, help="MLServer's metrics port")
    parser.add_argument("--quality-port", type=int, default=8083, help="where the tune-quality exporter listens")
    parser.add_argument("--port", type=int, default=9090, help="where Prometheus listens")
    args = parser.parse_args(argv)
    from tunesmith.monitoring import quality

    quality.serve(args.quality_port)  # the tunes of the gateway's request log (default path), scored per arm
    config = local_config(f"{args.host}:{args.http_port}", f"{args.host}:{args.metrics_port}",
                          f"127.0.0.1:{args.quality_port}")
    with Prometheus(config, port=args.port) as prom:
        print(f"Prometheus at {prom.url} scraping {args.host}:{args.http_port}, {args.host}:{args.metrics_port} and the "
              f"tune-quality exporter on 127.0.0.1:{args.quality_port}; alerts: {prom.url}/alerts. Ctrl-C stops it.",
              flush=True)
        try:
            while prom.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
