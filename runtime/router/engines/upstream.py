"""Calls to the engines: one pooled aiohttp session, connect / first-byte / idle-stream timeouts, and the
classification of failures into retryable (nothing reached the client yet, another engine may serve) or not."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import aiohttp
from aiohttp.payload import BytesPayload
from yarl import URL

from runtime.router.config import Timeouts
from runtime.router.engines.engine import Engine


class UpstreamFailure(Exception):
    """An engine could not be reached, timed out or answered 5xx; ``kind`` names it for metrics, ``detail`` (which
    names the timeout that fired) is for the log, never for the client. ``decode_alive``: the engine answered (a
    decode that fails a KV pull this way may still serve the request decode-only)."""

    def __init__(
        self, engine: Engine, kind: str, detail: str, status: int | None = None, decode_alive: bool | None = None
    ) -> None:
        super().__init__(f"{engine.name}: {kind}: {detail}")
        self.engine = engine
        self.kind = kind
        self.detail = detail
        self.status = status
        self.decode_alive = status is not None if decode_alive is None else decode_alive


@functools.lru_cache(maxsize=4096)
def engine_url(base: str, path: str) -> URL:
    """An engine path's URL, parsed once rather than on every call (bounded: engines come and go)."""
    return URL(base + path)


class Upstream:
    def __init__(self, timeouts: Timeouts) -> None:
        self.timeouts = timeouts
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, enable_cleanup_closed=True)
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.timeouts.connect_s, sock_read=self.timeouts.idle_stream_s
        )
        # Accept-Encoding: identity. The router relays engine bytes as they come and decodes no content coding, so it
        # asks for none; leaving the header out would accept any coding (RFC 9110 12.5.3), and aiohttp would add
        # "gzip, deflate" by itself (its auto headers)
        # no cookie jar: the session is shared by every client, so an engine's Set-Cookie must not ride along on
        # other clients' requests (and filtering cookies costs on every call)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            headers={"Accept-Encoding": "identity"},
            skip_auto_headers=("User-Agent",),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Upstream.start() was not awaited")
        return self._session

    @asynccontextmanager
    async def post(
        self, engine: Engine, path: str, body: bytes, headers: Mapping[str, str]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST and yield the response once its headers arrived. Connection failures, first-byte timeouts and 5xx
        answers raise :class:`UpstreamFailure` before the caller sees anything (so it may retry elsewhere). The
        engine's requests in flight are its registry's to count (:meth:`EngineRegistry.started`), not this client's."""
        try:
            async with asyncio.timeout(self.timeouts.first_byte_s):
                response = await self.session.post(
                    engine_url(engine.url, path), data=BytesPayload(body), headers=headers
                )
        except aiohttp.ConnectionTimeoutError:
            raise UpstreamFailure(
                engine, "connect_timeout", f"connect_s={self.timeouts.connect_s} s passed without a connection"
            ) from None
        except aiohttp.ServerTimeoutError:
            raise UpstreamFailure(
                engine, "idle_timeout", f"idle_stream_s={self.timeouts.idle_stream_s} s passed without a byte"
            ) from None
        except TimeoutError:
            raise UpstreamFailure(
                engine,
                "first_byte_timeout",
                f"first_byte_s={self.timeouts.first_byte_s} s passed without response headers",
            ) from None
        except aiohttp.ClientConnectorError as error:
            raise UpstreamFailure(engine, "connect", str(error)) from error
        except (aiohttp.ClientError, OSError) as error:
            raise UpstreamFailure(engine, "connection", repr(error)) from error
        if response.status >= 500:
            try:
                detail = (await response.read())[:300].decode(errors="replace")
            except (aiohttp.ClientError, TimeoutError):
                detail = ""
            response.release()
            raise UpstreamFailure(engine, f"http_{response.status}", detail, status=response.status)
        try:
            yield response
        except BaseException:
            response.close()  # the client left or the stream broke: drop the connection, the engine aborts
            raise
        else:
            response.release()
