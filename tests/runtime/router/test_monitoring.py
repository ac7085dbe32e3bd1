"""Monitoring that tells the truth (issue 20, items 13 and 15-17): what the router counts and logs when it fails,
when a client goes away, and when a request is not even HTTP."""

from __future__ import annotations

import json
import logging
import socket
import struct

import pytest

from runtime.json_log import JsonLineFormatter
from tests.support.router_cluster import Cluster


def body(**fields: object) -> dict[str, object]:
    return {"model": "tiny", "prompt": "hello", "max_tokens": 3, **fields}


def test_a_router_bug_is_a_500_counted_as_error_and_logged_with_its_traceback(
    make_cluster, caplog: pytest.LogCaptureFixture
) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=100000)

    async def broken(*args: object) -> None:
        raise RuntimeError("a bug in the flow")

    cluster.router.flow.serve = broken  # type: ignore[method-assign, assignment]
    with caplog.at_level(logging.ERROR, logger="runtime"):
        status, _, payload = cluster.post("/v1/completions", body())
    assert status == 500 and json.loads(payload)["error"]["code"] == "internal_error"
    assert cluster.metric("pdstack_router_requests_total", outcome="error") == 1
    assert cluster.metric("pdstack_router_requests_total", outcome="ok") == 0
    record = next(record for record in caplog.records if record.getMessage() == "unhandled")
    line = json.loads(JsonLineFormatter().format(record))
    assert "exc_info" not in line
    assert "Traceback" in line["exception"] and "RuntimeError: a bug in the flow" in line["exception"]


def reset_after_first_chunk(cluster: Cluster, max_tokens: int) -> None:
    """A streaming client that reads the answer's head, then resets the connection (SO_LINGER 0: an RST)."""
    sock = socket.create_connection(("127.0.0.1", cluster.router.config.port), timeout=10)
    payload = json.dumps(body(stream=True, max_tokens=max_tokens)).encode()
    sock.sendall(
        b"POST /v1/completions HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
    )
    head = b""
    while b"data: " not in head:
        head += sock.recv(65536)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_client_resets_are_client_disconnects_not_broken_engine_streams(
    make_cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """The engine keeps streaming while the client is gone: the router's next write to the client fails. That is
    the client's doing, counted as a client disconnect; the engine's stream_broken (and its ERROR line "the engine
    stopped mid-stream") is for an engine that failed (133-290 of 300 resets were counted there)."""
    cluster: Cluster = make_cluster(pd_threshold_tokens=100000)
    resets = 20
    with caplog.at_level(logging.INFO):
        for _ in range(resets):
            reset_after_first_chunk(cluster, max_tokens=1000)
        cluster.wait_for(lambda: cluster.metric("pdstack_router_requests_total") == resets, timeout=20)
    disconnects = cluster.metric("pdstack_router_requests_total", outcome="client_disconnected")
    # the rest were written to the socket whole before the reset came: served
    assert disconnects + cluster.metric("pdstack_router_requests_total", outcome="ok") == resets and disconnects
    assert cluster.metric("pdstack_router_client_disconnects_total") == disconnects
    assert cluster.metric("pdstack_router_upstream_errors_total") == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert cluster.decodes[0].healthy and cluster.post("/v1/completions", body())[0] == 200


def test_metrics_are_served_on_their_own_port_not_the_api_port(make_cluster) -> None:
    """/metrics names every engine's address (the 502 bodies take care to hide them): the API port does not serve
    it; ``serving.router.metrics_port`` does, which the network policy opens to the collector alone."""
    cluster: Cluster = make_cluster()
    status, _, payload = cluster.get("/metrics")
    assert status == 404 and json.loads(payload)["error"]["type"] == "not_found_error"
    status, _, payload = cluster.get("/metrics", cluster.metrics_url)
    assert status == 200 and f"127.0.0.1:{cluster.decodes[0].port}".encode() in payload
    assert cluster.get("/v1/models", cluster.metrics_url)[0] == 404
