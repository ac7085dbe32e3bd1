"""Faults: retries on another engine, decode-only fallbacks, a broken or silent stream, the client leaving, and
graceful shutdown. Timing never decides a pass: every wait is for a condition, with a generous cap."""

from __future__ import annotations

import http.client
import json
import socket
import threading

from tests.support.router_cluster import Cluster

LONG = "SELECT * FROM requests WHERE engine = 'decode';\n" * 30


NO_ADMISSION = {"enabled": False}
"""For the tests that keep the other engine saturated so the failing one stays the first pick: once the failing
engine's breaker opens, every usable decode engine is saturated and admission control would (rightly) hold the
requests and answer 429 (test_admission.py); these tests are about the breaker and discovery, not admission."""


def body(stream: bool = False, **extra: object) -> dict[str, object]:
    return {"model": "tiny", "prompt": LONG, "max_tokens": 4, "stream": stream, **extra}


def test_connection_refused_retries_on_another_decode(make_cluster) -> None:
    cluster: Cluster = make_cluster(decodes=2, pd_threshold_tokens=0)
    dead = cluster.decodes[0]
    cluster.loop.run(dead.stop())
    for _ in range(4):
        status, _, payload = cluster.post("/v1/completions", body())
        assert status == 200, payload
    assert len(cluster.decodes[1].received) == 4
    # until the health check notices, some requests hit the dead engine first and are retried
    cluster.wait_for(lambda: cluster.metric("pdstack_router_engine_healthy", engine=dead.url[7:]) == 0)


def test_5xx_before_any_byte_is_retried_elsewhere(make_cluster) -> None:
    cluster: Cluster = make_cluster(decodes=2, pd_threshold_tokens=100000)
    cluster.decodes[0].faults.status = 503
    cluster.decodes[1].waiting = 50  # loaded: the failing engine is picked first
    cluster.wait_for(lambda: cluster.router.registry.get(cluster.decodes[1].url).waiting == 50)
    statuses = [cluster.post("/v1/completions", body())[0] for _ in range(2)]
    assert statuses == [200, 200]
    assert len(cluster.decodes[1].received) == 2
    assert cluster.metric("pdstack_router_retries_total", leg="decode") >= 1
    assert cluster.metric("pdstack_router_upstream_errors_total", kind="http_503") >= 1


def test_every_engine_failing_is_a_502_not_a_hang(make_cluster) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=100000)
    cluster.decodes[0].faults.status = 500
    status, _, payload = cluster.post("/v1/completions", body())
    assert status == 502 and json.loads(payload)["error"]["type"] == "upstream_error"


def test_a_failed_request_does_not_draw_the_next_one_with_its_prefix(make_cluster) -> None:
    """The first request with a prefix fails on its decode engine (no retries left); the next with the same prefix
    sees no phantom of it in flight there and takes its turn on the other engine."""
    cluster: Cluster = make_cluster(prefills=0, decodes=2, retries={"attempts": 1, "backoff_s": 0.01})
    for engine in cluster.decodes:
        engine.faults.status = 500
    assert cluster.post("/v1/completions", body())[0] == 502
    (failed,) = [engine for engine in cluster.decodes if engine.received]
    for engine in cluster.decodes:
        engine.faults.status = None
    assert cluster.post("/v1/completions", body())[0] == 200
    assert len(failed.received) == 1


def test_errors_tell_the_client_what_happened_not_the_internals(make_cluster) -> None:
    """No engine address, exception class or engine error body in what the client reads; the request id is there
    (and in the response header) so an operator finds the details in the log."""
    cluster: Cluster = make_cluster(decodes=2, pd_threshold_tokens=100000)
    cluster.decodes[0].faults.status = 500
    cluster.loop.run(cluster.decodes[1].stop())
    status, headers, payload = cluster.post("/v1/completions", body(), headers={"X-Request-Id": "req-err-1"})
    assert status == 502
    text = payload.decode()
    for internal in ("127.0.0.1", "Client", "Error(", "fake failure", "Connect", "http_500", "aiohttp"):
        assert internal not in text, text
    assert "req-err-1" in json.loads(payload)["error"]["message"] and headers["X-Request-Id"] == "req-err-1"


def test_a_broken_stream_names_no_exception(make_cluster) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=100000)
    cluster.decodes[0].faults.die_after_chunks = 1
    last = stream_lines(cluster, body(stream=True, max_tokens=4))[-1]
    message = json.loads(last[6:])["error"]["message"]
    assert "Error" not in message and "127.0.0.1" not in message and "stopped mid-stream" in message


def test_prefill_failure_falls_back_to_decode_only(make_cluster) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    cluster.prefills[0].faults.status = 500
    status, _, _ = cluster.post("/v1/completions", body())
    assert status == 200
    assert "kv_transfer_params" not in cluster.decodes[0].received[0]
    assert cluster.metric("pdstack_router_fallbacks_total", reason="prefill_failed") == 1
    assert cluster.metric("pdstack_router_decisions_total", decision="decode_only", reason="prefill_failed") == 1


def test_prefill_without_params_falls_back(make_cluster) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    cluster.prefills[0].faults.omit_params = True
    assert cluster.post("/v1/completions", body())[0] == 200
    assert cluster.metric("pdstack_router_fallbacks_total", reason="prefill_failed") == 1


def test_decode_that_cannot_pull_serves_decode_only(make_cluster) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    cluster.decodes[0].faults.fail_pull = True
    status, _, _ = cluster.post("/v1/completions", body())
    assert status == 200
    assert "kv_transfer_params" in cluster.decodes[0].received[0]
    assert "kv_transfer_params" not in cluster.decodes[0].received[1]
    assert cluster.metric("pdstack_router_fallbacks_total", reason="decode_pull_failed") == 1


def test_prefill_rejecting_the_request_is_the_clients_error(make_cluster) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    cluster.prefills[0].faults.status = 400
    status, _, payload = cluster.post("/v1/completions", body())
    assert status == 400 and json.loads(payload)["error"]["message"] == "fake failure"
    assert cluster.decodes[0].received == []


def stream_lines(cluster: Cluster, request: dict[str, object]) -> list[str]:
    status, _, payload = cluster.post("/v1/completions", request)
    assert status == 200
    return [line for line in payload.decode().split("\n\n") if line]


def test_a_hung_prefill_is_cut_short_ejected_and_named(make_cluster, caplog) -> None:
    """A prefill whose /health answers but whose engine is stuck: the prefill leg has its own deadline, the engine
    leaves the schedule after it fires, and the log names the timeout that fired."""
    cluster: Cluster = make_cluster(
        pd_threshold_tokens=0,
        timeouts={"connect_s": 1.0, "first_byte_s": 30.0, "idle_stream_s": 30.0, "prefill_s": 0.3},
    )
    cluster.prefills[0].faults.delay_s = 60.0
    for _ in range(3):
        assert cluster.post("/v1/completions", body())[0] == 200
    assert len(cluster.prefills[0].received) == 1, "the hung prefill was chosen again"
    assert cluster.metric("pdstack_router_engine_ejections_total", role="prefill", reason="timeout") == 1
    assert cluster.metric("pdstack_router_fallbacks_total", reason="prefill_failed") == 1
    assert cluster.metric("pdstack_router_decisions_total", decision="decode_only", reason="no_prefill_engine") == 2
    assert any("prefill_s=0.3" in str(getattr(record, "pdstack_fields", {}).get("detail")) for record in caplog.records)


