"""The plain round-robin baseline: the smallest P/D proxy that works (vLLM's toy proxy, in aiohttp). Prefill leg to
the next prefill engine, decode leg with the returned ``kv_transfer_params`` to the next decode engine, streamed back.
No cache awareness, no load awareness, no retries. Usage: ``python -m bench.systems.round_robin_proxy PORT P1,P2 D1,D2``
"""

from __future__ import annotations

import itertools
import sys
import uuid

import aiohttp
from aiohttp import web

PREFILL_FIELDS = {
    "max_tokens": 1,
    "stream": False,
    "stream_options": None,
    "kv_transfer_params": {
        "do_remote_decode": True,
        "do_remote_prefill": False,
        "remote_engine_id": None,
        "remote_block_ids": None,
        "remote_host": None,
        "remote_port": None,
    },
}


def build(prefills: list[str], decodes: list[str]) -> web.Application:
    next_prefill, next_decode = itertools.cycle(prefills), itertools.cycle(decodes)
    app = web.Application()
    sessions: dict[str, aiohttp.ClientSession] = {}

    async def open_session(app: web.Application) -> None:
        sessions["s"] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=600)
        )

    async def close_session(app: web.Application) -> None:
        await sessions["s"].close()

    async def proxy(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        headers = {"X-Request-Id": request.headers.get("X-Request-Id") or uuid.uuid4().hex}
        session = sessions["s"]
        async with session.post(
            next(next_prefill) + request.path, json={**body, **PREFILL_FIELDS}, headers=headers
        ) as prefill:
            answer = await prefill.json()
        body["kv_transfer_params"] = answer.get("kv_transfer_params")
        async with session.post(next(next_decode) + request.path, json=body, headers=headers) as decode:
            out = web.StreamResponse(
                status=decode.status, headers={"Content-Type": decode.headers.get("Content-Type", "application/json")}
            )
            await out.prepare(request)
            async for chunk in decode.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_post("/v1/completions", proxy)
    app.router.add_post("/v1/chat/completions", proxy)
    app.router.add_get("/health", health)
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    return app


if __name__ == "__main__":
    web.run_app(
        build(sys.argv[2].split(","), sys.argv[3].split(",")),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        access_log=None,
        print=None,
    )
