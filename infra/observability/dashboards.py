"""pdstack's Grafana dashboards, as plain Grafana JSON model dicts (schemaVersion 39): overview, per-role saturation,
KV transfer, prefix cache and router. Each has template variables for the data source, the namespace and the model;
every query selects ``namespace="$namespace", model="$model"`` (target labels of ``infra.observability.targets``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infra.observability.targets import ENGINE_JOB, MODEL, NAMESPACE, PD_ROLE, POD, ROUTER_JOB
from infra.observability.vllm_metrics import (
    CACHE_HIT_TIERS,
    KV_CACHE_USAGE,
    KV_OFFLOAD_ALLOCATION_FAILURES,
    KV_OFFLOAD_LOAD_BYTES,
    KV_OFFLOAD_LOAD_TIME,
    KV_OFFLOAD_STORE_BYTES,
    KV_OFFLOAD_STORE_TIME,
    NIXL_BYTES_TRANSFERRED,
    NIXL_FAILED_TRANSFERS,
    NIXL_KV_EXPIRED_REQS,
    NIXL_NOTIFICATIONS_AFTER_EXPIRY,
    NIXL_POST_TIME,
    NIXL_XFER_TIME,
    NUM_PREEMPTIONS,
    NUM_REQUESTS_RUNNING,
    NUM_REQUESTS_WAITING,
    PREFIX_CACHE_HITS,
    PREFIX_CACHE_QUERIES,
    PROMPT_TOKENS_BY_SOURCE,
    PROMPT_TOKENS_CACHED_BY_SOURCE,
)

SCHEMA_VERSION = 39
RATE = "$__rate_interval"
SCOPE = f'{NAMESPACE}="${NAMESPACE}", {MODEL}="${MODEL}"'
ROUTER = f'job="{ROUTER_JOB}", {SCOPE}'
ENGINE = f'job="{ENGINE_JOB}", {SCOPE}'
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: tuple[Query, ...]
    description: str = ""
    width: int = 12


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: dict[str, list[Panel]] = field(default_factory=dict)

    def queries(self) -> list[tuple[str, Query]]:
        """Every (panel title, query) of the dashboard."""
        return [(panel.title, query) for panels in self.rows.values() for panel in panels for query in panel.queries]


def q(expr: str, legend: str) -> Query:
    return Query(expr, legend)


def quantiles(metric: str, selector: str, by: str, legend: str) -> tuple[Query, ...]:
    """p50 and p99 of a histogram, by the given labels."""
    return tuple(
        q(
            f"histogram_quantile({p}, sum by (le, {by}) (rate({metric}_bucket{{{selector}}}[{RATE}])))",
            f"p{int(p * 100)} {legend}",
        )
        for p in (0.5, 0.99)
    )


def ratio(numerator: str, denominator: str, legend: str) -> Query:
    return q(f"({numerator}) / ({denominator})", legend)


def rate_by(metric: str, selector: str, by: str, legend: str) -> Query:
    return q(f"sum by ({by}) (rate({metric}{{{selector}}}[{RATE}]))", legend)


OVERVIEW = Dashboard(
    "pdstack-overview",
    "pdstack / Overview",
    "Requests, errors, latency by P/D decision, the P/D ratio, fallbacks and recomputes.",
    {
        "Traffic": [
            Panel(
                "Requests by outcome",
                "reqps",
                (rate_by("pdstack_router_requests_total", ROUTER, "outcome", "{{outcome}}"),),
            ),
            Panel(
                "Server error ratio",
                "percentunit",
                (
                    ratio(
                        f"sum(rate(pdstack_router_requests_total{{{ROUTER}, "
                        f'outcome!~"ok|client_error|client_disconnected"}}[{RATE}]))'
                        f" or sum(rate(pdstack_router_requests_total{{{ROUTER}}}[{RATE}])) * 0",
                        f"sum(rate(pdstack_router_requests_total{{{ROUTER}}}[{RATE}]))",
                        "errors",
                    ),
                ),
                "Answers the router failed (5xx, no engine, broken streams) over all requests; client errors excluded.",
            ),
        ],
        "Latency by decision": [
            Panel(
                "Time to first token",
                "s",
                quantiles("pdstack_router_ttft_seconds", ROUTER, "decision", "{{decision}}"),
                width=8,
            ),
            Panel(
                "Inter-token latency",
                "s",
                quantiles("pdstack_router_itl_seconds", ROUTER, "decision", "{{decision}}"),
                "Gap between streamed chunks relayed to the client.",
                width=8,
            ),
            Panel(
                "End-to-end latency",
                "s",
                quantiles("pdstack_router_request_seconds", ROUTER, "decision", "{{decision}}"),
                width=8,
            ),
        ],
        "Disaggregation": [
            Panel(
                "P/D ratio",
                "percentunit",
                (
                    ratio(
                        f'sum(rate(pdstack_router_decisions_total{{{ROUTER}, decision="pd"}}[{RATE}]))'
                        f" or sum(rate(pdstack_router_decisions_total{{{ROUTER}}}[{RATE}])) * 0",
                        f"sum(rate(pdstack_router_decisions_total{{{ROUTER}}}[{RATE}]))",
                        "P/D share",
                    ),
                ),
                "Share of requests served prefill-then-decode; the rest went decode-only.",
            ),
            Panel(
                "Decisions by reason",
                "reqps",
                (rate_by("pdstack_router_decisions_total", ROUTER, "decision, reason", "{{decision}} {{reason}}"),),
            ),
            Panel(
                "Fallbacks to decode-only",
                "reqps",
                (rate_by("pdstack_router_fallbacks_total", ROUTER, "reason", "{{reason}}"),),
                "P/D requests served decode-only after prefill failed or decode could not pull.",
            ),
            Panel(
                "Decode recomputes",
                "short",
                (
                    rate_by(
                        PROMPT_TOKENS_BY_SOURCE,
                        f'{ENGINE}, {PD_ROLE}="decode", source="local_compute"',
                        POD,
                        "locally computed prompt tokens/s {{pod}}",
                    ),
                    rate_by("pdstack_router_decode_recomputes_total", ROUTER, "reason", "router saw {{reason}}"),
                ),
                "Prompt tokens decode computed itself (zero when every request is P/D and pulls its KV), and the "
                "requests the router saw going to decode with incomplete transfer params.",
            ),
        ],
    },
)

SATURATION = Dashboard(
    "pdstack-saturation",
    "pdstack / Saturation by role",
    "Per role (prefill, decode): queues, running requests, KV usage, and the router's admission.",
    {
        "Engines": [
            Panel(
                "Waiting requests",
                "short",
                (q(f"sum by ({PD_ROLE}, {POD}) ({NUM_REQUESTS_WAITING}{{{ENGINE}}})", "{{pd_role}} {{pod}}"),),
                width=8,
            ),
            Panel(
                "Running requests",
                "short",
                (q(f"sum by ({PD_ROLE}, {POD}) ({NUM_REQUESTS_RUNNING}{{{ENGINE}}})", "{{pd_role}} {{pod}}"),),
                width=8,
            ),
            Panel(
                "KV cache usage",
                "percentunit",
                (q(f"max by ({PD_ROLE}, {POD}) ({KV_CACHE_USAGE}{{{ENGINE}}})", "{{pd_role}} {{pod}}"),),
                width=8,
            ),
            Panel(
                "Preemptions", "short", (rate_by(NUM_PREEMPTIONS, ENGINE, f"{PD_ROLE}, {POD}", "{{pd_role}} {{pod}}"),)
            ),
            Panel(
                "In flight per engine (router)",
                "short",
                (q(f"sum by (role, engine) (pdstack_router_engine_in_flight{{{ROUTER}}})", "{{role}} {{engine}}"),),
            ),
        ],
        "Admission": [
            Panel(
                "Admission queue depth",
                "short",
                (q(f"sum by (priority) (pdstack_router_admission_queue_depth{{{ROUTER}}})", "{{priority}}"),),
                width=8,
            ),
            Panel(
                "Admission wait",
                "s",
                quantiles("pdstack_router_admission_wait_seconds", ROUTER, "priority", "{{priority}}"),
                width=8,
            ),
            Panel(
                "Admission rejections",
                "reqps",
                (
                    rate_by(
                        "pdstack_router_admission_rejections_total",
                        ROUTER,
                        "priority, reason",
                        "{{priority}} {{reason}}",
                    ),
                ),
                width=8,
            ),
            Panel(
                "Prefill backlog",
                "s",
                (q(f"sum(pdstack_router_prefill_backlog_seconds{{{ROUTER}}})", "backlog"),),
                "Uncached prompt tokens in flight or queued for prefill over the prefill throughput, all routers.",
            ),
        ],
    },
)

KV_TRANSFER = Dashboard(
    "pdstack-kv-transfer",
    "pdstack / KV transfer",
    "NIXL bytes, time, failures and expired leases; pulled vs locally computed prompt tokens.",
    {
        "NIXL": [
            Panel(
                "Bytes transferred", "Bps", (rate_by(f"{NIXL_BYTES_TRANSFERRED}_sum", ENGINE, POD, "{{pod}}"),), width=8
            ),
            Panel("Transfers", "ops", (rate_by(f"{NIXL_XFER_TIME}_count", ENGINE, POD, "{{pod}}"),), width=8),
            Panel("Transfer time", "s", quantiles(NIXL_XFER_TIME, ENGINE, POD, "{{pod}}"), width=8),
            Panel("Post time", "s", quantiles(NIXL_POST_TIME, ENGINE, POD, "{{pod}}"), width=8),
            Panel(
                "Failed transfers",
                "ops",
                (rate_by(NIXL_FAILED_TRANSFERS, ENGINE, POD, "{{pod}}"),),
                "Transfers, handshakes and notifications that failed.",
                width=8,
            ),
            Panel(
                "Expired KV leases",
                "ops",
                (
                    rate_by(NIXL_KV_EXPIRED_REQS, ENGINE, POD, "expired {{pod}}"),
                    rate_by(NIXL_NOTIFICATIONS_AFTER_EXPIRY, ENGINE, POD, "read after expiry {{pod}}"),
                ),
                "Prefill released blocks decode never read in time; reads finished after the lease ended.",
                width=8,
            ),
        ],
        "Where prompt tokens come from": [
            Panel(
                "Prompt tokens by source",
                "short",
                (rate_by(PROMPT_TOKENS_BY_SOURCE, ENGINE, f"{PD_ROLE}, source", "{{pd_role}} {{source}}"),),
                "On decode, external_kv_transfer is pulled KV and local_compute is recompute.",
            ),
            Panel(
                "Pulled share of decode's prompt tokens",
                "percentunit",
                (
                    ratio(
                        f'sum(rate({PROMPT_TOKENS_BY_SOURCE}{{{ENGINE}, {PD_ROLE}="decode", '
                        f'source="external_kv_transfer"}}[{RATE}]))',
                        f'sum(rate({PROMPT_TOKENS_BY_SOURCE}{{{ENGINE}, {PD_ROLE}="decode"}}[{RATE}]))',
                        "pulled",
                    ),
                ),
            ),
        ],
        "Legs": [
            Panel(
                "Leg duration",
                "s",
                quantiles("pdstack_router_leg_seconds", ROUTER, "leg", "{{leg}}"),
                "prefill: the prefill leg; decode_first_byte: decode's time to its first byte.",
            ),
        ],
    },
)

PREFIX_CACHE = Dashboard(
    "pdstack-prefix-cache",
    "pdstack / Prefix cache",
    "The router's predicted prefix hits against the engines' own prefix-cache hits, and the host KV tier's.",
    {
        "Hits": [
            Panel(
                "Predicted hit ratio (router)",
                "percentunit",
                (
                    ratio(
                        f"sum by (role) (rate(pdstack_router_predicted_prefix_hit_tokens_total{{{ROUTER}}}[{RATE}]))",
                        f"sum by (role) (rate(pdstack_router_prompt_tokens_total{{{ROUTER}}}[{RATE}]))",
                        "{{role}}",
                    ),
                ),
            ),
            Panel(
                "Engine hit ratio",
                "percentunit",
                (
                    ratio(
                        f"sum by ({PD_ROLE}) (rate({PREFIX_CACHE_HITS}{{{ENGINE}}}[{RATE}]))",
                        f"sum by ({PD_ROLE}) (rate({PREFIX_CACHE_QUERIES}{{{ENGINE}}}[{RATE}]))",
                        "{{pd_role}}",
                    ),
                ),
            ),
        ],
        "Tiers": [
            Panel(
                "Engine hit ratio by tier",
                "percentunit",
                tuple(
                    ratio(
                        f"sum by ({PD_ROLE}) "
                        f'(rate({PROMPT_TOKENS_CACHED_BY_SOURCE}{{{ENGINE}, source="{tier}"}}[{RATE}]))',
                        f"sum by ({PD_ROLE}) (rate({PREFIX_CACHE_QUERIES}{{{ENGINE}}}[{RATE}]))",
                        f"{{{{pd_role}}}} {tier}",
                    )
                    for tier in CACHE_HIT_TIERS
                ),
                width=8,
            ),
            Panel(
                "Offloaded to host and reloaded",
                "Bps",
                (
                    rate_by(KV_OFFLOAD_STORE_BYTES, ENGINE, POD, "offload {{pod}}"),
                    rate_by(KV_OFFLOAD_LOAD_BYTES, ENGINE, POD, "reload {{pod}}"),
                ),
                width=8,
            ),
            Panel(
                "Transfer time per second, and host allocation failures",
                "short",
                (
                    rate_by(KV_OFFLOAD_STORE_TIME, ENGINE, POD, "offload s/s {{pod}}"),
                    rate_by(KV_OFFLOAD_LOAD_TIME, ENGINE, POD, "reload s/s {{pod}}"),
                    rate_by(KV_OFFLOAD_ALLOCATION_FAILURES, ENGINE, POD, "allocation failures/s {{pod}}"),
                ),
                width=8,
            ),
        ],
        "Index": [
            Panel(
                "Index blocks",
                "short",
                (q(f"sum by ({POD}) (pdstack_router_prefix_index_blocks{{{ROUTER}}})", "{{pod}}"),),
                width=8,
            ),
            Panel(
                "Index evictions",
                "short",
                (q(f"sum by ({POD}) (pdstack_router_prefix_index_evictions{{{ROUTER}}})", "{{pod}}"),),
                width=8,
            ),
            Panel(
                "KV events applied",
                "ops",
                (rate_by("pdstack_router_kv_events_total", ROUTER, "engine, type", "{{engine}} {{type}}"),),
                width=8,
            ),
            Panel(
                "KV event resyncs and skips",
                "ops",
                (
                    rate_by(
                        "pdstack_router_kv_event_resyncs_total",
                        ROUTER,
                        "engine, reason",
                        "resync {{engine}} {{reason}}",
                    ),
                    rate_by(
                        "pdstack_router_kv_events_skipped_total", ROUTER, "engine, reason", "skip {{engine}} {{reason}}"
                    ),
                ),
            ),
        ],
    },
)

ROUTER_DASHBOARD = Dashboard(
    "pdstack-router",
    "pdstack / Router",
    "Retries, upstream errors, engine health and breaker states, discovery changes.",
    {
        "Failover": [
            Panel(
                "Retries by leg", "ops", (rate_by("pdstack_router_retries_total", ROUTER, "leg", "{{leg}}"),), width=8
            ),
            Panel(
                "Upstream errors",
                "ops",
                (rate_by("pdstack_router_upstream_errors_total", ROUTER, "engine, kind", "{{engine}} {{kind}}"),),
                width=8,
            ),
            Panel(
                "Client disconnects",
                "ops",
                (q(f"sum(rate(pdstack_router_client_disconnects_total{{{ROUTER}}}[{RATE}]))", "disconnects"),),
                width=8,
            ),
        ],
        "Engines": [
            Panel(
                "Engine healthy (router's view)",
                "short",
                (q(f"min by (role, engine) (pdstack_router_engine_healthy{{{ROUTER}}})", "{{role}} {{engine}}"),),
                width=8,
            ),
            Panel(
                "Breaker state (0 closed, 1 half-open, 2 open)",
                "short",
                (q(f"max by (role, engine) (pdstack_router_engine_breaker_state{{{ROUTER}}})", "{{role}} {{engine}}"),),
                width=8,
            ),
            Panel(
                "Ejections and restorations",
                "ops",
                (
                    rate_by(
                        "pdstack_router_engine_ejections_total",
                        ROUTER,
                        "role, engine, reason",
                        "ejected {{engine}} {{reason}}",
                    ),
                    rate_by("pdstack_router_engine_restorations_total", ROUTER, "role, engine", "restored {{engine}}"),
                ),
                width=8,
            ),
            Panel(
                "Discovery changes",
                "ops",
                (rate_by("pdstack_router_discovery_changes_total", ROUTER, "role, change", "{{role}} {{change}}"),),
            ),
        ],
    },
)

DASHBOARDS = (OVERVIEW, SATURATION, KV_TRANSFER, PREFIX_CACHE, ROUTER_DASHBOARD)


def _variables() -> list[dict[str, Any]]:
    def query_variable(name: str, label: str, query: str) -> dict[str, Any]:
        return {
            "type": "query",
            "name": name,
            "label": label,
            "datasource": DATASOURCE,
            "query": {"query": query, "refId": f"{name}-variable"},
            "definition": query,
            "refresh": 2,
            "sort": 1,
            "includeAll": False,
            "multi": False,
        }

    jobs = f'job=~"{ROUTER_JOB}|{ENGINE_JOB}"'
    return [
        {"type": "datasource", "name": "datasource", "label": "Data source", "query": "prometheus"},
        query_variable(NAMESPACE, "Namespace", f"label_values(up{{{jobs}}}, {NAMESPACE})"),
        query_variable(MODEL, "Model", f'label_values(up{{{jobs}, {NAMESPACE}="${NAMESPACE}"}}, {MODEL})'),
    ]


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": query.expr, "legendFormat": query.legend}
            for i, query in enumerate(panel.queries)
        ],
    }


def grafana_json(dashboard: Dashboard) -> dict[str, Any]:
    """The Grafana JSON model: one collapsed-free row per group, panels laid left to right on a 24-column grid."""
    panels: list[dict[str, Any]] = []
    y = 0
    panel_id = 1
    for row, row_panels in dashboard.rows.items():
        panels.append(
            {
                "id": panel_id,
                "type": "row",
                "title": row,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id += 1
        y += 1
        x = 0
        for panel in row_panels:
            if x + panel.width > 24:
                x, y = 0, y + 8
            panels.append(_panel(panel, panel_id, x, y))
            panel_id += 1
            x += panel.width
        y += 8
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["pdstack"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": _variables()},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }
