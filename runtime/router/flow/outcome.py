"""The record of one request's way through the engines: what the flow returns, and what its observers read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

from runtime.roles import Role
from runtime.router.engines.engine import Engine
from runtime.router.scheduling.context import RoutingPlan, Served

LegResult = Literal["ok", "client_error", "failed", "pull_failed", "aborted"]
"""How one attempt of a leg ended: ``ok`` (answered; a broken stream is the outcome's ``stream_broken``),
``client_error`` (the engine answered 4xx: the client's error, the engine is fine), ``failed`` (``kind`` says how;
another engine may try), ``pull_failed`` (decode is alive but could not pull the prefilled KV: it serves the request
decode-only, at once), ``aborted`` (the client left, or the router is stopping)."""


@dataclass(eq=False)
class Leg:
    """One attempt of one leg on one engine."""

    role: Role
    engine: Engine
    started: float
    pulling: bool = False
    """A decode attempt that carries prefill's pull params."""
    result: LegResult = "aborted"
    kind: str = ""
    """The failure's name for metrics (``failed``, ``pull_failed``), e.g. connect_timeout, http_503, pull_failed."""
    detail: str = ""

    def failed(self, kind: str, detail: str) -> str:
        """Marks the attempt failed; returns its one-line account for the request's last-failure log."""
        self.result, self.kind, self.detail = "failed", kind, detail
        return f"{self.engine.name}: {kind}: {detail[:300]}"


@dataclass(eq=False)
class Outcome:
    """One per request: the plan, the engines that really served it, when its prompt was computed and its first byte
    sent, and how it ended. The flow fills it in; ``serve`` returns it."""

    request_id: str
    endpoint: str
    started: float
    plan: RoutingPlan | None = None
    decision: str = "decode_only"
    reason: str = ""
    """Why this decision (the plan's reason, or prefill_failed when every prefill attempt failed)."""
    uncached_tokens: int = 0
    prefill: Engine | None = None
    decode: Engine | None = None
    prompt_computed: bool = False
    first_byte: float | None = None
    stream_broken: bool = False
    gaps: list[float] = field(default_factory=list)
    """The gaps between streamed chunks relayed to the client (observed once the request ends, off the hot loop)."""
    response: web.StreamResponse | None = None

    @property
    def result(self) -> str:
        """The ``outcome`` of pdstack_router_requests_total for an answered request."""
        if self.stream_broken:
            return "stream_broken"
        status = 0 if self.response is None else self.response.status
        return "ok" if status < 400 else f"engine_{status}"

    def served(self) -> Served | None:
        """What the scheduler's learning reads: set only when an answer was sent."""
        if self.response is None or self.decode is None:
            return None
        return Served(decode=self.decode, prefill=self.prefill, status=self.response.status)