def test_a_decode_failing_every_request_loses_its_traffic(make_cluster) -> None:
    """/health passes, every request fails: the breaker opens after vllm-router's 5 consecutive failures."""
    cluster: Cluster = make_cluster(decodes=2, pd_threshold_tokens=100000, admission=NO_ADMISSION)
    failing, good = cluster.decodes
    failing.faults.status = 500
    good.waiting = 50  # loaded: the failing engine is the first pick until its breaker opens
    cluster.wait_for(lambda: cluster.router.registry.get(good.url).waiting == 50)
    assert [cluster.post("/v1/completions", body())[0] for _ in range(12)] == [200] * 12
    assert len(failing.received) == 5
    name = failing.url[7:]
    assert cluster.metric("pdstack_router_engine_breaker_state", engine=name) == 2
    assert cluster.metric("pdstack_router_engine_ejections_total", engine=name, reason="breaker_open") == 1


def test_an_open_breaker_half_opens_and_closes_after_two_successes(make_cluster) -> None:
    cluster: Cluster = make_cluster(
        decodes=2,
        pd_threshold_tokens=100000,
        admission=NO_ADMISSION,
        breaker={"failures": 2, "successes": 2, "open_s": 0.3, "window_s": 60.0},
    )
    failing, good = cluster.decodes
    failing.faults.status = 500
    good.waiting = 50
    cluster.wait_for(lambda: cluster.router.registry.get(good.url).waiting == 50)
    for _ in range(3):
        cluster.post("/v1/completions", body())
    name = failing.url[7:]
    assert cluster.metric("pdstack_router_engine_breaker_state", engine=name) == 2
    failing.faults.status = None
    cluster.wait_for(
        lambda: (
            cluster.post("/v1/completions", body())[0] == 200
            and cluster.metric("pdstack_router_engine_restorations_total", engine=name) == 1
        )
    )
    assert cluster.metric("pdstack_router_engine_breaker_state", engine=name) == 0


def test_health_needs_three_failures_to_eject_and_two_successes_to_restore(make_cluster) -> None:
    """vllm-router's health hysteresis: one failed /health no longer removes an engine, one success no longer
    restores it."""
    cluster: Cluster = make_cluster(decodes=2, pd_threshold_tokens=100000)
    engine = cluster.decodes[0]
    name = engine.url[7:]
    engine.healthy = False
    probes = engine.health_checks
    cluster.wait_for(
        lambda: cluster.metric("pdstack_router_engine_ejections_total", engine=name, reason="health_failed") == 1
    )
    assert engine.health_checks - probes >= 3
    assert cluster.metric("pdstack_router_engine_healthy", engine=name) == 0
    engine.healthy = True
    probes = engine.health_checks
    cluster.wait_for(lambda: cluster.metric("pdstack_router_engine_restorations_total", engine=name) == 1)
    assert engine.health_checks - probes >= 2
    assert cluster.metric("pdstack_router_engine_healthy", engine=name) == 1


def test_no_back_off_and_no_retry_counted_after_the_last_attempt(make_cluster) -> None:
    cluster: Cluster = make_cluster(prefills=2, pd_threshold_tokens=0, retries={"attempts": 2, "backoff_s": 0.4})
    for prefill in cluster.prefills:
        prefill.faults.status = 500
    assert cluster.post("/v1/completions", body())[0] == 200
    assert sum(len(p.received) for p in cluster.prefills) == 2
    assert cluster.metric("pdstack_router_retries_total", leg="prefill") == 1


def test_a_single_engine_is_not_retried(make_cluster) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=0, retries={"attempts": 3, "backoff_s": 0.4})
    cluster.prefills[0].faults.status = 500
    cluster.decodes[0].faults.status = 500
    assert cluster.post("/v1/completions", body())[0] == 502
    assert cluster.metric("pdstack_router_retries_total", leg="prefill") == 0
    assert cluster.metric("pdstack_router_retries_total", leg="decode") == 0


def test_engine_dying_mid_stream_ends_the_stream_with_an_error(make_cluster) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=100000)
    cluster.decodes[0].faults.die_after_chunks = 2
    lines = stream_lines(cluster, body(stream=True, max_tokens=6))
    assert len(lines) == 3 and json.loads(lines[-1][6:])["error"]["type"] == "upstream_error"
    assert cluster.metric("pdstack_router_requests_total", outcome="stream_broken") == 1
    assert cluster.metric("pdstack_router_upstream_errors_total", kind="stream_broken") == 1


