"""Admission control: a bounded, per-priority queue in front of the P/D flow.

A request enters service at once while the decode engines have room; when every usable decode engine (healthy, its
breaker not open: what the scheduler may pick) is saturated (the scheduler's own saturation test) or this router
already has as many requests in service as the unsaturated engines take (each its learned in-flight limit,
runtime/router/engines/capacity.py, so a burst waits here and not in the engines' own queues), it waits. Waiters are
served interactive first, each class in arrival order, as capacity frees (a request ends, or the engines' scraped load
falls). Past the bound it is answered 429 with Retry-After in OpenAI's error shape, never a 5xx: ``queue_full`` when
``max_queued`` wait already (an interactive arrival first sheds the youngest batch waiter), ``wait_timeout`` when it
waited its class's longest wait. Decode gates admission because every request needs a decode engine; prefill is optional
(the flow falls back to decode-only).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from aiohttp import web

from runtime.roles import DECODE
from runtime.router.config import Admission as AdmissionConfig
from runtime.router.config import Saturation
from runtime.router.engines.capacity import in_flight_limit
from runtime.router.engines.registry import EngineRegistry
from runtime.router.requests.api_error import ApiError
from runtime.router.router_metrics import RouterMetrics
from runtime.router.scheduling.filters import NotSaturatedFilter

Priority = Literal["interactive", "batch"]
PRIORITIES: tuple[Priority, ...] = get_args(Priority)
RejectionReason = Literal["queue_full", "wait_timeout"]
REJECTION_HEADER = "X-Pdstack-Rejected"
RECHECK_S = 0.05
"""While requests wait, how often the engines' load is looked at again (it changes with each scrape)."""


class Overloaded(ApiError):
    """429 in OpenAI's error shape, with Retry-After (the SDKs wait that long, then retry) and the reason."""

    def __init__(self, priority: Priority, reason: RejectionReason, retry_after_s: int) -> None:
        why = "the queue is full" if reason == "queue_full" else "it waited the longest a request of its class may"
        super().__init__(
            429, f"every engine is saturated and {why} ({priority} request); retry after {retry_after_s} s", code=reason
        )
        self.priority = priority
        self.reason = reason
        self.retry_after_s = retry_after_s

    def response(self, request_id: str | None = None) -> web.Response:
        response = super().response(request_id)
        response.headers["Retry-After"] = str(self.retry_after_s)
        response.headers[REJECTION_HEADER] = self.reason
        return response


@dataclass(eq=False)
class _Waiter:
    priority: Priority
    queued_at: float = field(default_factory=time.monotonic)
    grant: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class AdmissionQueue:
    def __init__(
        self, config: AdmissionConfig, saturation: Saturation, registry: EngineRegistry, metrics: RouterMetrics
    ) -> None:
        self.config = config
        self.saturation = saturation
        self.saturated = NotSaturatedFilter(saturation).saturated
        self.registry = registry
        self.metrics = metrics
        self.waiting: dict[Priority, deque[_Waiter]] = {priority: deque() for priority in PRIORITIES}
        self.in_service = 0
        self._recheck: asyncio.Task[None] | None = None
        for priority in PRIORITIES:
            metrics.admission_queue_depth.labels(priority).set_function(self.waiting[priority].__len__)
            for reason in get_args(RejectionReason):  # at zero from the start, so rate() sees the first rejections
                metrics.admission_rejections.labels(priority, reason)

    def priority_of(self, headers: Mapping[str, str]) -> Priority:
        given = headers.get(self.config.priority_header)
        if given is None:
            return self.config.default_priority
        value = given.strip().lower()
        if value not in PRIORITIES:
            raise ApiError(
                400,
                f"header {self.config.priority_header}={given!r} is not a priority; valid: {', '.join(PRIORITIES)}",
                param=self.config.priority_header,
                code="invalid_priority",
            )
        return value

    @property
    def queued(self) -> int:
        return sum(len(queue) for queue in self.waiting.values())

    def has_capacity(self) -> bool:
        """Fewer requests in service than the available, unsaturated decode engines have slots. Stops at the first
        engine that makes room (every request asks: walking all of a large cluster each time is wasted)."""
        slots, any_available = 0, False
        now = time.monotonic()
        for engine in self.registry.by_role(DECODE):
            if not engine.available(now):
                continue
            any_available = True
            if not self.saturated(engine):
                slots += in_flight_limit(engine, self.saturation.max_in_flight)
                if self.in_service < slots:
                    return True
        return not any_available  # no engine at all is not an overload: the flow answers 503 no_engine_available

    @contextlib.asynccontextmanager
    async def admitted(self, priority: Priority) -> AsyncIterator[None]:
        """Hold a place in service for the body of the ``async with``; raise :class:`Overloaded` past the bound."""
        if not self.config.enabled:
            yield
            return
        await self._enter(priority)
        try:
            yield
        finally:
            self.in_service -= 1
            self._dispatch()

    async def _enter(self, priority: Priority) -> None:
        if not self.queued and self.has_capacity():
            self.in_service += 1
            self.metrics.admission_wait.labels(priority).observe(0.0)
            return
        if self.queued >= self.config.max_queued:
            shed = self.waiting["batch"] if priority == "interactive" else None
            if not shed:
                raise self._reject(priority, "queue_full")
            self._refuse(shed.pop(), "queue_full")  # the youngest batch waiter makes room
        waiter = _Waiter(priority)
        self.waiting[priority].append(waiter)
        self._dispatch()
        longest = self.config.interactive_max_wait_s if priority == "interactive" else self.config.batch_max_wait_s
        try:
            await asyncio.wait_for(asyncio.shield(waiter.grant), longest - (time.monotonic() - waiter.queued_at))
        except TimeoutError:
            if waiter.grant.done() and waiter.grant.exception() is None:
                return  # granted in the same instant: keep the place
            self._leave(waiter)
            if waiter.grant.done():
                raise waiter.grant.exception() from None  # type: ignore[misc]
            raise self._reject(priority, "wait_timeout") from None
        except asyncio.CancelledError:  # the client left while waiting
            if waiter.grant.done() and waiter.grant.exception() is None:
                self.in_service -= 1
                self._dispatch()
            self._leave(waiter)
            raise

    def _dispatch(self) -> None:
        """Grant waiters, interactive first, while there is room; keep looking while anyone waits."""
        while self.queued and self.has_capacity():
            queue = self.waiting["interactive"] or self.waiting["batch"]
            waiter = queue.popleft()
            self.in_service += 1
            self.metrics.admission_wait.labels(waiter.priority).observe(time.monotonic() - waiter.queued_at)
            waiter.grant.set_result(None)
        if self.queued and (self._recheck is None or self._recheck.done()):
            self._recheck = asyncio.get_running_loop().create_task(self._recheck_while_waiting())

    async def _recheck_while_waiting(self) -> None:
        while self.queued:
            await asyncio.sleep(RECHECK_S)
            self._dispatch()

    def _leave(self, waiter: _Waiter) -> None:
        with contextlib.suppress(ValueError):
            self.waiting[waiter.priority].remove(waiter)

    def _refuse(self, waiter: _Waiter, reason: RejectionReason) -> None:
        waiter.grant.set_exception(self._reject(waiter.priority, reason))

    def _reject(self, priority: Priority, reason: RejectionReason) -> Overloaded:
        self.metrics.admission_rejections.labels(priority, reason).inc()
        return Overloaded(priority, reason, self.config.retry_after_s)

    async def stop(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recheck
