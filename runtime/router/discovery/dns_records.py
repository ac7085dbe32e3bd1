"""Engines as the A records of one headless Service per role, resolved on an interval (the resolver runs in
asyncio's thread pool, never on the event loop)."""

from __future__ import annotations

import asyncio
import socket

from runtime.json_log import EventLog
from runtime.router.config import DnsDiscovery
from runtime.router.discovery.source import KvEventsEndpoint, OnEngines
from runtime.router.engine import EngineSpec, Role

log = EventLog("runtime.router.discovery")



class DnsRecordsDiscovery:
    def __init__(self, config: DnsDiscovery, ports: dict[Role, int], kv_events: KvEventsEndpoint) -> None:
        self.names: dict[Role, str] = {role: name for role, name in (("prefill", config.prefill),
                                                                      ("decode", config.decode)) if name}
        self.ports = ports
        self.kv_events = kv_events
        self.interval_s = config.interval_s

    async def resolve(self) -> list[EngineSpec]:
        loop = asyncio.get_running_loop()
        specs: list[EngineSpec] = []
        for role, name in self.names.items():
            try:
                infos = await loop.getaddrinfo(name, None, family=socket.AF_INET, type=socket.SOCK_STREAM)
            except socket.gaierror as error:
                log.warning("dns_lookup_failed", name=name, reason=str(error))
                continue
            for address in sorted({info[4][0] for info in infos}):
                specs.append(EngineSpec(url=f"http://{address}:{self.ports[role]}", role=role,
                                        kv_events=self.kv_events(address, role)))
        return specs

    async def run(self, on_engines: OnEngines) -> None:
        last: list[EngineSpec] | None = None
        while True:
            specs = await self.resolve()
            if specs != last:
                on_engines(specs)
                last = specs
            await asyncio.sleep(self.interval_s)
