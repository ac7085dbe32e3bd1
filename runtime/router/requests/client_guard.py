"""Bounds what slow or idle clients can hold: a listening site whose connections must finish each request's line
and headers within ``timeouts.client_headers_s`` (else 408 and closed), must read their answer (a send buffer that
stays full ``timeouts.client_write_s`` closes the connection, which cancels the request and aborts its engine leg),
and of which at most ``max_connections`` are open at once (more are answered 503 and closed). The request body's
deadline (``client_body_s``) is the handler's, where the body is read; an idle kept-alive connection is closed by
aiohttp's keep-alive timeout (``client_idle_s``). aiohttp's own server bounds none of the first three: a socket
that never finishes its headers, or never reads, stays open, and drain waits for it.

The guard sits between asyncio and aiohttp's protocol, forwarding every call; it watches the bytes for the end of a
request's headers, and asyncio's flow control (``pause_writing``/``resume_writing``) for a client that reads
nothing.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from runtime.json_log import EventLog

log = EventLog("runtime.router.clients")
HEADERS_END = b"\r\n\r\n"
TOO_SLOW = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
TOO_MANY = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class ConnectionLimits:
    def __init__(self, max_connections: int, headers_s: float, write_s: float = 30.0) -> None:
        self.max_connections = max_connections
        self.headers_s = headers_s
        self.write_s = write_s
        self.open: set[GuardedProtocol] = set()


def waiting_for_a_request(handler: asyncio.Protocol) -> bool:
    """Whether aiohttp's connection handler is between requests: aiohttp 3.14's ``RequestHandler.start`` awaits
    ``_waiter`` while it holds no parsed request (web_protocol.py); bytes that arrive then open a new request."""
    waiter = getattr(handler, "_waiter", None)
    return waiter is not None and not waiter.done()


class GuardedProtocol(asyncio.Protocol):
    def __init__(self, inner: asyncio.Protocol, limits: ConnectionLimits) -> None:
        self.inner = inner
        self.limits = limits
        self.transport: asyncio.Transport | None = None
        self.refused = False
        self._tail = b""
        self._headers_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if len(self.limits.open) >= self.limits.max_connections:
            self.refused = True
            log.warning("client_refused", reason="max_connections", max_connections=self.limits.max_connections)
            transport.write(TOO_MANY)  # type: ignore[attr-defined]
            transport.close()
            return
        self.limits.open.add(self)
        self._arm_headers()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self._headers_timer is None and waiting_for_a_request(self.inner):
            self._arm_headers()  # the next request on a kept-alive connection: its own deadline
        if self._headers_timer is not None:
            window = self._tail + data
            if HEADERS_END in window:
                self._cancel_headers()
            else:
                self._tail = window[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self.refused else self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_headers()
        self._cancel_write()
        self.limits.open.discard(self)
        if not self.refused:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._write_timer is None:
            self._write_timer = asyncio.get_running_loop().call_later(self.limits.write_s, self._not_reading)
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self._cancel_write()
        self.inner.resume_writing()

    def _arm_headers(self) -> None:
        self._tail = b""
        self._headers_timer = asyncio.get_running_loop().call_later(self.limits.headers_s, self._too_slow)

    def _too_slow(self) -> None:
        self._headers_timer = None
        if self.transport is None or self.transport.is_closing():
            return
        log.warning(
            "client_too_slow",
            waited_s=self.limits.headers_s,
            what="request line and headers",
            setting="timeouts.client_headers_s",
        )
        self.transport.write(TOO_SLOW)
        self.transport.close()

    def _not_reading(self) -> None:
        """The answer has waited ``write_s`` in a full send buffer: close at once (a graceful close would wait for
        the buffer to drain); aiohttp then cancels the request's handler, which aborts its engine leg."""
        self._write_timer = None
        if self.transport is None or self.transport.is_closing():
            return
        log.warning(
            "client_too_slow",
            waited_s=self.limits.write_s,
            what="reading the answer",
            setting="timeouts.client_write_s",
        )
        self.transport.abort()

    def _cancel_headers(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def _cancel_write(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None


class GuardedSite(web.BaseSite):
    """aiohttp's TCPSite, its connections guarded."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, limits: ConnectionLimits, backlog: int = 1024
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host, self._port, self.limits = host, port, limits

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            lambda: GuardedProtocol(server(), self.limits),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
        )
