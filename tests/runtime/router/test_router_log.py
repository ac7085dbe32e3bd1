"""The router process's log is JSON lines only, whatever reaches its port (issue 20 item 17): a malformed HTTP
request is one structured warning, not aiohttp's plain-text traceback."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from testbed.router_process import start_lone_router

REPO = Path(__file__).resolve().parents[3]
MALFORMED = [
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\n\r\n",
    b"POST /v1/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /health HTTP/1.1\r\nHost: a\r\n" + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n",
]


def send(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_malformed_requests_are_one_json_warning_each(tmp_path: Path) -> None:
    router, port = start_lone_router(tmp_path, REPO)
    try:
        for raw in MALFORMED:
            assert send(port, raw).startswith(b"HTTP/1.")
        assert send(port, b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200")
    finally:
        router.stop(15)
    lines = router.log.read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line is JSON (a plain-text traceback is not)
    malformed = [event for event in events if event["event"] == "malformed_request"]
    assert len(malformed) == len(MALFORMED), lines
    assert all(
        event["level"] == "warning" and event["status"] in (400, 431) and "exception" not in event
        for event in malformed
    ), malformed
