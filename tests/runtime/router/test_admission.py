"""Admission control against fake engines that report a deep queue, driven by the official openai SDK: overload is
answered 429 with Retry-After in OpenAI's shape (the SDK raises RateLimitError and would retry), never a 5xx; the
queue is bounded by count and by wait; interactive requests are served before batch, and batch is shed first."""

from __future__ import annotations

import json
import socket
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from runtime.router.config import Admission, Saturation
from tests.support.router_cluster import Cluster

DEEP = 10_000.0  # vllm:num_requests_waiting far past saturation.max_waiting
HEADER = Admission().priority_header
UNHURRIED_S = 600.0
"""A wall-clock bound no loaded machine reaches, for the tests whose subject is not that bound: the harness's short
upstream timeouts (1 s to connect, made for the fault tests) turned a drained burst into 504s on a busy 2-core box,
and the default 5 s interactive wait turned queued requests into wait_timeout 429s. Far past the SDK's own timeout,
so a request that never ends fails there."""
UNHURRIED = {
    "timeouts": dict.fromkeys(("connect_s", "first_byte_s", "idle_stream_s", "prefill_s", "first_token_s"), UNHURRIED_S)
}
PATIENCE_S = 60.0
"""How long a test waits for a condition that must come: only a broken router runs into it, never a slow machine."""


def unhurried(**admission: object) -> dict[str, object]:
    """Router settings where only the queue decides: ``admission`` as given, no wait nor upstream timeout in reach."""
    return {
        **UNHURRIED,
        "admission": {"interactive_max_wait_s": UNHURRIED_S, "batch_max_wait_s": UNHURRIED_S, **admission},
    }


def saturate(cluster: Cluster, waiting: float = DEEP) -> None:
    """Every engine reports ``waiting``; return once the router's scrape has seen it."""
    for engine in cluster.prefills + cluster.decodes:
        engine.waiting = waiting
    cluster.wait_for(lambda: all(engine.waiting == waiting for engine in cluster.router.registry), PATIENCE_S)


