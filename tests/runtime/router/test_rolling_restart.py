"""A rolling restart of every engine of a role, one at a time, under streaming load, fails no request (issue 20,
item 1). The router runs as a process with its default breaker (5 failures open it for 30 s); each engine is
restarted the way a Deployment rollout restarts a pod at the same address: readiness down, it stops listening and
lets its streams in flight finish (its drain), it is gone a moment, a new process (new start time) comes up, and the
rollout moves on once the new one has been ready a little while (minReadySeconds)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from testbed.fault_engine import FaultEngine, Faults
from tests.runtime.router.router_process_cluster import ProcessCluster, router_process  # noqa: F401 - fixture

PROMPT = "def rollout(pods):\n    return [restart(pod) for pod in pods]\n" * 12
STREAM = {"model": "tiny", "prompt": PROMPT, "max_tokens": 4, "stream": True}
SLOW = Faults(chunk_delay_s=0.05)
"""Streams of about 0.2 s: a restart always finds some in flight."""
DOWN_S = 0.5
"""How long an engine is gone between its old process and its new one."""
MIN_READY_S = 1.5
"""How long the rollout waits after a new engine answers /health before it restarts the next one."""


class StreamingLoad:
    """Clients that stream completions back to back until stopped, counting what did not end well."""

    def __init__(self, url: str, clients: int = 6) -> None:
        self.url = url
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def __enter__(self) -> StreamingLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _client(self) -> None:
        while not self._stop.is_set():
            outcome = self._one()
            with self._lock:
                if outcome is None:
                    self.ok += 1
                else:
                    self.failures.append(outcome)

    def _one(self) -> str | None:
        request = urllib.request.Request(
            self.url + "/v1/completions",
            data=json.dumps(STREAM).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            return f"HTTP {error.code}: {error.read()[:200]!r}"
        except OSError as error:
            return f"transport: {error!r}"
        events = [line[6:] for line in text.split("\n\n") if line.startswith("data: ")]
        if not events or events[-1] != "[DONE]" or any('"error"' in event for event in events):
            return f"stream: {text[-200:]!r}"
        return None


def restart(engines: list[FaultEngine], index: int, run: Callable[..., object]) -> None:
    old = engines[index]
    old.healthy = False  # readiness down: the pod is terminating
    run(old.stop())  # stops listening at once; its streams in flight get drain_s to finish
    time.sleep(DOWN_S)
    new = FaultEngine(old.name, faults=Faults(chunk_delay_s=SLOW.chunk_delay_s), drain_s=old.drain_s)
    run(new.start(old.port))  # same address, new process start time
    engines[index] = new
    with urllib.request.urlopen(new.url + "/health", timeout=5) as answer:
        assert answer.status == 200
    time.sleep(MIN_READY_S)


@pytest.mark.parametrize("role", ["decode", "prefill"])
def test_rolling_restart_of_every_engine_of_a_role_fails_nothing(router_process, role: str) -> None:  # noqa: F811
    start: Callable[..., ProcessCluster] = router_process
    engines = start.engines(  # type: ignore[attr-defined]
        "prefill-0",
        "prefill-1",
        "decode-0",
        "decode-1",
        faults=Faults(chunk_delay_s=SLOW.chunk_delay_s),
        drain_s=2.0,
    )
    static = [{"url": e.url, "role": e.name.split("-")[0]} for e in engines]
    cluster = start(
        {
            "discovery": {"static": static},
            "pd_threshold_tokens": 0,
            "breaker": {"failures": 5, "successes": 2, "open_s": 30.0, "window_s": 60.0},
        },
        engines,
    )
    rolled = [e for e in engines if e.name.startswith(role)]
    with StreamingLoad(cluster.url) as load:
        cluster.wait_for(lambda: load.ok >= 20)
        for index in range(len(rolled)):
            restart(rolled, index, cluster.loop.run)
        ended_after = load.ok + len(load.failures)
        cluster.wait_for(lambda: load.ok + len(load.failures) >= ended_after + 20)
    print(f"rolling restart of the {role} engines: {load.ok} streams served, {len(load.failures)} failed")
    assert load.failures == [], f"{len(load.failures)} of {load.ok + len(load.failures)} failed: {load.failures[:5]}"
    assert cluster.terminate() == 0
