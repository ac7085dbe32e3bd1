"""Runs a fast fake prefill and decode engine (the unit tests' FaultEngine, no faults, recording off) until
terminated.
Usage: python -m bench.router_overhead.fake_engines PREFILL_PORT DECODE_PORT"""

from __future__ import annotations

import asyncio
import sys

from testbed.fault_engine import FaultEngine


async def main(prefill_port: int, decode_port: int) -> None:
    engines = [
        FaultEngine("prefill", record=False, port=prefill_port),
        FaultEngine("decode", record=False, port=decode_port),
    ]
    for engine in engines:
        await engine.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
