"""The shape every discovery source has."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from runtime.roles import Role
from runtime.router.engines.engine import EngineSpec

OnEngines = Callable[[list[EngineSpec]], None]
KvEventsEndpoint = Callable[[str, Role], "str | None"]
"""(engine IP, role) -> its KV-events ZMQ endpoint, or None when events are off."""


class DiscoverySource(Protocol):
    async def run(self, on_engines: OnEngines) -> None:
        """Report the engines, then keep reporting changes until cancelled."""
