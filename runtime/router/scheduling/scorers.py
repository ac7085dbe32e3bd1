"""Scorers: each gives every candidate a score in [0, 1]; the scheduler weighs and sums them."""

from __future__ import annotations

import hashlib
from typing import Protocol

from runtime.router.engines.engine import Engine
from runtime.router.scheduling.context import SchedulingContext


class Scorer(Protocol):
    name: str

    def score(self, context: SchedulingContext, engines: list[Engine]) -> dict[Engine, float]: ...


class PrefixScorer:
    """The share of the prompt's full blocks the engine holds (or is being sent by requests in flight), as one
    unbroken leading run."""

    name = "prefix"

    def score(self, context: SchedulingContext, engines: list[Engine]) -> dict[Engine, float]:
        total = len(context.blocks.keys)
        if total == 0:
            return dict.fromkeys(engines, 0.0)
        return {engine: context.expected_blocks(engine) / total for engine in engines}


class LoadScorer:
    """Lower load scores higher: 1 / (1 + queue), the queue being the router's requests in flight on the engine (exact
    and current) and the engine's waiting requests.

    KV cache fullness is no part of it (the saturation filter drops an engine whose cache is full). It was once half
    the score (0.5 (1 - kv) next to 0.5 / (1 + queue)), read from metrics scraped every few seconds: a stale reading
    of one finished long prompt then outweighed a request really in flight, and its continuous value broke every tie
    between equal queues, so the picker's round-robin order among them never applied."""

    name = "load"

    def score(self, context: SchedulingContext, engines: list[Engine]) -> dict[Engine, float]:
        return {engine: 1.0 / (1.0 + engine.in_flight + engine.waiting) for engine in engines}


class SessionAffinityScorer:
    """1 for the session's engine, 0 for the others (a header names the session).

    The session's engine is the rendezvous-hash winner among the candidates: the engine whose stable hash of
    (session, engine URL) is highest. Every router replica computes the same winner from the same engines, with no
    shared state and nothing the client must echo back (llm-d's alternative, a router-issued session token, needs
    the client to return it; the OpenAI SDK and benchmark clients send a session header, never a token). When an
    engine leaves, only its own sessions move; when one joins, it takes about 1/N of them."""

    name = "session"

    def score(self, context: SchedulingContext, engines: list[Engine]) -> dict[Engine, float]:
        if not context.session or not engines:
            return dict.fromkeys(engines, 0.0)
        session = context.session.encode()
        winner = max(engines, key=lambda engine: _rendezvous(session, engine.url))
        return {engine: 1.0 if engine is winner else 0.0 for engine in engines}


def _rendezvous(session: bytes, url: str) -> bytes:
    return hashlib.blake2b(session + b"\x00" + url.encode(), digest_size=8).digest()
