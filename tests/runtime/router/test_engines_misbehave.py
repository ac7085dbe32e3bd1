"""Engines that misbehave (issue 20, items 4-7): non-finite load readings, answers cut short or silent after their
headers, and compressed answers. Black box: HTTP in, HTTP out, real sockets on loopback."""

from __future__ import annotations

import json
from functools import partial

import pytest

from testbed.fault_engine import FaultEngine
from tests.support.router_cluster import Cluster

LONG = "SELECT * FROM requests WHERE engine = 'decode';\n" * 30


def scraped_twice(engine: FaultEngine) -> bool:
    return engine.metrics_scrapes >= 2


def body(stream: bool = False, **extra: object) -> dict[str, object]:
    return {"model": "tiny", "prompt": LONG, "max_tokens": 4, "stream": stream, **extra}


@pytest.mark.parametrize("reading", ["NaN", "+Inf", "-Inf"])
def test_a_non_finite_load_reading_fails_no_request(make_cluster, reading: str) -> None:
    """One engine's /metrics says NaN (or +Inf, -Inf) requests waiting and KV usage: it is a missing reading, and
    every request is still served."""
    cluster: Cluster = make_cluster(decodes=2, pd_threshold_tokens=100000)
    for engine in cluster.decodes:
        engine.waiting = float(reading)
        engine.kv_usage = float(reading)
    for engine in cluster.decodes:
        cluster.wait_for(partial(scraped_twice, engine))
    statuses = [cluster.post("/v1/completions", body())[0] for _ in range(6)]
    assert statuses == [200] * 6


@pytest.mark.parametrize("stream", [False, True])
def test_an_engine_that_compresses_when_allowed_still_answers_plain_json(make_cluster, stream: bool) -> None:
    """An engine may compress whatever the request's Accept-Encoding allows (and a request without one allows
    everything, RFC 9110 12.5.3). The router decodes no coding, so it asks for none: the client reads plain JSON."""
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    for engine in cluster.prefills + cluster.decodes:
        engine.faults.compress = True
    status, headers, payload = cluster.post("/v1/completions", body(stream=stream))
    assert status == 200, payload
    assert "Content-Encoding" not in headers
    if stream:
        events = [line[6:] for line in payload.decode().split("\n\n") if line]
        assert events[-1] == "[DONE]" and json.loads(events[0])["choices"][0]["text"] == "t0"
    else:
        assert json.loads(payload)["choices"][0]["text"] == "t0 t1 t2 t3"
    assert all(h.get("Accept-Encoding") == "identity" for h in cluster.decodes[0].headers + cluster.prefills[0].headers)


@pytest.mark.parametrize("fault", ["body_cut", "body_silent"])
def test_a_non_streaming_answer_cut_short_or_silent_is_served_elsewhere(make_cluster, fault: str) -> None:
    """A decode engine sends its answer's headers, then half the body, then drops the connection (or goes silent):
    nothing reached the client yet, so another decode serves the request, and the failing engine's breaker hears of
    it (one failure opens it here)."""
    cluster: Cluster = make_cluster(
        decodes=2,
        pd_threshold_tokens=100000,
        admission={"enabled": False},
        breaker={"failures": 1, "successes": 2, "open_s": 60.0, "window_s": 60.0},
        timeouts={"connect_s": 1.0, "first_byte_s": 5.0, "idle_stream_s": 0.5},
    )
    failing, good = cluster.decodes
    setattr(failing.faults, fault, True)
    good.waiting = 50  # loaded: the failing engine is the first pick
    cluster.wait_for(lambda: cluster.router.registry.get(good.url).waiting == 50)
    status, _, payload = cluster.post("/v1/completions", body())
    assert status == 200, payload
    assert json.loads(payload)["choices"][0]["text"] == "t0 t1 t2 t3"
    assert len(failing.received) == 1 and len(good.received) == 1
    assert cluster.metric("pdstack_router_engine_breaker_state", engine=failing.url[7:]) == 2
