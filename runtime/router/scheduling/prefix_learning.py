"""Approximate prefix mode: without KV events, the index learns from the router's own decisions. A prompt served
with status 200 is cached on the engines that served it (until the LRU cap forgets it)."""

from __future__ import annotations

from runtime.router.prefix_cache.prefix_index import PrefixIndex
from runtime.router.scheduling.context import RoutingPlan, Served


class ApproximatePrefixLearning:
    name = "approximate_prefix_learning"

    def __init__(self, index: PrefixIndex) -> None:
        self.index = index

    def on_served(self, plan: RoutingPlan, served: Served) -> None:
        keys = plan.context.blocks.keys
        if served.status != 200 or not keys:
            return
        self.index.add(served.decode.url, keys)
        if served.prefill is not None:
            self.index.add(served.prefill.url, keys)
