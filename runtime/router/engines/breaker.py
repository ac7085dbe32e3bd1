"""A circuit breaker per engine: open after consecutive failed requests, half-open after a pause, closed again after
consecutive successes; one failure while half-open opens it again.

The state machine and its defaults follow vllm-router's (``src/core/circuit_breaker.rs``, ``CircuitBreakerConfig::
default``: 5 failures, 2 successes, 30 s open, 60 s window; read in the iMMIQ/vllm-router-upstream mirror of
vllm-project/router, 2026-12). The window bounds a failure run: a failure more than ``window_s`` after the run's
first starts a new run, so rare failures days apart never add up to an ejection.
"""

from __future__ import annotations

from typing import Literal

BreakerState = Literal["closed", "half_open", "open"]
STATE_VALUES: dict[BreakerState, int] = {"closed": 0, "half_open": 1, "open": 2}
"""The gauge's encoding (pdstack_router_engine_breaker_state)."""


class CircuitBreaker:
    def __init__(self, failures: int = 5, successes: int = 2, open_s: float = 30.0, window_s: float = 60.0) -> None:
        self.failures_to_open = failures
        self.successes_to_close = successes
        self.open_s = open_s
        self.window_s = window_s
        self.state: BreakerState = "closed"
        self._failures = 0
        self._successes = 0
        self._run_started = 0.0
        self._opened_at = 0.0

    def allows(self, now: float) -> bool:
        if self.state == "open" and now - self._opened_at >= self.open_s:
            self.state, self._successes = "half_open", 0
        return self.state != "open"

    def record(self, success: bool, now: float) -> BreakerState | None:
        """Count one request's outcome; return the new state when it changed."""
        before = self.state
        self.allows(now)
        if success:
            self._failures = 0
            if self.state == "half_open":
                self._successes += 1
                if self._successes >= self.successes_to_close:
                    self.state = "closed"
        elif self.state == "half_open":
            self.trip(now)
        elif self.state == "closed":
            if self._failures == 0 or now - self._run_started > self.window_s:
                self._failures, self._run_started = 0, now
            self._failures += 1
            if self._failures >= self.failures_to_open:
                self.trip(now)
        return self.state if self.state != before else None

    def trip(self, now: float) -> None:
        """Open now (a request timed out: the engine is stuck, waiting for more failures costs a timeout each)."""
        self.state, self._opened_at, self._failures, self._successes = "open", now, 0, 0

    def reset(self) -> BreakerState:
        """Closed, with nothing counted (a new engine process: its predecessor's failures are not its own); return
        the state it was in."""
        before = self.state
        self.state, self._failures, self._successes = "closed", 0, 0
        return before
