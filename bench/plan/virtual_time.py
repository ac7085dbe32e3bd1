"""An asyncio event loop whose clock is virtual: when nothing is ready it jumps to the next timer instead of
sleeping, so the simulated engines (bench/fake_engine/simulator.py, written against ``loop.time()`` and
``asyncio.sleep``) run a minute of modelled traffic in the CPU time their bookkeeping takes. Only for code that does
no I/O: a coroutine waiting on a socket would wait forever (the loop raises instead of blocking)."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _JumpingSelector(selectors.SelectSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready:
            return ready
        if timeout is None:
            raise RuntimeError(
                "virtual time: nothing scheduled and nothing ready (a coroutine waits on I/O or on "
                "an event nobody sets)"
            )
        self._loop.now += max(0.0, timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self.now


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a fresh virtual-time loop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()
