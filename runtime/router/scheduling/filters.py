"""Filters: each takes the candidate engines and keeps those fit for the request."""

from __future__ import annotations

import time
from typing import Protocol

from runtime.roles import Role
from runtime.router.config import Saturation
from runtime.router.engines.engine import Engine
from runtime.router.flow.pd_pairs import PairHealth
from runtime.router.scheduling.context import SchedulingContext


class Filter(Protocol):
    name: str

    def filter(self, context: SchedulingContext, engines: list[Engine]) -> list[Engine]: ...


class RoleFilter:
    name = "role"

    def __init__(self, role: Role) -> None:
        self.role = role

    def filter(self, context: SchedulingContext, engines: list[Engine]) -> list[Engine]:
        return [engine for engine in engines if engine.role == self.role]


class HealthyFilter:
    """Available engines (healthy, breaker not open) not yet tried for this request."""

    name = "healthy"

    def filter(self, context: SchedulingContext, engines: list[Engine]) -> list[Engine]:
        now = time.monotonic()
        return [engine for engine in engines if engine.url not in context.excluded and engine.available(now)]


class NotSaturatedFilter:
    """Drops engines past a saturation limit, unless that would drop them all: a full cluster still queues. (The
    engines' learned in-flight limits bound admission, not this choice: a prefix-holding engine with a short queue
    stays a candidate; runtime/router/engines/capacity.py.)"""

    name = "not_saturated"

    def __init__(self, limits: Saturation) -> None:
        self.limits = limits

    def saturated(self, engine: Engine) -> bool:
        limits = self.limits
        return (
            engine.waiting > limits.max_waiting
            or engine.kv_usage > limits.max_kv_usage
            or engine.in_flight >= limits.max_in_flight
        )

    def filter(self, context: SchedulingContext, engines: list[Engine]) -> list[Engine]:
        fit = [engine for engine in engines if not self.saturated(engine)]
        return fit or engines


class FreshPairFilter:
    """Prefill engines whose pair with the request's decode engine is not stale (runtime/router/flow/pd_pairs.py)."""

    name = "fresh_pair"

    def __init__(self, pairs: PairHealth) -> None:
        self.pairs = pairs

    def filter(self, context: SchedulingContext, engines: list[Engine]) -> list[Engine]:
        decode = context.decode
        if decode is None:
            return engines
        now = time.monotonic()
        return [engine for engine in engines if not self.pairs.stale(engine, decode, now)]
