"""A real Prometheus (Debian's ``prometheus`` package) on a free loopback port, scraping static targets of the test
bed, with a query helper over its HTTP API. Started in its own process group with a temporary storage directory,
ready when ``/-/ready`` answers 200, stopped by that group's id (never by name), also when a test fails.

    with PrometheusServer(tmp, [ScrapeTarget("router", "127.0.0.1:8000", {"namespace": "pdstack"})]) as prom:
        prom.wait_for_samples('up{job="router"}')
        prom.query('sum(rate(pdstack_router_requests_total[1m]))')
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from testbed.ports import free_ports
from testbed.process import HttpServer

# promtool and prometheus come from Debian's package (`make prometheus`); `apt-get install prometheus` elsewhere.
PROMETHEUS = "prometheus"


class PrometheusQueryError(RuntimeError):
    """Prometheus refused a query (bad PromQL, or an evaluation error); the message is Prometheus's own."""


@dataclass(frozen=True)
class ScrapeTarget:
    """One static target: its job, its host:port, and the target labels (the ones service discovery would add)."""

    job: str
    address: str
    labels: dict[str, str] = field(default_factory=dict)


def scrape_config(targets: list[ScrapeTarget], interval_s: float) -> dict[str, Any]:
    """The Prometheus configuration: one scrape job per distinct job name, every target with its own labels."""
    jobs: dict[str, list[dict[str, Any]]] = {}
    for target in targets:
        jobs.setdefault(target.job, []).append({"targets": [target.address], "labels": dict(target.labels)})
    interval = f"{int(interval_s * 1000)}ms"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {"job_name": job, "static_configs": static, "scrape_timeout": interval} for job, static in jobs.items()
        ],
    }


class PrometheusServer(HttpServer):
    """Exposes ``url``, ``query`` (instant vector or scalar as a list of results), ``query_range`` and
    ``wait_for_samples``."""

    def __init__(
        self,
        work: Path,
        targets: list[ScrapeTarget],
        *,
        scrape_interval_s: float = 1.0,
        rule_files: list[Path] | None = None,
        start_timeout_s: float = 60.0,
    ) -> None:
        if shutil.which(PROMETHEUS) is None:
            raise FileNotFoundError(f"{PROMETHEUS} is not on PATH; run `make prometheus` (Debian package prometheus)")
        work.mkdir(parents=True, exist_ok=True)
        storage = work / "prometheus-data"
        shutil.rmtree(storage, ignore_errors=True)
        config = scrape_config(targets, scrape_interval_s)
        if rule_files:
            config["rule_files"] = [str(path.resolve()) for path in rule_files]
        config_file = work / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        (port,) = free_ports(1)
        argv = [
            PROMETHEUS,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]
        super().__init__(
            "prometheus",
            argv,
            {"PATH": "/usr/bin:/bin"},
            port,
            work / "prometheus.log",
            work,
            ready_path="/-/ready",
            start_timeout_s=start_timeout_s,
            poll_s=0.2,
            stop_grace_s=10.0,
        )

    def _api(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:  # 400/422: the body still says why
            body = json.load(error)
        if body.get("status") != "success":
            raise PrometheusQueryError(f"{params.get('query')!r}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query. A vector gives its samples ({"metric": ..., "value": [t, "v"]}); a scalar gives one."""
        params = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
        data = self._api("query", params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def query_range(self, promql: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]:
        """A range query: one {"metric": ..., "values": [[t, "v"], ...]} per series."""
        return self._api(
            "query_range", {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s:g}"}
        )["result"]

    def wait_for_samples(self, promql: str, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """Poll until the query returns at least one sample; raise TimeoutError with the last answer otherwise."""
        deadline = time.monotonic() + timeout_s
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(promql)
            if result:
                return result
            time.sleep(0.5)
        raise TimeoutError(f"no samples for {promql!r} after {timeout_s} s (last answer {result})")
