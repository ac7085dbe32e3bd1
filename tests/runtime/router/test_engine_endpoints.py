"""vLLM's utility endpoints through the router, as vLLM's benchmark client calls them."""

from __future__ import annotations

import json

from tests.support.router_cluster import Cluster


def test_tokenize_detokenize_and_version_reach_an_engine(make_cluster) -> None:
    cluster: Cluster = make_cluster()
    status, headers, payload = cluster.post(
        "/tokenize", {"model": "tiny", "prompt": "hi"}, headers={"X-Request-Id": "tok-1"}
    )
    assert status == 200 and json.loads(payload)["tokens"] == [104, 105] and headers["X-Request-Id"] == "tok-1"
    status, _, payload = cluster.post("/detokenize", {"model": "tiny", "tokens": [104, 105]})
    assert status == 200 and json.loads(payload)["prompt"] == "hi"
    status, _, payload = cluster.get("/version")
    assert status == 200 and json.loads(payload)["version"] == "0.32.0+fake"


def test_utility_endpoints_without_an_engine_are_503(make_cluster) -> None:
    cluster: Cluster = make_cluster(prefills=0)
    cluster.decodes[0].healthy = False
    cluster.wait_for(lambda: cluster.get("/ready")[0] == 503)
    status, _, payload = cluster.post("/tokenize", {"model": "tiny", "prompt": "hi"})
    assert status == 503 and json.loads(payload)["error"]["code"] == "no_engine_available"


def test_an_oversized_tokenize_body_is_413_in_the_openai_shape(make_cluster) -> None:
    """Issue 22: aiohttp's HTTPRequestEntityTooLarge has no ``max_size``; reading it turned this 413 into a 500."""
    cluster: Cluster = make_cluster(max_body_bytes=4096)
    status, _, payload = cluster.post("/tokenize", {"model": "tiny", "prompt": "x" * 5000})
    error = json.loads(payload)["error"]
    assert status == 413 and error["code"] == "body_too_large" and "4096" in error["message"]
    assert cluster.decodes[0].received == []


def test_a_tokenize_body_that_never_arrives_gets_408(make_cluster) -> None:
    """Issue 20 item 11: /tokenize and /detokenize read their body with the same deadline as generation."""
    from tests.support.router_cluster import raw_socket, read_all

    cluster: Cluster = make_cluster(timeouts={"client_body_s": 0.3})
    for path in (b"/tokenize", b"/detokenize"):
        with raw_socket(cluster) as sock:
            sock.sendall(
                b"POST " + path + b" HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\nConnection: close\r\n\r\n{"model": '
            )
            answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "body_timeout"
