"""The floor of each HTTP stack: a pass-through proxy to one engine, nothing else, and aiohttp's P/D floor: both legs
(prefill with max_tokens=1, its kv_transfer_params spliced into decode's body) on uvloop, nothing else. Comparing
the router against these shows what the stack costs and what the router's own work costs.
Usage: python -m bench.router_overhead.minimal_proxies aiohttp|starlette PORT UPSTREAM_URL
       python -m bench.router_overhead.minimal_proxies aiohttp-pd PORT PREFILL_URL DECODE_URL"""

from __future__ import annotations

import sys
from collections.abc import Callable


def aiohttp_proxy(port: int, upstream: str) -> None:
    import aiohttp
    from aiohttp import web

    async def session_ctx(app: web.Application):
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await app["session"].close()

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with request.app["session"].post(
            upstream + request.path, data=body, headers={"Content-Type": "application/json"}
        ) as response:
            out = web.StreamResponse(status=response.status, headers={"Content-Type": response.headers["Content-Type"]})
            await out.prepare(request)
            async for chunk in response.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/completions", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def aiohttp_pd_proxy(port: int, prefill: str, decode: str) -> None:
    import json

    import aiohttp
    import uvloop
    from aiohttp import web

    from runtime.router.flow.wire import PREFILL_LEG
    from runtime.router.requests.json_splice import with_fields

    async def session_ctx(app: web.Application):
        app["session"] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        )
        yield
        await app["session"].close()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {"Content-Type": "application/json"}
        session = request.app["session"]
        async with session.post(
            prefill + request.path, data=with_fields(body, PREFILL_LEG), headers=headers
        ) as response:
            params = json.loads(await response.read())["kv_transfer_params"]
        async with session.post(
            decode + request.path, data=with_fields(body, {"kv_transfer_params": params}), headers=headers
        ) as response:
            return web.Response(
                status=response.status,
                body=await response.read(),
                headers={"Content-Type": response.headers["Content-Type"]},
            )

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/completions", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop())


def starlette_proxy(port: int, upstream: str) -> None:
    import httpx
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    client = httpx.AsyncClient(
        base_url=upstream, limits=httpx.Limits(max_connections=None, max_keepalive_connections=256)
    )

    async def handle(request: Request) -> StreamingResponse:
        body = await request.body()
        upstream_request = client.build_request(
            "POST", request.url.path, content=body, headers={"Content-Type": "application/json"}
        )
        response = await client.send(upstream_request, stream=True)

        async def relay():
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await response.aclose()

        return StreamingResponse(
            relay(), status_code=response.status_code, media_type=response.headers.get("content-type")
        )

    app = Starlette(routes=[Route("/v1/completions", handle, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    kind, port, upstreams = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    proxies: dict[str, Callable[..., None]] = {
        "aiohttp": aiohttp_proxy,
        "aiohttp-pd": aiohttp_pd_proxy,
        "starlette": starlette_proxy,
    }
    proxies[kind](port, *upstreams)
