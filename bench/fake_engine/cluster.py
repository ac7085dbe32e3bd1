"""Runs a set of simulated engines in one process until SIGTERM: ``python -m bench.fake_engine.cluster SPEC.json``.

The spec (pydantic, below) names each engine's role, HTTP port and KV-event port, and the timing, capacity and
tokenizer they share. One process, one event loop: the engines cost the harness one core, not one each."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any, Literal

import zmq
from pydantic import BaseModel, ConfigDict

from bench.fake_engine.engine import SimulatedEngine
from bench.fake_engine.kv_cache import KvCache
from bench.fake_engine.kv_event_publisher import KvEventPublisher
from bench.fake_engine.simulator import EngineSimulator
from bench.fake_engine.timing import EngineTiming
from bench.fake_engine.tokenizer import EngineTokenizer


class EngineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    role: Literal["prefill", "decode"]
    http_port: int
    kv_events_port: int


class ClusterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "tiny"
    tokenizer: str
    block_size: int = 16
    capacity_blocks: int
    host_capacity_blocks: int = 0
    """Each engine's host KV tier, in blocks (0: none)."""
    timing: EngineTiming = EngineTiming()
    engines: list[EngineSpec]


def build_engine(
    spec: EngineSpec, cluster: ClusterSpec, tokenizer: EngineTokenizer, context: zmq.Context[Any]
) -> SimulatedEngine:
    endpoint = f"tcp://127.0.0.1:{spec.kv_events_port}"
    publisher = KvEventPublisher(
        endpoint, f"kv@127.0.0.1:{spec.http_port}@{cluster.model}", cluster.block_size, context
    )
    cache = KvCache(cluster.capacity_blocks, cluster.block_size, publisher, cluster.host_capacity_blocks)
    return SimulatedEngine(
        name=spec.name,
        model=cluster.model,
        block_size=cluster.block_size,
        port=spec.http_port,
        simulator=EngineSimulator(cluster.timing, cache),
        tokenizer=tokenizer,
        publisher=publisher,
        kv_events_endpoint=endpoint,
    )


async def serve(cluster: ClusterSpec) -> None:
    tokenizer = EngineTokenizer(cluster.tokenizer)
    context: zmq.Context[Any] = zmq.Context()
    engines = [build_engine(spec, cluster, tokenizer, context) for spec in cluster.engines]
    for engine in engines:
        await engine.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for engine in engines:
        await engine.stop()
    context.term()


if __name__ == "__main__":
    asyncio.run(serve(ClusterSpec.model_validate_json(Path(sys.argv[1]).read_text())))
