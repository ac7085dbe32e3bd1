"""What the rest of pdstack may know about the router: the names infra/ (autoscaling, alerts, dashboards, the
workload objects) reads from it. Defined here once; the router's own modules import them from here, and infra/
imports nothing else from runtime.router (tests/runtime/test_layering.py)."""

from __future__ import annotations

# --- metric family names (Prometheus appends _total to counters, _bucket/_sum/_count to histograms) ----------------
# The scaling signals: the autoscaling queries (infra/workloads/autoscaling_objects.py) read these exact series.
ADMISSION_QUEUE_DEPTH = "pdstack_router_admission_queue_depth"
PREFILL_BACKLOG = "pdstack_router_prefill_backlog_seconds"
# Stale P/D pairs (runtime/router/flow/pd_pairs.py): the PdstackStalePdPair alert (infra/observability/alerts.py) reads
# it.
PD_PAIR_STALE = "pdstack_router_pd_pair_stale"
# The rest: the dashboards (infra/observability/dashboards.py) read them.
REQUESTS = "pdstack_router_requests"
DECISIONS = "pdstack_router_decisions"
PROMPT_TOKENS = "pdstack_router_prompt_tokens"
PREDICTED_PREFIX_HIT_TOKENS = "pdstack_router_predicted_prefix_hit_tokens"
RETRIES = "pdstack_router_retries"
FALLBACKS = "pdstack_router_fallbacks"
UPSTREAM_ERRORS = "pdstack_router_upstream_errors"
DECODE_RECOMPUTES = "pdstack_router_decode_recomputes"
TTFT_SECONDS = "pdstack_router_ttft_seconds"
REQUEST_SECONDS = "pdstack_router_request_seconds"
ITL_SECONDS = "pdstack_router_itl_seconds"
LEG_SECONDS = "pdstack_router_leg_seconds"
PREFIX_INDEX_BLOCKS = "pdstack_router_prefix_index_blocks"
PREFIX_INDEX_EVICTIONS = "pdstack_router_prefix_index_evictions"
ENGINE_HEALTHY = "pdstack_router_engine_healthy"
ENGINE_IN_FLIGHT = "pdstack_router_engine_in_flight"
ENGINE_BREAKER_STATE = "pdstack_router_engine_breaker_state"
ENGINE_EJECTIONS = "pdstack_router_engine_ejections"
ENGINE_RESTORATIONS = "pdstack_router_engine_restorations"
KV_EVENTS = "pdstack_router_kv_events"
KV_EVENT_RESYNCS = "pdstack_router_kv_event_resyncs"
KV_EVENTS_SKIPPED = "pdstack_router_kv_events_skipped"
DISCOVERY_CHANGES = "pdstack_router_discovery_changes"
DISCOVERY_FAILURES = "pdstack_router_discovery_failures"
PD_PAIR_PULL_FAILURES = "pdstack_router_pd_pair_pull_failures"
TASK_RESTARTS = "pdstack_router_task_restarts"
AUTH_FAILURES = "pdstack_router_auth_failures"
CLIENT_DISCONNECTS = "pdstack_router_client_disconnects"
ADMISSION_WAIT_SECONDS = "pdstack_router_admission_wait_seconds"
ADMISSION_REJECTIONS = "pdstack_router_admission_rejections"

# The TTFT, end-to-end and leg histograms' buckets. 2.0 is the default TTFT objective
# (infra.config.ServiceLevelObjectives): its burn rate reads that bucket, and infra refuses an objective off a bound.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

# --- Kubernetes discovery -------------------------------------------------------------------------------------------
# The label the router discovers engines by on the EndpointSlices (copied from the worker Services, which infra labels
# with it), and its value per role.
ROLE_LABEL = "llm-d.ai/role"
