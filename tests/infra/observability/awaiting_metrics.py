"""Router metrics the dashboards and alerts already read but other branches add (docs: the metric-name contract).
Until they land, their queries are expected to return nothing; when one lands, its name must leave this list (the
unit tests fail while a listed name is already exported, so the list cannot go stale)."""

from __future__ import annotations

# The router helper's (issue 11) and the autoscale helper's (issue 12) metrics have landed in RouterMetrics.
AWAITING: frozenset[str] = frozenset()
