"""vLLM's utility endpoints, answered by one engine of the model: ``POST /tokenize``, ``POST /detokenize`` and
``GET /version`` (vLLM's benchmark client asks them to align prompt lengths; without them it warns and guesses).
They need no KV, so any available engine serves: decode first (it holds the model's tokenizer too), else prefill."""

from __future__ import annotations

import time

import aiohttp
from aiohttp import web

from runtime.roles import DECODE, PREFILL
from runtime.router.engines.engine import Engine
from runtime.router.engines.registry import EngineRegistry
from runtime.router.requests.api_error import ApiError

PATHS = {"/tokenize": "POST", "/detokenize": "POST", "/version": "GET"}
TIMEOUT = aiohttp.ClientTimeout(total=30.0)


def pick_engine(registry: EngineRegistry) -> Engine:
    now = time.monotonic()
    for role in (DECODE, PREFILL):
        engines = [engine for engine in registry.by_role(role) if engine.available(now)]
        if engines:
            return min(engines, key=lambda engine: engine.in_flight)
    raise ApiError(503, "no engine is available", code="no_engine_available")


async def forward(
    session: aiohttp.ClientSession, registry: EngineRegistry, request: web.Request, request_id: str
) -> web.Response:
    engine = pick_engine(registry)
    body = await request.read() if request.method == "POST" else None
    headers = {"X-Request-Id": request_id, "Content-Type": request.headers.get("Content-Type", "application/json")}
    try:
        async with session.request(
            request.method, engine.url + request.path, data=body, headers=headers, timeout=TIMEOUT
        ) as answer:
            payload = await answer.read()
            if 400 <= answer.status < 500:
                raise ApiError.from_engine(answer.status, payload)
            if answer.status >= 500:
                registry.record(engine, False)
                raise ApiError(
                    502, f"the engine could not answer {request.path} (request id {request_id})", code="upstream_failed"
                )
            return web.Response(
                status=answer.status,
                body=payload,
                headers={
                    "Content-Type": answer.headers.get("Content-Type", "application/json"),
                    "X-Request-Id": request_id,
                },
            )
    except (aiohttp.ClientError, TimeoutError):
        registry.record(engine, False)
        raise ApiError(
            502, f"the engine could not answer {request.path} (request id {request_id})", code="upstream_failed"
        ) from None
