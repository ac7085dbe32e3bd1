"""Every engine the router knows, and everything per engine: health with hysteresis, circuit breaker, load,
in-flight requests, models, block size, KV-event subscription, all in the engine's one record, which only the
registry writes. Discovery replaces the set; the registry tells its listeners (prefix index, pair health, scheduling
plugins) when an engine comes, goes or restarts, logs every ejection and restoration, and owns the tasks that keep
the state fresh (health and metrics rounds, one KV-event subscriber per engine)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, Protocol

from runtime.json_log import EventLog
from runtime.roles import DECODE, Role
from runtime.router.config import RouterConfig
from runtime.router.engines.breaker import STATE_VALUES, CircuitBreaker
from runtime.router.engines.capacity import forget_capacity, learn_capacity
from runtime.router.engines.engine import Engine, EngineSpec, Subscription
from runtime.router.engines.load_metrics import EngineLoad
from runtime.router.router_metrics import RouterMetrics

log = EventLog("runtime.router.engines")


class EngineListener(Protocol):
    def engine_added(self, engine: Engine) -> None: ...

    def engine_removed(self, engine: Engine) -> None: ...

    def engine_reset(self, engine: Engine) -> None:
        """The engine restarted or came back from an ejection: nothing it held before can be trusted."""


Subscribe = Callable[[Engine], "Subscription | None"]


class EngineRegistry:
    def __init__(self, config: RouterConfig, metrics: RouterMetrics, subscribe: Subscribe | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.subscribe = subscribe
        self.listeners: list[EngineListener] = []
        self._engines: dict[str, Engine] = {}
        """Every engine by URL: the one per-engine table (an engine's state is its record's fields)."""
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- the set of engines

    def __iter__(self) -> Iterator[Engine]:
        return iter(list(self._engines.values()))

    def __len__(self) -> int:
        return len(self._engines)

    def get(self, url: str) -> Engine | None:
        return self._engines.get(url)

    def by_role(self, role: Role) -> list[Engine]:
        return [engine for engine in self._engines.values() if engine.role == role]

    def ready(self) -> bool:
        return any(engine.healthy for engine in self.by_role(DECODE))

    def new_engine(self, spec: EngineSpec) -> Engine:
        breaker = self.config.breaker
        return Engine(
            url=spec.url,
            role=spec.role,
            kv_events=spec.kv_events,
            breaker=CircuitBreaker(breaker.failures, breaker.successes, breaker.open_s, breaker.window_s),
        )

    def replace(self, specs: Iterable[EngineSpec]) -> tuple[list[Engine], list[Engine]]:
        """Make the set exactly ``specs`` (state of engines that stay is kept); return (added, removed)."""
        wanted = {spec.url: spec for spec in specs}
        removed = [
            engine for url, engine in self._engines.items() if url not in wanted or wanted[url].role != engine.role
        ]
        for engine in removed:
            del self._engines[engine.url]
            self._unsubscribe(engine)
        added = []
        for url, spec in wanted.items():
            current = self._engines.get(url)
            if current is None:
                engine = self._engines[url] = self.new_engine(spec)
                added.append(engine)
            elif current.kv_events != spec.kv_events:
                self._unsubscribe(current)
                current.kv_events = spec.kv_events
                self._subscribe(current)
        for engine in removed:
            self.metrics.discovery_changes.labels(engine.role, "removed").inc()
            self._unpublish_state(engine)
            for listener in self.listeners:
                listener.engine_removed(engine)
        for engine in added:
            self.metrics.discovery_changes.labels(engine.role, "added").inc()
            self._publish_state(engine)
            self._subscribe(engine)
            for listener in self.listeners:
                listener.engine_added(engine)
        if added or removed:
            log.info(
                "engines_changed",
                engines=[f"{e.role}:{e.name}" for e in self],
                added=[e.name for e in added],
                removed=[e.name for e in removed],
            )
        return added, removed

    # -- the router's own requests on each engine

    def started(self, engine: Engine) -> None:
        """One request (one leg's attempt) sent to ``engine``: the load scorer and the saturation filter count it."""
        engine.in_flight += 1

    def ended(self, engine: Engine) -> None:
        engine.in_flight -= 1

    # -- what the engines' answers and probes say

    def _known(self, engine: Engine) -> bool:
        return self._engines.get(engine.url) is engine

    def record(self, engine: Engine, success: bool) -> None:
        """One request's outcome on ``engine`` (a client error is a success: the engine answered). A failure while
        the engine's health probes fail is not counted: it is draining or down (readiness down, its last requests
        finishing), which health checks handle; a breaker opened then would outlast the engine's return."""
        if not success and not engine.probes_pass:
            return
        changed = engine.breaker.record(success, time.monotonic())
        if changed is not None:
            self._breaker_changed(engine, changed, "breaker_open")

    def eject(self, engine: Engine, reason: str) -> None:
        """Out of the schedule now (a timeout: every further request would wait it out too)."""
        if engine.breaker.state == "open":
            return
        engine.breaker.trip(time.monotonic())
        self._breaker_changed(engine, "open", reason)

    def health_result(self, engine: Engine, passed: bool) -> None:
        """A /health probe's result, with hysteresis: ``health.failures`` in a row eject, ``health.successes``
        restore (one dropped probe no longer costs an engine its traffic)."""
        if not self._known(engine):
            return  # a probe that outlived its engine's stay in discovery
        if passed == engine.healthy:
            engine.health_streak = 0
            return
        engine.health_streak += 1
        needed = self.config.health.successes if passed else self.config.health.failures
        if engine.health_streak < needed:
            return
        engine.healthy, engine.health_streak = passed, 0
        self.metrics.engine_healthy.labels(engine.name, engine.role).set(1 if passed else 0)
        if passed:
            self.metrics.restorations.labels(engine.name, engine.role).inc()
            log.info("engine_restored", engine=engine.name, role=engine.role, by="health", probes=needed)
            self.reset(engine, "restored after failed health checks")
        else:
            self.metrics.ejections.labels(engine.name, engine.role, "health_failed").inc()
            log.warning("engine_ejected", engine=engine.name, role=engine.role, reason="health_failed", probes=needed)

    def models_result(self, engine: Engine, models: list[Any]) -> None:
        """What the engine's /v1/models listed (entries without an ``id`` are dropped)."""
        if self._known(engine):
            engine.models = [model for model in models if isinstance(model, dict) and "id" in model]

    def block_size_mismatch(self, engine: Engine) -> bool:
        """True the first time an engine's block size is found to disagree with the configuration (log it then)."""
        first = not engine.block_size_mismatch_logged
        engine.block_size_mismatch_logged = True
        return first

    def load_result(self, engine: Engine, load: EngineLoad) -> None:
        if not self._known(engine):
            return
        learn_capacity(engine, load.running, load.waiting)
        if load.waiting is not None:  # None: no finite reading this round, keep the last one
            engine.waiting = load.waiting
        if load.kv_usage is not None:
            engine.kv_usage = load.kv_usage
        if load.block_size is not None:
            engine.block_size = load.block_size
        if load.started_at is not None:
            if engine.started_at is not None and load.started_at != engine.started_at:
                self.reset(engine, "the engine process restarted")
            engine.started_at = load.started_at
        self.metrics.in_flight.labels(engine.name, engine.role).set(engine.in_flight)

    def reset(self, engine: Engine, why: str) -> None:
        """A new engine at the same address (its process restarted, or it came back from failed health checks):
        nothing it held before can be trusted, and nothing its predecessor failed counts against it."""
        log.info("engine_reset", engine=engine.name, role=engine.role, why=why)
        forget_capacity(engine)
        if engine.breaker.reset() != "closed":
            self._breaker_changed(engine, "closed", "new_engine")
        for listener in self.listeners:
            listener.engine_reset(engine)

    def _breaker_changed(self, engine: Engine, state: str, reason: str) -> None:
        self.metrics.breaker_state.labels(engine.name, engine.role).set(STATE_VALUES[state])  # type: ignore[index]
        if state == "open":
            self.metrics.ejections.labels(engine.name, engine.role, reason).inc()
            log.warning(
                "engine_ejected", engine=engine.name, role=engine.role, reason=reason, open_s=engine.breaker.open_s
            )
        elif state == "closed":
            self.metrics.restorations.labels(engine.name, engine.role).inc()
            log.info("engine_restored", engine=engine.name, role=engine.role, by="breaker")

    def _publish_state(self, engine: Engine) -> None:
        self.metrics.engine_healthy.labels(engine.name, engine.role).set(1 if engine.healthy else 0)
        self.metrics.breaker_state.labels(engine.name, engine.role).set(STATE_VALUES[engine.breaker.state])

    def _unpublish_state(self, engine: Engine) -> None:
        """An engine that left discovery is no longer reported (its healthy=0 would keep PdstackEngineDown firing
        until the router restarts); it comes back with its state if discovery brings it back."""
        for gauge in (self.metrics.engine_healthy, self.metrics.breaker_state, self.metrics.in_flight):
            with contextlib.suppress(KeyError):
                gauge.remove(engine.name, engine.role)

    # -- tasks

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def supervise(self, name: str, run: Callable[[], Coroutine[Any, Any, Any]], restart_s: float = 1.0) -> None:
        """Run ``run()`` as a task that is restarted (after ``restart_s``) whenever it dies of an exception, with a
        log line and a count each time: a background task never stops silently. A normal return ends it."""
        self.spawn(supervised(name, run, self.metrics, restart_s))

    def every(self, interval_s: float, step: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        async def loop() -> None:
            while True:
                try:
                    await step()
                except Exception as error:  # one bad round must not stop the rounds
                    log.error("engine_round_failed", reason=repr(error))
                await asyncio.sleep(interval_s)

        self.spawn(loop())

    def _subscribe(self, engine: Engine) -> None:
        if self.subscribe is None or not engine.kv_events:
            return
        subscription = self.subscribe(engine)
        if subscription is not None:
            engine.subscription = subscription
            subscription.start()

    def _unsubscribe(self, engine: Engine) -> None:
        subscription, engine.subscription = engine.subscription, None
        if subscription is not None:
            self.spawn(subscription.stop())

    async def stop(self) -> None:
        for engine in self:
            subscription, engine.subscription = engine.subscription, None
            if subscription is not None:
                await subscription.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def supervised(
    name: str,
    run: Callable[[], Coroutine[Any, Any, Any]],
    metrics: RouterMetrics,
    restart_s: float = 1.0,
    **fields: Any,
) -> None:
    """See :meth:`EngineRegistry.supervise` (also used by tasks the registry does not own)."""
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            metrics.task_restarts.labels(name).inc()
            log.error("task_died", task=name, restart_in_s=restart_s, exc_info=True, **fields)
        await asyncio.sleep(restart_s)
