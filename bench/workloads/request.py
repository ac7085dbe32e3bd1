"""One request of a workload: when it is sent (seconds after the start), to which endpoint, with which body."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class BenchRequest:
    at_s: float
    endpoint: Literal["completions", "chat"]
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return "/v1/completions" if self.endpoint == "completions" else "/v1/chat/completions"
