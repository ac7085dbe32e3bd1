"""Router metrics the dashboards and alerts already read but other branches add (docs: the metric-name contract).
Until they land, their queries are expected to return nothing; when one lands, its name must leave this list (the
unit tests fail while a listed name is already exported, so the list cannot go stale)."""

from __future__ import annotations

# The router helper's (issue 11) landed with branch router, merged.
# Added by the autoscale helper (issue 12, branch autoscale).
AUTOSCALE_BRANCH = frozenset({
    "pdstack_router_admission_queue_depth",
    "pdstack_router_admission_wait_seconds",
    "pdstack_router_admission_rejections_total",
    "pdstack_router_prefill_backlog_seconds",
})
AWAITING = AUTOSCALE_BRANCH
