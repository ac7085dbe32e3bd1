"""Bounds what slow or idle clients can hold: a listening site whose connections must finish their request line and
headers within ``timeouts.client_headers_s`` (else 408 and closed), and at most ``max_connections`` open at once
(more are answered 503 and closed). The request body's deadline (``client_body_s``) is the handler's, where the body
is read. aiohttp's own server has neither bound: a socket that never finishes its headers stays open, and drain
waits for it.

The guard sits between asyncio and aiohttp's protocol, forwarding every call; it only watches the bytes for the end of
the first request's headers. Later requests on a kept-alive connection are bounded by aiohttp's keep-alive timeout.
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
    def __init__(self, max_connections: int, headers_s: float) -> None:
        self.max_connections = max_connections
        self.headers_s = headers_s
        self.open: set[GuardedProtocol] = set()


class GuardedProtocol(asyncio.Protocol):
    def __init__(self, inner: asyncio.Protocol, limits: ConnectionLimits) -> None:
        self.inner = inner
        self.limits = limits
        self.transport: asyncio.Transport | None = None
        self.refused = False
        self.headers_seen = False
        self._tail = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if len(self.limits.open) >= self.limits.max_connections:
            self.refused = True
            log.warning("client_refused", reason="max_connections", max_connections=self.limits.max_connections)
            transport.write(TOO_MANY)  # type: ignore[attr-defined]
            transport.close()
            return
        self.limits.open.add(self)
        self._timer = asyncio.get_running_loop().call_later(self.limits.headers_s, self._too_slow)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if not self.headers_seen:
            window = self._tail + data
            if HEADERS_END in window:
                self.headers_seen = True
                self._cancel()
            else:
                self._tail = window[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self.refused else self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self.limits.open.discard(self)
        if not self.refused:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def _too_slow(self) -> None:
        if self.headers_seen or self.transport is None or self.transport.is_closing():
            return
        log.warning("client_too_slow", waited_s=self.limits.headers_s, what="request line and headers",
                    setting="timeouts.client_headers_s")
        self.transport.write(TOO_SLOW)
        self.transport.close()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class GuardedSite(web.BaseSite):
    """aiohttp's TCPSite, its connections guarded."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, limits: ConnectionLimits,
                 backlog: int = 1024) -> None:
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
            lambda: GuardedProtocol(server(), self.limits), self._host, self._port, backlog=self._backlog,
            reuse_address=True)