def test_a_stalled_pull_restarts_decode_only_before_the_stream_commits(make_cluster) -> None:
    """Prefill died while decode pulled: decode's headers came, its first chunk never does. The stream is committed
    only at decode's first chunk, so the request restarts decode-only and the client sees a whole stream."""
    cluster: Cluster = make_cluster(
        pd_threshold_tokens=0,
        timeouts={"connect_s": 1.0, "first_byte_s": 5.0, "idle_stream_s": 5.0, "first_token_s": 0.3},
    )
    cluster.decodes[0].faults.stall_pull = True
    lines = stream_lines(cluster, body(stream=True, max_tokens=3))
    assert lines[-1] == "data: [DONE]" and not any('"error"' in line for line in lines), lines
    assert "".join(json.loads(line[6:])["choices"][0]["text"] for line in lines[:-1]) == "t0 t1 t2"
    pulled, alone = cluster.decodes[0].received
    assert "kv_transfer_params" in pulled and "kv_transfer_params" not in alone
    assert cluster.metric("pdstack_router_fallbacks_total", reason="decode_pull_failed") == 1
    assert cluster.metric("pdstack_router_upstream_errors_total", kind="first_token_timeout") == 1


def test_a_pull_that_fails_inside_the_stream_restarts_decode_only(make_cluster) -> None:
    """vLLM's kv_load_failure_policy=fail answers 200 and opens the stream with an error event when the KV pull
    fails (its prefill died): nothing was committed yet, so the request restarts decode-only."""
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    cluster.decodes[0].faults.fail_pull_in_stream = True
    lines = stream_lines(cluster, body(stream=True, max_tokens=3))
    assert lines[-1] == "data: [DONE]" and not any('"error"' in line for line in lines), lines
    assert len(cluster.decodes[0].received) == 2
    assert cluster.metric("pdstack_router_fallbacks_total", reason="decode_pull_failed") == 1


def test_a_chat_pull_that_fails_after_the_role_chunk_restarts_decode_only(make_cluster) -> None:
    """On a chat stream vLLM sends the role-only opening chunk BEFORE it learns the pull failed (seen on the CPU
    test bed, vLLM 0.32: the opening chunk, then 'Internal server error'). That chunk carries no token: the stream
    is committed only at the first chunk with one, so the failure still restarts the request decode-only."""
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    cluster.decodes[0].faults.fail_pull_in_stream = True
    chat = {"model": "tiny", "messages": [{"role": "user", "content": LONG}], "max_tokens": 3, "stream": True}
    status, _, payload = cluster.post("/v1/chat/completions", chat)
    lines = [line for line in payload.decode().split("\n\n") if line]
    assert status == 200 and lines[-1] == "data: [DONE]" and not any('"error"' in line for line in lines), lines
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events) == "t0 t1 t2"
    assert len(cluster.decodes[0].received) == 2
    assert cluster.metric("pdstack_router_fallbacks_total", reason="decode_pull_failed") == 1


def test_silent_stream_hits_the_idle_timeout(make_cluster) -> None:
    cluster: Cluster = make_cluster(
        pd_threshold_tokens=100000, timeouts={"connect_s": 1.0, "first_byte_s": 5.0, "idle_stream_s": 0.3}
    )
    cluster.decodes[0].faults.hang_after_chunks = 1
    lines = stream_lines(cluster, body(stream=True, max_tokens=6))
    assert json.loads(lines[-1][6:])["error"]["type"] == "upstream_error"


def test_first_byte_timeout_is_retried_then_reported(make_cluster) -> None:
    cluster: Cluster = make_cluster(
        pd_threshold_tokens=100000,
        retries={"attempts": 2, "backoff_s": 0.0},
        timeouts={"connect_s": 1.0, "first_byte_s": 0.2, "idle_stream_s": 5.0},
    )
    cluster.decodes[0].faults.delay_s = 2.0
    status, _, payload = cluster.post("/v1/completions", body())
    assert status == 504 and json.loads(payload)["error"]["code"] == "upstream_timeout"
    assert cluster.metric("pdstack_router_upstream_errors_total", kind="first_byte_timeout") == 1


