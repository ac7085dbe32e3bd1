"""Keeps the engines' state fresh: health checks (a failing engine leaves the schedule, a recovered one returns),
the load numbers from their /metrics, their models, and the block-size check against configuration."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from runtime.json_log import EventLog
from runtime.router.engine import Engine, EnginePool
from runtime.router.engine_metrics import read_engine_load
from runtime.router.model_catalog import ModelCatalog
from runtime.router.router_metrics import RouterMetrics

log = EventLog("runtime.router.engines")
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=3.0)


class EngineMonitor:
    def __init__(self, pool: EnginePool, session_factory: aiohttp.ClientSession, catalog: ModelCatalog,
                 metrics: RouterMetrics, block_size: int, health_interval_s: float,
                 metrics_interval_s: float) -> None:
        self.pool = pool
        self.session = session_factory
        self.catalog = catalog
        self.metrics = metrics
        self.block_size = block_size
        self.health_interval_s = health_interval_s
        self.metrics_interval_s = metrics_interval_s
        self._tasks: list[asyncio.Task[None]] = []
        self._mismatch_logged: set[str] = set()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._every(self.health_interval_s, self.check_health)),
                       asyncio.create_task(self._every(self.metrics_interval_s, self.scrape_load))]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _every(self, interval: float, step) -> None:  # type: ignore[no-untyped-def]
        while True:
            try:
                await step()
            except Exception as error:  # one bad round must not stop the monitor
                log.error("monitor_round_failed", reason=repr(error))
            await asyncio.sleep(interval)

    async def check_health(self) -> None:
        await asyncio.gather(*(self.check_engine(engine) for engine in self.pool))

    async def check_engine(self, engine: Engine) -> None:
        healthy = await self._ok(engine.url + "/health")
        if healthy != engine.healthy:
            log.info("engine_health_changed", engine=engine.name, role=engine.role, healthy=healthy)
        engine.healthy = healthy
        self.metrics.engine_healthy.labels(engine.name, engine.role).set(1 if healthy else 0)
        if healthy:
            await self._refresh_models(engine)

    async def scrape_load(self) -> None:
        await asyncio.gather(*(self._scrape(engine) for engine in self.pool if engine.healthy))

    async def _scrape(self, engine: Engine) -> None:
        try:
            async with self.session.get(engine.url + "/metrics", timeout=PROBE_TIMEOUT) as response:
                if response.status != 200:
                    return
                load = read_engine_load(await response.read())
        except (aiohttp.ClientError, TimeoutError, OSError):
            return
        engine.waiting, engine.kv_usage = load.waiting, load.kv_usage
        self.metrics.in_flight.labels(engine.name, engine.role).set(engine.in_flight)
        if load.block_size is not None:
            engine.block_size = load.block_size
            if load.block_size != self.block_size and engine.url not in self._mismatch_logged:
                self._mismatch_logged.add(engine.url)
                log.error("block_size_mismatch", engine=engine.name, engine_block_size=load.block_size,
                          configured=self.block_size,
                          fix="set serving.model.block_size to the engines' --block-size",
                          effect="the engine gets no prefix credit until the sizes agree")

    async def _refresh_models(self, engine: Engine) -> None:
        try:
            async with self.session.get(engine.url + "/v1/models", timeout=PROBE_TIMEOUT) as response:
                if response.status == 200:
                    document = await response.json()
                    self.catalog.update(engine.url, document.get("data") or [])
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError, AttributeError):
            return

    async def _ok(self, url: str) -> bool:
        try:
            async with self.session.get(url, timeout=PROBE_TIMEOUT) as response:
                await response.read()
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False
