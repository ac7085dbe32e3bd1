"""The Prometheus fixture against a real Prometheus: it scrapes a real prometheus_client exporter with the target
labels it was given, answers instant and range queries, reports bad PromQL with Prometheus's own message, and stops."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from testbed.ports import free_ports
from testbed.prometheus_server import PrometheusQueryError, PrometheusServer, ScrapeTarget


def test_scrapes_a_real_exporter_and_answers_queries(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    served = Counter("demo_served", "requests", ["outcome"], registry=registry)
    (port,) = free_ports(1)
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        served.labels("ok").inc(3)
        target = ScrapeTarget("demo", f"127.0.0.1:{port}", {"namespace": "ns1", "model": "tiny"})
        with PrometheusServer(tmp_path, [target], scrape_interval_s=0.5) as prom:
            samples = prom.wait_for_samples('demo_served_total{namespace="ns1", model="tiny", job="demo"}')
            assert float(samples[0]["value"][1]) == 3.0
            served.labels("ok").inc(2)
            prom.wait_for_samples('demo_served_total{outcome="ok"} == 5', timeout_s=20)
            now = time.time()
            series = prom.query_range("demo_served_total", now - 10, now, 1.0)
            assert series and series[0]["metric"]["outcome"] == "ok"
            assert prom.query("scalar(vector(2))")[0]["value"][1] == "2"
            with pytest.raises(PrometheusQueryError, match="parse error"):
                prom.query("sum(rate(demo_served_total[1m])")
            group = prom.group
        assert group is not None and group.process.poll() is not None
    finally:
        server.shutdown()
        thread.join(5)
