"""The router's Prometheus metrics, in their own registry (one per router; tests run several in one process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# The scaling signals, by name: the autoscaling queries (infra/autoscaling_objects.py) read these exact series.
ADMISSION_QUEUE_DEPTH = "pdstack_router_admission_queue_depth"
PREFILL_BACKLOG = "pdstack_router_prefill_backlog_seconds"
# Stale P/D pairs (runtime/router/pd_pairs.py): the PdstackStalePdPair alert (infra/observability/alerts.py) reads it.
PD_PAIR_STALE = "pdstack_router_pd_pair_stale"
ADMISSION_WAIT_BUCKETS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
# 2.0 is the default TTFT objective (infra.config.ServiceLevelObjectives): its burn rate reads that bucket.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


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
        self.requests = ResolvedOnce(Counter("pdstack_router_requests", "Requests by endpoint and outcome",
                                ["endpoint", "outcome"], registry=r))
        self.decisions = ResolvedOnce(Counter("pdstack_router_decisions", "P/D or decode-only, and why",
                                 ["decision", "reason"], registry=r))
        self.prompt_tokens = ResolvedOnce(Counter("pdstack_router_prompt_tokens", "Prompt tokens routed (estimated without a "
                                     "tokenizer)", ["role"], registry=r))
        self.prefix_hit_tokens = ResolvedOnce(Counter("pdstack_router_predicted_prefix_hit_tokens",
                                         "Prompt tokens the index predicted cached on the chosen engine",
                                         ["role"], registry=r))
        self.retries = Counter("pdstack_router_retries", "Upstream attempts retried on another engine",
                               ["leg"], registry=r)
        self.fallbacks = Counter("pdstack_router_fallbacks", "P/D requests served decode-only after a failure",
                                 ["reason"], registry=r)
        self.upstream_errors = Counter("pdstack_router_upstream_errors", "Upstream failures by engine and kind",
                                       ["engine", "kind"], registry=r)
        self.recomputes = Counter("pdstack_router_decode_recomputes",
                                  "Decode answers that show the prompt was recomputed instead of pulled",
                                  ["engine", "reason"], registry=r)
        self.ttft = ResolvedOnce(Histogram("pdstack_router_ttft_seconds", "Time to the first byte sent to the client",
                              ["endpoint", "decision"], buckets=LATENCY_BUCKETS, registry=r))
        self.e2e = ResolvedOnce(Histogram("pdstack_router_request_seconds", "End-to-end request latency",
                             ["endpoint", "decision"], buckets=LATENCY_BUCKETS, registry=r))
        self.index_blocks = Gauge("pdstack_router_prefix_index_blocks", "Blocks held in the prefix index",
                                  registry=r)
        self.index_evictions = Gauge("pdstack_router_prefix_index_evictions", "Blocks evicted by the LRU cap",
                                     registry=r)
        self.engine_healthy = Gauge("pdstack_router_engine_healthy", "1 when the engine passes health checks",
                                    ["engine", "role"], registry=r)
        self.in_flight = Gauge("pdstack_router_engine_in_flight", "Requests in flight per engine",
                               ["engine", "role"], registry=r)
        self.kv_events = Counter("pdstack_router_kv_events", "KV events applied to the index",
                                 ["engine", "type"], registry=r)
        self.kv_event_resyncs = Counter("pdstack_router_kv_event_resyncs",
                                        "Engine entries dropped after a sequence gap, a restart or a bad batch",
                                        ["engine", "reason"], registry=r)
        # engine lifecycle (issue 11; names shared with the dashboards, see the metric-name contract)
        self.breaker_state = Gauge("pdstack_router_engine_breaker_state",
                                   "Circuit breaker per engine: 0 closed, 1 half_open, 2 open", ["engine", "role"],
                                   registry=r)
        self.ejections = Counter("pdstack_router_engine_ejections", "Engines taken out of the schedule, and why "
                                 "(breaker_open, health_failed, timeout)", ["engine", "role", "reason"], registry=r)
        self.restorations = Counter("pdstack_router_engine_restorations", "Engines put back into the schedule",
                                    ["engine", "role"], registry=r)
        self.discovery_changes = Counter("pdstack_router_discovery_changes", "Engines discovered or gone",
                                         ["role", "change"], registry=r)
        self.discovery_failures = Counter("pdstack_router_discovery_failures",
                                          "Discovery lookups, lists, watches or watch lines that failed (the last "
                                          "good set of engines is kept)", ["source", "reason"], registry=r)
        self.pd_pair_pull_failures = Counter("pdstack_router_pd_pair_pull_failures",
                                             "Decode KV pulls that failed, by (prefill, decode) pair",
                                             ["prefill", "decode"], registry=r)
        self.pd_pair_stale = Gauge(PD_PAIR_STALE, "1 while the router routes around a (prefill, decode) pair whose "
                                   "pulls keep failing while both serve other peers", ["prefill", "decode"],
                                   registry=r)
        self.task_restarts = Counter("pdstack_router_task_restarts",
                                     "Background tasks (discovery, KV-event subscribers) that died and were "
                                     "restarted", ["task"], registry=r)
        self.kv_events_skipped = Counter("pdstack_router_kv_events_skipped",
                                         "KV events the index could not apply, and why", ["engine", "reason"],
                                         registry=r)
        self.itl = ResolvedOnce(Histogram("pdstack_router_itl_seconds", "Gap between two streamed chunks relayed to the client",
                             ["endpoint", "decision"], buckets=ITL_BUCKETS, registry=r))
        self.leg_seconds = ResolvedOnce(Histogram("pdstack_router_leg_seconds", "The prefill leg's duration; the decode leg's "
                                     "time to its first byte", ["leg"], buckets=LATENCY_BUCKETS, registry=r))
        self.auth_failures = ResolvedOnce(Counter("pdstack_router_auth_failures", "Requests answered 401: no API key "
                                                  "(missing) or none of serving.router.api_keys_path's (invalid)",
                                                  ["reason"], registry=r))
        self.client_disconnects = Counter("pdstack_router_client_disconnects",
                                          "Clients gone before the answer ended (upstream aborted)", registry=r)
        # admission control and the scaling signals (README: Admission control, Autoscaling)
        self.admission_queue_depth = Gauge(ADMISSION_QUEUE_DEPTH,
                                           "Requests waiting for admission at this router, by priority",
                                           ["priority"], registry=r)
        self.admission_wait = ResolvedOnce(Histogram("pdstack_router_admission_wait_seconds",
                                                     "Time an admitted request waited for admission", ["priority"],
                                                     buckets=ADMISSION_WAIT_BUCKETS, registry=r))
        self.admission_rejections = Counter("pdstack_router_admission_rejections",
                                            "Requests answered 429 by admission control", ["priority", "reason"],
                                            registry=r)
        self.prefill_backlog = Gauge(PREFILL_BACKLOG,
                                     "Uncached prompt tokens of this router's requests whose prompt is not computed "
                                     "yet, divided by one prefill replica's throughput (sum across routers)", registry=r)
