"""One engine as the router sees it: where it is, what it does, and its state right now (health with hysteresis, a
circuit breaker, load). The :class:`~runtime.router.engines.registry.EngineRegistry` owns every engine."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from runtime.roles import Role
from runtime.router.engines.breaker import CircuitBreaker


class Subscription(Protocol):
    """An engine's KV-event subscription (runtime/router/prefix_cache/kv_event_subscriber.py)."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(eq=False)
class Engine:
    """A vLLM server, and everything the router keeps per engine: one record, owned and written by the
    :class:`~runtime.router.engines.registry.EngineRegistry` alone. ``healthy`` follows its /health with hysteresis;
    ``breaker`` follows its answers."""

    url: str
    role: Role
    kv_events: str | None = None
    healthy: bool = True
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    in_flight: int = 0
    waiting: float = 0.0
    capacity: int | None = None
    """How many requests the engine runs at a time, as learned from its gauges (None: not learned yet); see
    :func:`runtime.router.engines.capacity.learn_capacity`."""
    kv_usage: float = 0.0
    block_size: int | None = None
    started_at: float | None = None
    """The engine process's start time (its ``process_start_time_seconds``): a change means it restarted."""
    health_streak: int = 0
    """Consecutive health probes that disagree with ``healthy`` (reaching the threshold flips it)."""
    last_seen: float = field(default_factory=time.monotonic)
    models: list[dict[str, Any]] = field(default_factory=list)
    """What its /v1/models reports (the model catalog reads them across engines)."""
    subscription: Subscription | None = None
    """Its KV-event subscription, while it has one."""
    block_size_mismatch_logged: bool = False
    """Its block size disagreed with the configured one and that was logged (once per engine)."""

    @property
    def probes_pass(self) -> bool:
        """Healthy, and no failed health probe since: a draining or failing engine's errors are not its answers."""
        return self.healthy and self.health_streak == 0

    @property
    def name(self) -> str:
        return self.url.removeprefix("http://").removeprefix("https://")

    def available(self, now: float | None = None) -> bool:
        """Healthy and its breaker lets a request through (closed, or half-open after its open period)."""
        return self.healthy and self.breaker.allows(time.monotonic() if now is None else now)


@dataclass(frozen=True)
class EngineSpec:
    """What discovery reports: enough to create an engine."""

    url: str
    role: Role
    kv_events: str | None = None
