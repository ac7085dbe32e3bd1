"""Router metrics the dashboards and alerts already read but other branches add (docs: the metric-name contract).
Until they land, their queries are expected to return nothing; when one lands, its name must leave this list (the
unit tests fail while a listed name is already exported, so the list cannot go stale)."""

from __future__ import annotations

# Added by the router helper (issue 11, branch router).
ROUTER_BRANCH = frozenset({
    "pdstack_router_engine_breaker_state",
    "pdstack_router_engine_ejections_total",
    "pdstack_router_engine_restorations_total",
    "pdstack_router_discovery_changes_total",
    "pdstack_router_kv_events_skipped_total",
    "pdstack_router_itl_seconds",
    "pdstack_router_leg_seconds",
})
# The autoscale helper's (issue 12) admission and prefill-backlog metrics have landed in RouterMetrics.
AWAITING = ROUTER_BRANCH
