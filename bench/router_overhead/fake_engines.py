"""Runs a fast fake prefill and decode engine (the unit tests' FakeEngine, recording off) until terminated.
Usage: python -m bench.router_overhead.fake_engines PREFILL_PORT DECODE_PORT"""

from __future__ import annotations

import asyncio
import sys

from bench.fake_engine.engine import FakeEngine


async def main(prefill_port: int, decode_port: int) -> None:
    engines = [FakeEngine("prefill", record=False, port=prefill_port), FakeEngine("decode", record=False,
                                                                                   port=decode_port)]
    for engine in engines:
        await engine.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
