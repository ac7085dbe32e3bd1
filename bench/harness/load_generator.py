"""Sends a workload to one URL on its schedule (open loop) and times every request as a client sees it:
TTFT is the first streamed token, end-to-end the last byte; output tokens come from the final usage chunk; TPOT (time
per output token after the first, DistServe's decode SLO metric) is the time from the first to the last streamed token
chunk over the tokens between them."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import aiohttp

from bench.workloads.request import BenchRequest

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=300)


@dataclass(frozen=True)
class RequestResult:
    ok: bool
    ttft_s: float
    e2e_s: float
    output_tokens: int
    status: int = 200  # the HTTP status (0: no answer)
    tpot_s: float = 0.0  # mean time per output token after the first (0 for one-token answers)


async def send(session: aiohttp.ClientSession, url: str, request: BenchRequest) -> RequestResult:
    began = time.perf_counter()
    first: float | None = None
    last = 0.0
    chunks = 0
    tokens = 0
    try:
        async with session.post(
            url + request.path, json=request.body, headers=request.headers or None, timeout=REQUEST_TIMEOUT
        ) as response:
            if response.status != 200:
                await response.read()
                return RequestResult(False, 0.0, time.perf_counter() - began, 0, response.status)
            async for line in response.content:
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("choices"):
                    last = time.perf_counter()
                    chunks += 1
                    if first is None:
                        first = last
                usage = chunk.get("usage")
                if usage:
                    tokens = int(usage.get("completion_tokens") or 0)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return RequestResult(False, 0.0, time.perf_counter() - began, 0, 0)
    end = time.perf_counter()
    steps = (tokens or chunks) - 1
    tpot = (last - first) / steps if first is not None and steps > 0 else 0.0
    return RequestResult(first is not None, (first or end) - began, end - began, tokens, tpot_s=tpot)


async def run_workload(url: str, requests: list[BenchRequest]) -> tuple[list[RequestResult], float]:
    """All results and the wall time from the first send to the last answer."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def scheduled(request: BenchRequest) -> RequestResult:
            await asyncio.sleep(max(0.0, start + request.at_s - loop.time()))
            return await send(session, url, request)

        results = await asyncio.gather(*(scheduled(r) for r in requests))
        return list(results), loop.time() - start
