"""``wait``: poll the status checks until every part is ready, something fails for good, or the time is up.

Quiet: it prints what it waits for once, then one line per check whose state or summary changed, never a line per
poll. Resumable: it keeps no state of its own, so running it again picks up from whatever AWS reports now.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from infra.operations.status import Check, EnvironmentStatus, verdict

_DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")


def parse_duration(text: str) -> float:
    """Seconds in ``45m``, ``1h30m``, ``90s`` or ``2h``; raises ValueError with what would be valid."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None or not any(match.groupdict().values()):
        raise ValueError(f"{text!r} is not a duration; write it like 45m, 1h30m or 90s")
    seconds = int(match["h"] or 0) * 3600 + int(match["m"] or 0) * 60 + int(match["s"] or 0)
    if seconds <= 0:
        raise ValueError(f"{text!r}: the duration must be longer than zero")
    return float(seconds)


def format_duration(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _now() -> float:
    return time.monotonic()


def _pause(seconds: float) -> None:
    time.sleep(seconds)


@dataclass
class Waiter:
    """Polls ``observe`` every ``interval`` seconds for at most ``timeout`` seconds. Returns the exit code."""

    observe: Callable[[], EnvironmentStatus]
    timeout: float
    interval: float
    out: TextIO
    clock: Callable[[], float] = field(default_factory=lambda: _now)
    sleep: Callable[[float], None] = field(default_factory=lambda: _pause)
    _seen: dict[str, tuple[str, str]] = field(default_factory=dict)

    def run(self) -> int:
        start = self.clock()
        deadline = start + self.timeout
        first = True
        # Bounded: the clock must move, and every pass sleeps at least the interval (or up to the deadline).
        max_polls = int(self.timeout / max(self.interval, 1e-3)) + 2
        status: EnvironmentStatus | None = None
        for _ in range(max_polls):
            status = self.observe()
            elapsed = format_duration(self.clock() - start)
            if first:
                self._say_what_we_wait_for(status)
                first = False
            self._report_changes(status, elapsed)
            if status.ready:
                self._print(f"[{elapsed}] {verdict(status)}")
                return 0
            failed = [c for c in status.checks if c.state == "failed"]
            if failed:
                self._print(
                    f"[{elapsed}] stopped waiting: "
                    + "; ".join(f"{c.key} {c.summary}" for c in failed)
                    + " — this will not become ready by itself"
                )
                return 1
            remaining = deadline - self.clock()
            if remaining <= 0:
                break
            self.sleep(min(self.interval, remaining))
        assert status is not None
        waiting = ", ".join(c.key for c in status.not_ready)
        self._print(
            f"timed out after {format_duration(self.timeout)}; still waiting for: {waiting}. "
            "Run the same command again to keep waiting from here."
        )
        return 1

    def _say_what_we_wait_for(self, status: EnvironmentStatus) -> None:
        pending = status.not_ready
        self._print(
            f"waiting up to {format_duration(self.timeout)} for {status.deployment} in {status.region} "
            f"(checking every {format_duration(self.interval)}); "
            + (f"not ready yet: {', '.join(c.key for c in pending)}" if pending else "everything already reports ready")
        )
        for note in status.notes:
            self._print(f"note: {note}")

    def _report_changes(self, status: EnvironmentStatus, elapsed: str) -> None:
        for check in status.checks:
            now = (check.state, check.summary)
            if self._seen.get(check.key) != now:
                if check.key in self._seen or check.state != "ready":
                    self._print(f"[{elapsed}] {self._line(check)}")
                self._seen[check.key] = now

    @staticmethod
    def _line(check: Check) -> str:
        problems = f" — {'; '.join(check.problems)}" if check.problems else ""
        return f"{check.key}: {check.state} ({check.summary}){problems}"

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)
