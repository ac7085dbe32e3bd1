"""Scorers: each gives every candidate a score in [0, 1]; the scheduler weighs and sums them."""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from runtime.router.engine import Engine
from runtime.router.scheduling.context import RoutingPlan, SchedulingContext, Served


class Scorer(Protocol):
    name: str

    def score(self, context: SchedulingContext, engines: list[Engine]) -> dict[Engine, float]: ...


class PrefixScorer:
    """The share of the prompt's full blocks the engine already holds, as one unbroken leading run."""

    name = "prefix"

    def score(self, context: SchedulingContext, engines: list[Engine]) -> dict[Engine, float]:
        total = len(context.blocks.keys)
        if total == 0:
            return {engine: 0.0 for engine in engines}
        return {engine: context.held_blocks(engine) / total for engine in engines}


class LoadScorer:
    """Lower load scores higher: requests queued (router in flight + engine waiting) and KV cache fullness."""

    name = "load"

    def score(self, context: SchedulingContext, engines: list[Engine]) -> dict[Engine, float]:
        return {engine: 0.5 / (1.0 + engine.in_flight + engine.waiting) + 0.5 * (1.0 - min(engine.kv_usage, 1.0))
                for engine in engines}


class SessionAffinityScorer:
    """1 for the engine that served the request's session last (a header names the session), 0 for the others."""

    name = "session"

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._last: OrderedDict[str, str] = OrderedDict()

    def score(self, context: SchedulingContext, engines: list[Engine]) -> dict[Engine, float]:
        last = self._last.get(context.session) if context.session else None
        return {engine: 1.0 if engine.url == last else 0.0 for engine in engines}

    def on_served(self, plan: RoutingPlan, served: Served) -> None:
        if served.status < 400:
            self.record(plan.context.session, served.decode)

    def record(self, session: str | None, engine: Engine) -> None:
        if not session:
            return
        self._last[session] = engine.url
        self._last.move_to_end(session)
        if len(self._last) > self.capacity:
            self._last.popitem(last=False)