def test_client_disconnect_aborts_the_upstream_request(make_cluster) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=100000)
    decode = cluster.decodes[0]
    decode.faults.hang_after_chunks = 1
    connection = http.client.HTTPConnection("127.0.0.1", cluster.router.config.port, timeout=10)
    connection.request(
        "POST", "/v1/completions", json.dumps(body(stream=True, max_tokens=6)), {"Content-Type": "application/json"}
    )
    response = connection.getresponse()
    assert response.status == 200
    response.fp.readline()  # the first chunk arrived
    connection.sock.shutdown(socket.SHUT_RDWR)
    connection.close()
    cluster.wait_for(lambda: decode.aborted == 1)
    cluster.wait_for(lambda: cluster.metric("pdstack_router_client_disconnects_total") == 1)


def test_graceful_shutdown_finishes_requests_in_flight(make_cluster) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=100000)
    cluster.decodes[0].faults.delay_s = 0.5
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(cluster.post("/v1/completions", body())[0]))
    worker.start()
    cluster.wait_for(lambda: len(cluster.decodes[0].received) == 1)
    cluster.loop.run(cluster.router.stop())
    worker.join(10)
    assert results == [200]
    with socket.socket() as probe:  # no longer accepting
        assert probe.connect_ex(("127.0.0.1", cluster.router.config.port)) != 0


def test_a_decode_leaving_discovery_finishes_its_requests_and_gets_no_new_ones(make_cluster) -> None:
    """A rolling update: the pod's endpoint turns not-ready (discovery drops it) while it still serves."""
    from runtime.router.engines.engine import EngineSpec

    cluster: Cluster = make_cluster(decodes=2, pd_threshold_tokens=100000, admission=NO_ADMISSION)
    leaving, staying = cluster.decodes
    leaving.faults.delay_s = 0.5
    staying.waiting = 50
    cluster.wait_for(lambda: cluster.router.registry.get(staying.url).waiting == 50)
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(cluster.post("/v1/completions", body())[0]))
    worker.start()
    cluster.wait_for(lambda: len(leaving.received) == 1)

    async def rollout() -> None:
        cluster.router.on_engines(
            [EngineSpec(url=cluster.prefills[0].url, role="prefill"), EngineSpec(url=staying.url, role="decode")]
        )

    cluster.loop.run(rollout())
    worker.join(10)
    assert results == [200]
    assert [cluster.post("/v1/completions", body())[0] for _ in range(3)] == [200] * 3
    assert len(leaving.received) == 1 and len(staying.received) == 3
    assert cluster.metric("pdstack_router_discovery_changes_total", role="decode", change="removed") == 1


def test_failure_counters_start_at_zero(make_cluster) -> None:
    """Prometheus's rate() needs a sample before the first increment: a counter child created at its first failure
    hides that whole first burst from rate() and from the fallback alert (seen on a live Prometheus). Every known
    fallback reason, retry leg and admission rejection is exported at zero before any request."""
    cluster: Cluster = make_cluster()
    text = cluster.get("/metrics", cluster.metrics_url)[2].decode()
    for series in (
        'pdstack_router_fallbacks_total{reason="prefill_failed"} 0.0',
        'pdstack_router_fallbacks_total{reason="decode_pull_failed"} 0.0',
        'pdstack_router_fallbacks_total{reason="no_healthy_prefill"} 0.0',
        'pdstack_router_retries_total{leg="prefill"} 0.0',
        'pdstack_router_retries_total{leg="decode"} 0.0',
        'pdstack_router_admission_rejections_total{priority="batch",reason="queue_full"} 0.0',
        'pdstack_router_admission_rejections_total{priority="interactive",reason="wait_timeout"} 0.0',
    ):
        assert series in text, series
