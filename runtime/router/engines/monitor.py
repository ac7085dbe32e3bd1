"""The probes that keep the registry's view of the engines fresh: /health (the registry applies hysteresis), the
load numbers from /metrics, the models from /v1/models, and the block-size check against configuration. The
registry runs them in rounds as its own tasks."""

from __future__ import annotations

import asyncio

import aiohttp

from runtime.json_log import EventLog
from runtime.router.engines.engine import Engine
from runtime.router.engines.load_metrics import read_engine_load
from runtime.router.engines.registry import EngineRegistry

log = EventLog("runtime.router.engines")
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=3.0)


class EngineMonitor:
    def __init__(self, registry: EngineRegistry, session: aiohttp.ClientSession, block_size: int) -> None:
        self.registry = registry
        self.session = session
        self.block_size = block_size

    def start(self, health_interval_s: float, metrics_interval_s: float) -> None:
        self.registry.every(health_interval_s, self.check_health)
        self.registry.every(metrics_interval_s, self.scrape_load)

    async def check_health(self) -> None:
        await asyncio.gather(*(self.check_engine(engine) for engine in self.registry))

    async def check_engine(self, engine: Engine) -> None:
        passed = await self._ok(engine.url + "/health")
        self.registry.health_result(engine, passed)
        if passed:
            await self._refresh_models(engine)

    async def scrape_load(self) -> None:
        await asyncio.gather(*(self._scrape(engine) for engine in self.registry if engine.healthy))

    async def _scrape(self, engine: Engine) -> None:
        try:
            async with self.session.get(engine.url + "/metrics", timeout=PROBE_TIMEOUT) as response:
                if response.status != 200:
                    return
                load = read_engine_load(await response.read())
        except (aiohttp.ClientError, TimeoutError, OSError):
            return
        self.registry.load_result(engine, load)
        if (
            load.block_size is not None
            and load.block_size != self.block_size
            and self.registry.block_size_mismatch(engine)
        ):
            log.error(
                "block_size_mismatch",
                engine=engine.name,
                engine_block_size=load.block_size,
                configured=self.block_size,
                fix="set serving.model.block_size to the engines' --block-size",
                effect="the engine gets no prefix credit until the sizes agree",
            )

    async def _refresh_models(self, engine: Engine) -> None:
        try:
            async with self.session.get(engine.url + "/v1/models", timeout=PROBE_TIMEOUT) as response:
                if response.status == 200:
                    document = await response.json()
                    self.registry.models_result(engine, document.get("data") or [])
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError, AttributeError):
            return

    async def _ok(self, url: str) -> bool:
        try:
            async with self.session.get(url, timeout=PROBE_TIMEOUT) as response:
                await response.read()
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False
