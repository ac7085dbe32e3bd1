"""The engines one leg of a request tries, in order: the plan's pick, then the scheduler's next pick among those not
tried yet, while attempts are left. It backs off only before a real next attempt (never after the last one, never
when no engine is left) and counts exactly the retries it makes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from runtime.roles import DECODE, ROLES, Role
from runtime.router.config import Retries
from runtime.router.engines.engine import Engine
from runtime.router.engines.registry import EngineRegistry
from runtime.router.router_metrics import RouterMetrics
from runtime.router.scheduling.context import RoutingPlan
from runtime.router.scheduling.scheduler import NoEngineAvailable, Scheduler


class Attempts:
    def __init__(
        self, scheduler: Scheduler, registry: EngineRegistry, retries: Retries, metrics: RouterMetrics
    ) -> None:
        self.scheduler = scheduler
        self.registry = registry
        self.retries = retries
        self.metrics = metrics
        for role in ROLES:  # at zero from the start, so rate() sees the first retries too
            metrics.retries.labels(role)

    async def __call__(self, role: Role, plan: RoutingPlan) -> AsyncIterator[Engine]:
        context = plan.context
        first = plan.decode if role == DECODE else plan.prefill
        previous: Engine | None = None
        for attempt in range(self.retries.attempts):
            if attempt == 0 and first is not None:
                engine = first.engine
            else:
                try:
                    engine = self.scheduler.pick(role, context, self.registry).engine
                except NoEngineAvailable:
                    return
                if attempt > 0:
                    self.metrics.retries.labels(role).inc()
                    await asyncio.sleep(self.retries.backoff_s * 2 ** (attempt - 1))
            if previous is not None:
                self.scheduler.retried(context, previous, engine)
            previous = engine
            context.excluded.add(engine.url)
            yield engine
