"""One engine as the router sees it, and the pool of all of them."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["prefill", "decode"]


@dataclass(eq=False)
class Engine:
    """A vLLM server: where it is, what it does, and what the router knows of its state right now."""

    url: str
    role: Role
    kv_events: str | None = None
    healthy: bool = True
    in_flight: int = 0
    waiting: float = 0.0
    kv_usage: float = 0.0
    block_size: int | None = None
    last_seen: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return self.url.removeprefix("http://").removeprefix("https://")


@dataclass(frozen=True)
class EngineSpec:
    """What discovery reports: enough to create an engine."""

    url: str
    role: Role
    kv_events: str | None = None


class EnginePool:
    """Every known engine by URL. Discovery replaces the set; state of engines that stay is kept."""

    def __init__(self) -> None:
        self._engines: dict[str, Engine] = {}

    def __iter__(self) -> Iterator[Engine]:
        return iter(list(self._engines.values()))

    def __len__(self) -> int:
        return len(self._engines)

    def get(self, url: str) -> Engine | None:
        return self._engines.get(url)

    def by_role(self, role: Role) -> list[Engine]:
        return [engine for engine in self._engines.values() if engine.role == role]

    def replace(self, specs: Iterable[EngineSpec]) -> tuple[list[Engine], list[Engine]]:
        """Make the pool exactly ``specs``; return (added, removed)."""
        wanted = {spec.url: spec for spec in specs}
        removed = [engine for url, engine in self._engines.items() if url not in wanted]
        for engine in removed:
            del self._engines[engine.url]
        added = []
        for url, spec in wanted.items():
            current = self._engines.get(url)
            if current is None or current.role != spec.role:
                engine = Engine(url=url, role=spec.role, kv_events=spec.kv_events)
                self._engines[url] = engine
                added.append(engine)
            elif current.kv_events != spec.kv_events:
                current.kv_events = spec.kv_events
        return added, removed

    def ready(self) -> bool:
        return any(engine.healthy for engine in self.by_role("decode"))
