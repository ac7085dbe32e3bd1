"""Each request's bookkeeping happens once: its blocks in flight are released once (served or not) and it leaves the
prefill backlog once, and every engine's in-flight count is back at zero after it. Counted with spies on a real router
in process, through the fake engines, on the paths that used to repeat them (the P/D path, a decode-only path, a pull
that fails in the stream, a request that fails)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from runtime.router.flow.prefill_backlog import PrefillBacklog
from runtime.router.scheduling.scheduler import Scheduler
from tests.support.router_cluster import Cluster

LONG = " ".join(f"word{i}" for i in range(400))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times each bookkeeping step ran (per test: one request each, or a known number)."""
    counted: Counter[str] = Counter()
    release, leave = Scheduler.release, PrefillBacklog.leave

    def counting_release(self: Scheduler, plan: Any) -> None:
        counted["release"] += 1
        release(self, plan)

    def counting_leave(self: PrefillBacklog, request: object) -> None:
        counted["leave"] += 1
        leave(self, request)

    monkeypatch.setattr(Scheduler, "release", counting_release)
    monkeypatch.setattr(PrefillBacklog, "leave", counting_leave)
    return counted


def settled(cluster: Cluster, calls: Counter[str]) -> bool:
    """The request has ended in the router (a stream's last bytes reach the client just before its ``finally``), and
    no engine counts it in flight any more."""
    cluster.wait_for(lambda: calls["release"] > 0 and all(engine.in_flight == 0 for engine in cluster.router.registry))
    return True


@pytest.mark.parametrize("stream", [False, True])
def test_a_pd_request_is_released_and_leaves_the_backlog_once(make_cluster, calls: Counter[str], stream: bool) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    status, _, _ = cluster.post("/v1/completions", {"model": "tiny", "prompt": LONG, "max_tokens": 3, "stream": stream})
    assert status == 200 and cluster.decodes[0].pulled == 1
    assert settled(cluster, calls)
    assert calls == {"release": 1, "leave": 1}


def test_a_decode_only_request_is_released_and_leaves_the_backlog_once(make_cluster, calls: Counter[str]) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=100000)
    status, _, _ = cluster.post("/v1/completions", {"model": "tiny", "prompt": "hi", "max_tokens": 2, "stream": True})
    assert status == 200 and cluster.prefills[0].received == []
    assert settled(cluster, calls)
    assert calls == {"release": 1, "leave": 1}


def test_a_pull_that_fails_in_the_stream_still_counts_once(make_cluster, calls: Counter[str]) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    cluster.decodes[0].faults.fail_pull_in_stream = True
    status, _, payload = cluster.post(
        "/v1/completions", {"model": "tiny", "prompt": LONG, "max_tokens": 2, "stream": True}
    )
    assert status == 200 and b"[DONE]" in payload
    assert cluster.metric("pdstack_router_fallbacks_total", reason="decode_pull_failed") == 1
    assert settled(cluster, calls)
    assert calls == {"release": 1, "leave": 1}


def test_a_request_no_engine_serves_is_released_and_leaves_the_backlog_once(make_cluster, calls: Counter[str]) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=0, retries={"attempts": 1, "backoff_s": 0.01})
    cluster.decodes[0].faults.status = 500
    status, _, payload = cluster.post("/v1/completions", {"model": "tiny", "prompt": LONG, "max_tokens": 2})
    assert status == 502 and json.loads(payload)["error"]["code"] == "upstream_failed"
    assert settled(cluster, calls)
    assert calls == {"release": 1, "leave": 1}
