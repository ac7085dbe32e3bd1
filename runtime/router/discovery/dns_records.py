"""Engines as the A records of one headless Service per role, resolved on an interval (the resolver runs in
asyncio's thread pool, never on the event loop).

A lookup that fails (a resolver blip, a timeout, no answer) keeps that role's last good answer: the engines, their
breakers and their prefix-index entries stay, and the failure is logged and counted
(``pdstack_router_discovery_failures_total{source="dns"}``). Engines that really left are dropped by the next good
answer; until then their health checks take them out of the schedule."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from runtime.json_log import EventLog
from runtime.roles import Role
from runtime.router.config import DnsDiscovery
from runtime.router.discovery.source import KvEventsEndpoint, OnEngines
from runtime.router.engines.engine import EngineSpec
from runtime.router.router_metrics import RouterMetrics

log = EventLog("runtime.router.discovery")
SOURCE = "dns"
LOOKUP_TIMEOUT_S = 5.0


async def resolve_a_records(name: str) -> list[str]:
    """A name -> its IPv4 addresses (raises OSError when the lookup fails)."""
    infos: list[Any] = await asyncio.get_running_loop().getaddrinfo(
        name, None, family=socket.AF_INET, type=socket.SOCK_STREAM
    )
    return [info[4][0] for info in infos]


class DnsRecordsDiscovery:
    def __init__(
        self,
        config: DnsDiscovery,
        ports: dict[Role, int],
        kv_events: KvEventsEndpoint,
        metrics: RouterMetrics | None = None,
    ) -> None:
        configured: dict[Role, str | None] = {"prefill": config.prefill, "decode": config.decode}
        self.names: dict[Role, str] = {role: name for role, name in configured.items() if name}
        self.ports = ports
        self.kv_events = kv_events
        self.interval_s = config.interval_s
        self.metrics = metrics
        self.last_good: dict[Role, list[EngineSpec]] = {}

    async def resolve(self) -> list[EngineSpec]:
        specs: list[EngineSpec] = []
        for role, name in self.names.items():
            try:
                async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                    addresses = await resolve_a_records(name)
                if not addresses:
                    raise OSError("no A record")
            except (OSError, TimeoutError) as error:
                kept = self.last_good.get(role, [])
                if self.metrics is not None:
                    self.metrics.discovery_failures.labels(SOURCE, "lookup").inc()
                log.warning(
                    "dns_lookup_failed",
                    name=name,
                    reason=repr(error)[:200],
                    kept_engines=len(kept),
                    effect="the last good answer stays" if kept else "no engine of this role yet",
                )
                specs.extend(kept)
                continue
            found = [
                EngineSpec(
                    url=f"http://{address}:{self.ports[role]}", role=role, kv_events=self.kv_events(address, role)
                )
                for address in sorted(set(addresses))
            ]
            self.last_good[role] = found
            specs.extend(found)
        return specs

    async def run(self, on_engines: OnEngines) -> None:
        last: list[EngineSpec] | None = None
        while True:
            specs = await self.resolve()
            if specs != last:
                on_engines(specs)
                last = specs
            await asyncio.sleep(self.interval_s)
