"""Clients that hold the router: sockets that never finish their headers or their body, too many connections at
once, and a prompt so large that tokenizing it on the event loop would stall every other request."""

from __future__ import annotations

import json
import socket
import threading

from tests.support.router_cluster import Cluster, raw_socket, read_all


def test_a_client_that_never_finishes_its_headers_is_closed(make_cluster) -> None:
    cluster: Cluster = make_cluster(timeouts={"client_headers_s": 0.3})
    with raw_socket(cluster) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: router\r\nContent-Type: applic")
        assert read_all(sock).startswith(b"HTTP/1.1 408")
    assert cluster.get("/health")[0] == 200


def test_a_client_that_never_finishes_its_body_gets_408(make_cluster) -> None:
    cluster: Cluster = make_cluster(timeouts={"client_body_s": 0.3})
    with raw_socket(cluster) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\nConnection: close\r\n\r\n{"model": '
        )
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "body_timeout"
    assert cluster.decodes[0].received == []


def test_connections_past_the_limit_are_refused(make_cluster) -> None:
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


def test_tokenizing_a_huge_prompt_does_not_stall_the_loop(make_cluster) -> None:
    """The tokenizer is held inside its call; /health must still answer meanwhile (it cannot while the tokenizer
    runs on the event loop)."""
    cluster: Cluster = make_cluster(pd_threshold_tokens=100000, max_body_bytes=4 * 1024 * 1024)
    tokenizer = cluster.router.flow.prompts.tokenizer
    entered, release = threading.Event(), threading.Event()
    original = tokenizer.tokens

    def held(request):
        entered.set()
        release.wait(20)
        return original(request)

    tokenizer.tokens = held  # type: ignore[method-assign]
    results: list[int] = []
    worker = threading.Thread(
        target=lambda: results.append(
            cluster.post("/v1/completions", {"model": "tiny", "prompt": "x" * 1_000_000, "max_tokens": 2})[0]
        )
    )
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


def read_response(sock: socket.socket) -> bytes:
    """One whole response (by its Content-Length) from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, rest = data.split(b"\r\n\r\n", 1)
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return head


def test_an_idle_kept_alive_connection_is_closed(make_cluster) -> None:
    """aiohttp keeps an idle connection 3630 s by default: idle clients filled max_connections (503 for everyone
    new). ``timeouts.client_idle_s`` closes it."""
    cluster: Cluster = make_cluster(timeouts={"client_idle_s": 0.3})
    with raw_socket(cluster) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: router\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        assert read_all(sock) == b""  # closed by the router (the socket's 10 s timeout would fail the test)
    cluster.wait_for(lambda: len(cluster.router.site_limits.open) == 0)


def test_every_request_on_a_kept_alive_connection_has_a_header_deadline(make_cluster) -> None:
    """Not only the first: a second request whose headers never end is answered 408 within client_headers_s."""
    cluster: Cluster = make_cluster(timeouts={"client_headers_s": 0.3, "client_idle_s": 60.0})
    with raw_socket(cluster) as sock:
        for _ in range(2):  # two whole requests on the connection
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: router\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: router\r\nContent-Type: applic")
        assert read_all(sock).startswith(b"HTTP/1.1 408")


def test_a_client_that_stops_reading_is_cut_off_and_frees_its_engine(make_cluster) -> None:
    """A streaming client that reads nothing held its engine slot and admission place for good (two such clients
    turned everyone away with 429). Once the router's send buffer stays full ``client_write_s``, the connection is
    closed and the engine's request aborted."""
    cluster: Cluster = make_cluster(pd_threshold_tokens=100000, timeouts={"client_write_s": 0.5})
    for engine in cluster.prefills + cluster.decodes:
        engine.max_model_len = 100_000  # an answer of a few MB, more than the kernel's socket buffers hold
    cluster.wait_for(lambda: cluster.router.catalog.max_model_len("tiny") == 100_000)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # a small window: the router's buffer fills soon
    sock.settimeout(10)
    sock.connect(("127.0.0.1", cluster.router.config.port))
    try:
        payload = json.dumps({"model": "tiny", "prompt": "hello", "max_tokens": 20_000, "stream": True}).encode()
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
        )
        cluster.wait_for(lambda: cluster.metric("pdstack_router_client_disconnects_total") == 1, timeout=10)
    finally:
        sock.close()
    assert cluster.metric("pdstack_router_requests_total", outcome="client_disconnected") == 1
    assert cluster.metric("pdstack_router_engine_in_flight") == 0
    assert cluster.post("/v1/completions", {"model": "tiny", "prompt": "hi", "max_tokens": 2})[0] == 200
