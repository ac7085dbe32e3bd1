"""Engines listed in configuration."""

from __future__ import annotations

from runtime.router.config import StaticEngine
from runtime.router.discovery.source import OnEngines
from runtime.router.engines.engine import EngineSpec


class StaticDiscovery:
    def __init__(self, engines: list[StaticEngine]) -> None:
        self.specs = [EngineSpec(url=engine.url, role=engine.role, kv_events=engine.kv_events) for engine in engines]

    async def run(self, on_engines: OnEngines) -> None:
        on_engines(list(self.specs))
