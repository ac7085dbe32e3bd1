"""The router's Prometheus metrics, in their own registry (one per router; tests run several in one process). Their
names are the router's contract with infra/ (runtime/router/contract.py)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from runtime.router import contract as names
from runtime.router.contract import LATENCY_BUCKETS

ADMISSION_WAIT_BUCKETS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)


class ResolvedOnce:
    """A labelled metric on the request path whose children are resolved once per label values, then reused:
    prometheus_client's ``labels()`` validates and locks on every call (about 2 us, ten times a request). Only for
    label sets that stay small (endpoint, decision, reason, role), never per engine."""

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child

    def __getattr__(self, name: str) -> Any:
        return getattr(self._metric, name)


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = ResolvedOnce(
            Counter(names.REQUESTS, "Requests by endpoint and outcome", ["endpoint", "outcome"], registry=r)
        )
        self.decisions = ResolvedOnce(
            Counter(names.DECISIONS, "P/D or decode-only, and why", ["decision", "reason"], registry=r)
        )
        self.prompt_tokens = ResolvedOnce(
            Counter(names.PROMPT_TOKENS, "Prompt tokens routed (estimated without a tokenizer)", ["role"], registry=r)
        )
        self.prefix_hit_tokens = ResolvedOnce(
            Counter(
                names.PREDICTED_PREFIX_HIT_TOKENS,
                "Prompt tokens the index predicted cached on the chosen engine",
                ["role"],
                registry=r,
            )
        )
        self.retries = Counter(names.RETRIES, "Upstream attempts retried on another engine", ["leg"], registry=r)
        self.fallbacks = Counter(
            names.FALLBACKS, "P/D requests served decode-only after a failure", ["reason"], registry=r
        )
        self.upstream_errors = Counter(
            names.UPSTREAM_ERRORS, "Upstream failures by engine and kind", ["engine", "kind"], registry=r
        )
        self.recomputes = Counter(
            names.DECODE_RECOMPUTES,
            "Decode answers that show the prompt was recomputed instead of pulled",
            ["engine", "reason"],
            registry=r,
        )
        self.ttft = ResolvedOnce(
            Histogram(
                names.TTFT_SECONDS,
                "Time to the first byte sent to the client",
                ["endpoint", "decision"],
                buckets=LATENCY_BUCKETS,
                registry=r,
            )
        )
        self.e2e = ResolvedOnce(
            Histogram(
                names.REQUEST_SECONDS,
                "End-to-end request latency",
                ["endpoint", "decision"],
                buckets=LATENCY_BUCKETS,
                registry=r,
            )
        )
        self.index_blocks = Gauge(names.PREFIX_INDEX_BLOCKS, "Blocks held in the prefix index", registry=r)
        self.index_evictions = Gauge(names.PREFIX_INDEX_EVICTIONS, "Blocks evicted by the LRU cap", registry=r)
        self.engine_healthy = Gauge(
            names.ENGINE_HEALTHY, "1 when the engine passes health checks", ["engine", "role"], registry=r
        )
        self.in_flight = Gauge(names.ENGINE_IN_FLIGHT, "Requests in flight per engine", ["engine", "role"], registry=r)
        self.kv_events = Counter(names.KV_EVENTS, "KV events applied to the index", ["engine", "type"], registry=r)
        self.kv_event_resyncs = Counter(
            names.KV_EVENT_RESYNCS,
            "Engine entries dropped after a sequence gap, a restart or a bad batch",
            ["engine", "reason"],
            registry=r,
        )
        # engine lifecycle (issue 11; names shared with the dashboards, see the metric-name contract)
        self.breaker_state = Gauge(
            names.ENGINE_BREAKER_STATE,
            "Circuit breaker per engine: 0 closed, 1 half_open, 2 open",
            ["engine", "role"],
            registry=r,
        )
        self.ejections = Counter(
            names.ENGINE_EJECTIONS,
            "Engines taken out of the schedule, and why (breaker_open, health_failed, timeout)",
            ["engine", "role", "reason"],
            registry=r,
        )
        self.restorations = Counter(
            names.ENGINE_RESTORATIONS, "Engines put back into the schedule", ["engine", "role"], registry=r
        )
        self.discovery_changes = Counter(
            names.DISCOVERY_CHANGES, "Engines discovered or gone", ["role", "change"], registry=r
        )
        self.discovery_failures = Counter(
            names.DISCOVERY_FAILURES,
            "Discovery lookups, lists, watches or watch lines that failed (the last good set of engines is kept)",
            ["source", "reason"],
            registry=r,
        )
        self.pd_pair_pull_failures = Counter(
            names.PD_PAIR_PULL_FAILURES,
            "Decode KV pulls that failed, by (prefill, decode) pair",
            ["prefill", "decode"],
            registry=r,
        )
        self.pd_pair_stale = Gauge(
            names.PD_PAIR_STALE,
            "1 while the router routes around a (prefill, decode) pair whose "
            "pulls keep failing while both serve other peers",
            ["prefill", "decode"],
            registry=r,
        )
        self.task_restarts = Counter(
            names.TASK_RESTARTS,
            "Background tasks (discovery, KV-event subscribers) that died and were restarted",
            ["task"],
            registry=r,
        )
        self.kv_events_skipped = Counter(
            names.KV_EVENTS_SKIPPED, "KV events the index could not apply, and why", ["engine", "reason"], registry=r
        )
        self.itl = ResolvedOnce(
            Histogram(
                names.ITL_SECONDS,
                "Gap between two streamed chunks relayed to the client",
                ["endpoint", "decision"],
                buckets=ITL_BUCKETS,
                registry=r,
            )
        )
        self.leg_seconds = ResolvedOnce(
            Histogram(
                names.LEG_SECONDS,
                "The prefill leg's duration; the decode leg's time to its first byte",
                ["leg"],
                buckets=LATENCY_BUCKETS,
                registry=r,
            )
        )
        self.auth_failures = ResolvedOnce(
            Counter(
                names.AUTH_FAILURES,
                "Requests answered 401: no API key (missing) or none of serving.router.api_keys_path's (invalid)",
                ["reason"],
                registry=r,
            )
        )
        self.client_disconnects = Counter(
            names.CLIENT_DISCONNECTS, "Clients gone before the answer ended (upstream aborted)", registry=r
        )
        # admission control and the scaling signals (README: Admission control, Autoscaling)
        self.admission_queue_depth = Gauge(
            names.ADMISSION_QUEUE_DEPTH,
            "Requests waiting for admission at this router, by priority",
            ["priority"],
            registry=r,
        )
        self.admission_wait = ResolvedOnce(
            Histogram(
                names.ADMISSION_WAIT_SECONDS,
                "Time an admitted request waited for admission",
                ["priority"],
                buckets=ADMISSION_WAIT_BUCKETS,
                registry=r,
            )
        )
        self.admission_rejections = Counter(
            names.ADMISSION_REJECTIONS, "Requests answered 429 by admission control", ["priority", "reason"], registry=r
        )
        self.prefill_backlog = Gauge(
            names.PREFILL_BACKLOG,
            "Uncached prompt tokens of this router's requests whose prompt is not computed "
            "yet, divided by one prefill replica's throughput (sum across routers)",
            registry=r,
        )
