"""What a router under test is pointed at: the engines' URLs and KV-event endpoints, the tokenizer, the block size."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EngineAddress:
    name: str
    role: str
    url: str
    kv_events: str


@dataclass(frozen=True)
class Topology:
    engines: list[EngineAddress]
    tokenizer: Path
    block_size: int
    model: str = "tiny"

    def role(self, role: str) -> list[EngineAddress]:
        return [engine for engine in self.engines if engine.role == role]
