"""Clients that hold the router: sockets that never finish their headers or their body, too many connections at
once, and a prompt so large that tokenizing it on the event loop would stall every other request."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tests.runtime.router.conftest import Cluster


@contextmanager
def raw_socket(cluster: Cluster) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", cluster.router.config.port), timeout=10)
    try:
        yield sock
    finally:
        sock.close()


def read_all(sock: socket.socket) -> bytes:
    """Everything the router sends until it closes the connection (the 10 s socket timeout fails the test)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_client_that_never_finishes_its_headers_is_closed(make_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster: Cluster = make_cluster(timeouts={"client_headers_s": 0.3})
    with raw_socket(cluster) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: router\r\nContent-Type: applic")
        assert read_all(sock).startswith(b"HTTP/1.1 408")
    assert cluster.get("/health")[0] == 200


def test_a_client_that_never_finishes_its_body_gets_408(make_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster: Cluster = make_cluster(timeouts={"client_body_s": 0.3})
    with raw_socket(cluster) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\nConnection: close\r\n\r\n{\"model\": ")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "body_timeout"
    assert cluster.decodes[0].received == []


def test_connections_past_the_limit_are_refused(make_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster: Cluster = make_cluster(max_connections=3)
    held = [socket.create_connection(("127.0.0.1", cluster.router.config.port), timeout=10) for _ in range(3)]
    try:
        cluster.wait_for(lambda: len(cluster.router.site_limits.open) == 3)
        with raw_socket(cluster) as extra:
            assert read_all(extra).startswith(b"HTTP/1.1 503")
    finally:
        for sock in held:
            sock.close()
    cluster.wait_for(lambda: cluster.get("/health")[0] == 200)


def test_tokenizing_a_huge_prompt_does_not_stall_the_loop(make_cluster) -> None:  # type: ignore[no-untyped-def]
    """The tokenizer is held inside its call; /health must still answer meanwhile (it cannot while the tokenizer
    runs on the event loop)."""
    cluster: Cluster = make_cluster(pd_threshold_tokens=100000, max_body_bytes=4 * 1024 * 1024)
    tokenizer = cluster.router.flow.prompts.tokenizer
    entered, release = threading.Event(), threading.Event()
    original = tokenizer.tokens

    def held(request):  # type: ignore[no-untyped-def]
        entered.set()
        release.wait(20)
        return original(request)

    tokenizer.tokens = held
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(cluster.post(
        "/v1/completions", {"model": "tiny", "prompt": "x" * 1_000_000, "max_tokens": 2})[0]))
    worker.start()
    try:
        assert entered.wait(10)
        health = socket.create_connection(("127.0.0.1", cluster.router.config.port), timeout=3)
        with health:
            health.sendall(b"GET /health HTTP/1.1\r\nHost: router\r\nConnection: close\r\n\r\n")
            assert read_all(health).startswith(b"HTTP/1.1 200")
    finally:
        release.set()
        worker.join(20)
    assert results == [200]