def sdk(cluster: Cluster, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{cluster.url}/v1", api_key="none", max_retries=retries, timeout=PATIENCE_S)


def status_of(call: Callable[[], object]) -> int:
    try:
        call()
        return 200
    except openai.APIStatusError as error:
        return error.status_code


def depth(cluster: Cluster, priority: str) -> float:
    return cluster.metric("pdstack_router_admission_queue_depth", priority=priority)


def test_overload_is_429_with_retry_after_in_openai_shape(make_cluster) -> None:
    cluster: Cluster = make_cluster(admission={"max_queued": 0, "retry_after_s": 3})
    saturate(cluster)
    with pytest.raises(openai.RateLimitError) as raised:
        sdk(cluster).completions.create(model="tiny", prompt="hello", max_tokens=2)
    error = raised.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "3"  # the SDK sleeps this long before its own retry
    assert error.response.headers["x-pdstack-rejected"] == "queue_full"
    assert error.code == "queue_full" and error.type == "rate_limit_error"
    assert cluster.metric("pdstack_router_admission_rejections_total", priority="interactive", reason="queue_full") == 1
    assert cluster.metric("pdstack_router_requests_total", outcome="overloaded") == 1
    assert not cluster.decodes[0].received  # nothing reached an engine


def test_defaults_protect_a_saturated_cluster_from_120_clients(make_cluster) -> None:
    """The default queue bound; every engine reports a deep queue; 120 clients at once. The queue holds exactly
    max_queued and the rest are answered 429 queue_full while it still holds; when the engines drain, every queued
    request is served; no 5xx at all. (The waits and upstream timeouts are out of reach, see UNHURRIED_S; the wait
    bound has its own test below.)"""
    cluster: Cluster = make_cluster(**unhurried())
    bound = Admission().max_queued
    saturate(cluster)
    client = sdk(cluster)
    with ThreadPoolExecutor(120) as pool:
        calls = [
            pool.submit(status_of, lambda: client.completions.create(model="tiny", prompt="hi", max_tokens=2))
            for _ in range(120)
        ]
        cluster.wait_for(
            lambda: (
                depth(cluster, "interactive") == bound
                and cluster.metric("pdstack_router_admission_rejections_total", reason="queue_full") == 120 - bound
            ),
            PATIENCE_S,
        )
        cluster.wait_for(lambda: sum(call.done() for call in calls) == 120 - bound, PATIENCE_S)
        assert [call.result() for call in calls if call.done()] == [429] * (120 - bound)  # before any engine drained
        assert depth(cluster, "interactive") == bound
        assert not cluster.decodes[0].received  # all of them waited at the router, none went to an engine
        saturate(cluster, waiting=0.0)
        statuses = Counter(call.result() for call in calls)
    assert statuses == {200: bound, 429: 120 - bound}, statuses
    assert depth(cluster, "interactive") == 0


def test_a_request_waits_no_longer_than_its_class_allows(make_cluster) -> None:
    cluster: Cluster = make_cluster(admission={"interactive_max_wait_s": 0.2})
    saturate(cluster)
    with pytest.raises(openai.RateLimitError) as raised:
        sdk(cluster).chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.code == "wait_timeout"
    assert raised.value.response.headers["x-pdstack-rejected"] == "wait_timeout"
    assert (
        cluster.metric("pdstack_router_admission_rejections_total", priority="interactive", reason="wait_timeout") == 1
    )
    assert depth(cluster, "interactive") == 0


def test_interactive_is_served_before_batch(make_cluster) -> None:
    """Batch requests queue first, interactive ones after; one request fits at a time once the engines drain: the
    decode engine receives every interactive request before any batch request."""
    cluster: Cluster = make_cluster(
        prefills=0, saturation={**Saturation().model_dump(), "max_in_flight": 1}, **unhurried()
    )
    saturate(cluster)
    client = sdk(cluster)

    def send(priority: str, i: int) -> int:
        return status_of(
            lambda: client.completions.create(
                model="tiny", prompt=f"{priority}-{i}", max_tokens=1, extra_headers={HEADER: priority}
            )
        )

    with ThreadPoolExecutor(6) as pool:
        batch = [pool.submit(send, "batch", i) for i in range(3)]
        cluster.wait_for(lambda: depth(cluster, "batch") == 3, PATIENCE_S)
        interactive = [pool.submit(send, "interactive", i) for i in range(3)]
        cluster.wait_for(lambda: depth(cluster, "interactive") == 3, PATIENCE_S)
        saturate(cluster, waiting=0.0)
        assert [call.result() for call in batch + interactive] == [200] * 6
    order = [body["prompt"].split("-")[0] for body in cluster.decodes[0].received]
    assert order == ["interactive"] * 3 + ["batch"] * 3
    assert cluster.metric("pdstack_router_admission_wait_seconds_count", priority="batch") == 3


def test_batch_is_shed_first(make_cluster) -> None:
    cluster: Cluster = make_cluster(**unhurried(max_queued=2))
    saturate(cluster)
    client = sdk(cluster)

    def send(priority: str) -> int:
        return status_of(
            lambda: client.completions.create(model="tiny", prompt="x", max_tokens=1, extra_headers={HEADER: priority})
        )

    with ThreadPoolExecutor(4) as pool:
        older = pool.submit(send, "batch")
        cluster.wait_for(lambda: depth(cluster, "batch") == 1, PATIENCE_S)
        younger = pool.submit(send, "batch")
        cluster.wait_for(lambda: depth(cluster, "batch") == 2, PATIENCE_S)
        interactive = pool.submit(send, "interactive")  # the queue is full: the youngest batch request makes room
        assert younger.result() == 429
        assert depth(cluster, "interactive") == 1 and depth(cluster, "batch") == 1
        assert send("batch") == 429  # full again, and a batch arrival sheds nobody
        saturate(cluster, waiting=0.0)
        assert interactive.result() == 200 and older.result() == 200
    assert cluster.metric("pdstack_router_admission_rejections_total", priority="batch", reason="queue_full") == 2
    assert cluster.metric("pdstack_router_admission_rejections_total", priority="interactive") == 0


def test_a_client_that_leaves_frees_its_place(make_cluster) -> None:
    """The client hangs up once its request is seen waiting (not on a client timeout, which a slow router could
    outlast before the request ever queued, leaving a place held for less time than the test samples)."""
    cluster: Cluster = make_cluster(**unhurried())
    saturate(cluster)
    body = json.dumps({"model": "tiny", "prompt": "hi", "max_tokens": 1}).encode()
    with socket.create_connection(("127.0.0.1", cluster.router.config.port)) as leaving:
        leaving.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        cluster.wait_for(lambda: depth(cluster, "interactive") == 1, PATIENCE_S)
    cluster.wait_for(lambda: depth(cluster, "interactive") == 0, PATIENCE_S)
    assert cluster.metric("pdstack_router_client_disconnects_total") == 1
    assert cluster.metric("pdstack_router_admission_rejections_total") == 0  # it left; nobody turned it away


def test_an_unknown_priority_is_the_clients_error(make_cluster) -> None:
    cluster: Cluster = make_cluster()
    with pytest.raises(openai.BadRequestError) as raised:
        sdk(cluster).completions.create(model="tiny", prompt="hi", extra_headers={HEADER: "urgent"})
    assert raised.value.code == "invalid_priority" and HEADER in raised.value.message


def test_admission_off_forwards_everything(make_cluster) -> None:
    cluster: Cluster = make_cluster(admission={"enabled": False, "max_queued": 0})
    saturate(cluster)
    assert sdk(cluster).completions.create(model="tiny", prompt="hi", max_tokens=1).choices[0].text == "t0"


def test_an_engine_behind_an_open_breaker_is_no_capacity(make_cluster) -> None:
    """Health passes but the breaker took the engine out of the schedule: it cannot take a request, so with the
    other decode engine saturated the router is overloaded (429), not admitting work nobody can serve at once."""
    import time

    cluster: Cluster = make_cluster(
        decodes=2,
        admission={"max_queued": 0},
        breaker={"failures": 5, "successes": 2, "open_s": 600.0, "window_s": 60.0},
    )
    broken, loaded = cluster.decodes
    loaded.waiting = DEEP
    cluster.wait_for(lambda: cluster.router.registry.get(loaded.url).waiting == DEEP)
    engine = cluster.router.registry.get(broken.url)
    assert engine is not None and engine.healthy
    engine.breaker.trip(time.monotonic())
    assert status_of(lambda: sdk(cluster).completions.create(model="tiny", prompt="hi", max_tokens=2)) == 429
    assert not broken.received and not loaded.received


def test_a_burst_waits_in_the_router_not_in_the_engines_queue(make_cluster_from) -> None:
    """An engine that runs 8 requests at a time (its running/waiting gauges say so once it is full): after the
    router has seen that, a burst of 120 waits in the router's admission queue (where priorities and deadlines
    apply) instead of in the engine's own queue; every request is still served."""
    from concurrent.futures import ThreadPoolExecutor

    from testbed.fault_engine import FaultEngine

    engine = FaultEngine("decode-0", max_running=8, run_s=0.05)
    cluster = make_cluster_from(
        [engine],
        {
            "pd_threshold_tokens": 100000,
            "metrics_interval_s": 0.05,
            "admission": {"interactive_max_wait_s": 60.0, "max_queued": 200},
        },
    )
    request = {"model": "tiny", "prompt": "x" * 64, "max_tokens": 1}

    def burst(size: int) -> list[int]:
        with ThreadPoolExecutor(size) as pool:
            return list(pool.map(lambda _: cluster.post("/v1/completions", request)[0], range(size)))

    assert set(burst(40)) == {200}  # the engine fills up: the router learns what it runs at a time
    engine.peak_queued = 0
    assert set(burst(120)) == {200}
    assert engine.peak_queued <= 8, f"the engine's own queue reached {engine.peak_queued}"
    assert cluster.metric("pdstack_router_admission_wait_seconds_sum") > 0  # some waited in the router
