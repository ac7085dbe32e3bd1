"""The simulated engine's P/D legs for a router that sends no X-Request-Id (SMG): the prefill leg's
kv_transfer_params still name a request (vLLM always has one), so the decode leg pulls instead of recomputing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import zmq

from bench.fake_engine.cluster import ClusterSpec, EngineSpec, build_engine
from bench.fake_engine.tokenizer import EngineTokenizer
from bench.workloads.vocabulary import write_tokenizer
from testbed.ports import free_ports


async def _legs(tokenizer_dir: Path) -> tuple[dict[str, object], int, int]:
    ports = free_ports(4)
    cluster = ClusterSpec(
        tokenizer=str(tokenizer_dir),
        capacity_blocks=64,
        engines=[
            EngineSpec(name="prefill-0", role="prefill", http_port=ports[0], kv_events_port=ports[1]),
            EngineSpec(name="decode-0", role="decode", http_port=ports[2], kv_events_port=ports[3]),
        ],
    )
    context: zmq.Context[Any] = zmq.Context()
    prefill, decode = (build_engine(spec, cluster, EngineTokenizer(tokenizer_dir), context) for spec in cluster.engines)
    await prefill.start()
    await decode.start()
    try:
        body = {"model": "tiny", "prompt": " ".join(f"w{i}" for i in range(40)), "max_tokens": 4}
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"http://127.0.0.1:{ports[0]}/v1/completions",
                json={**body, "max_tokens": 1, "kv_transfer_params": {"do_remote_decode": True}},
            ) as response:
                params = (await response.json())["kv_transfer_params"]
            async with session.post(
                f"http://127.0.0.1:{ports[2]}/v1/completions", json={**body, "kv_transfer_params": params}
            ) as response:
                assert response.status == 200
                await response.read()
        return params, decode.pulled, decode.recomputed
    finally:
        await prefill.stop()
        await decode.stop()
        context.term()


def test_decode_leg_pulls_when_the_router_sends_no_request_id(tmp_path: Path) -> None:
    params, pulled, recomputed = asyncio.run(_legs(write_tokenizer(tmp_path / "tokenizer")))
    assert isinstance(params["remote_request_id"], str) and params["remote_request_id"]
    assert (pulled, recomputed) == (1, 0)
