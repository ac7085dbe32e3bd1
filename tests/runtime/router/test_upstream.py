"""Calls to the engines: the one session every client shares carries nothing from one call to the next."""

from __future__ import annotations

import asyncio

from aiohttp import web

from runtime.router.config import Timeouts
from runtime.router.engines.engine import Engine
from runtime.router.engines.upstream import Upstream
from testbed.ports import free_ports


def test_an_engines_cookie_never_rides_on_a_later_call() -> None:
    """An engine (or a proxy in front of it) that sets a cookie for one client's call must not see it come back on
    another client's call: the router's session is shared by every client."""
    cookies_seen: list[str | None] = []

    async def completions(request: web.Request) -> web.Response:
        cookies_seen.append(request.headers.get("Cookie"))
        response = web.json_response({"ok": True})
        response.set_cookie("session", "client-a")
        return response

    async def scenario() -> None:
        app = web.Application()
        app.router.add_post("/v1/completions", completions)
        runner = web.AppRunner(app)
        await runner.setup()
        (port,) = free_ports(1)
        await web.TCPSite(runner, "127.0.0.1", port).start()
        upstream = Upstream(Timeouts())
        await upstream.start()
        engine = Engine(url=f"http://localhost:{port}", role="decode")  # a name: a jar keeps no IP host cookies
        try:
            for _ in range(2):
                async with upstream.post(
                    engine, "/v1/completions", b'{"model":"m","prompt":"x"}', {"Content-Type": "application/json"}
                ) as response:
                    assert response.status == 200
                    await response.read()
        finally:
            await upstream.close()
            await runner.cleanup()

    asyncio.run(scenario())
    assert cookies_seen == [None, None]
