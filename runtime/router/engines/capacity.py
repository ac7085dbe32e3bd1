"""How many requests to send one engine at a time: what it runs at once, learned from its gauges, plus as many again.

An engine with requests waiting (``vllm:num_requests_waiting`` > 0) is full: the number it runs
(``vllm:num_requests_running``) is its capacity (its max_num_seqs, or what its KV cache holds). The router then keeps
at most twice that in flight there (its own count): the engine stays busy (a request ends, the next is already in its
queue) while a burst waits in the router's admission queue, where priorities and deadlines apply, instead of in the
engine's queue, where they do not. The allowance also lets the estimate grow: an engine that runs more than it was
credited with (a snapshot taken between two scheduler steps reads low) raises its capacity to what it ran, so the
limit doubles until it no longer binds. An engine that restarts is learned again; one that never reports its running
count is limited by ``saturation.max_in_flight`` only.

The limits bound admission (runtime/router/admission.py: the router's requests in service against the sum of the
usable engines' limits), not the scheduler's choice among engines: steering a request away from the engine that
holds its prefix because that engine has a short queue would cost locality (one bench-quick run with the limit
also filtering engines had lower engine hit rates on bursty and shared_prefix).
"""

from __future__ import annotations

from runtime.router.engines.engine import Engine

MIN_ALLOWANCE = 4
"""At least this many in flight beyond the capacity (small engines: room for the estimate to grow)."""


def learn_capacity(engine: Engine, running: float | None, waiting: float | None) -> None:
    if running is None:
        return
    ran = int(running)
    if ran < 1:
        return
    if (waiting is not None and waiting > 0 and engine.capacity is None) or (
        engine.capacity is not None and ran > engine.capacity
    ):
        engine.capacity = ran


def in_flight_limit(engine: Engine, max_in_flight: int) -> int:
    """The most requests this router sends ``engine`` at a time."""
    if engine.capacity is None:
        return max_in_flight
    return min(max_in_flight, max(2 * engine.capacity, engine.capacity + MIN_ALLOWANCE))


def forget_capacity(engine: Engine) -> None:
    """A new process: it is learned again."""
    engine.capacity = None
