"""One layout's replay in virtual time: the routing benchmark's simulated engines (bench/fake_engine/simulator.py,
the same step, KV and prefix-cache model, sized by bench/fake_engine/hardware.py) behind a model of pdstack's P/D
routing, in one process with no HTTP, as fast as the bookkeeping runs (bench/plan/virtual_time.py).

The routing model (pdstack's precise mode, simplified; the replay runs the real router):
- every request is disaggregated (pdstack goes decode-only under 256 prompt tokens; trace prompts are longer);
- prefill: among the engines whose queue (waiting + running + pulling) is within ``LOAD_SLACK`` of the least loaded,
  the one holding the longest cached or pending prefix of the prompt (a routed request's blocks count as pending
  until its prefill ends, as pdstack's pending prefixes do); ties to the least loaded, then the least recently used;
- decode: the least loaded engine.
TTFT is the decode leg's first token (prefill, pull, first step), TPOT the mean gap of the later tokens.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from bench.fake_engine.kv_cache import KvCache, block_hashes
from bench.fake_engine.simulator import DONE, EngineSimulator, SimulatedRequest
from bench.fake_engine.timing import EngineTiming
from bench.plan import virtual_time

LOAD_SLACK = 2


@dataclass(frozen=True)
class PlannedRequest:
    at_s: float
    """Modelled seconds after the start."""
    tokens: Sequence[int]
    output_tokens: int


@dataclass(frozen=True)
class Outcome:
    ttft_ms: float
    tpot_ms: float
    at_s: float


@dataclass(frozen=True)
class SimulationResult:
    outcomes: list[Outcome]
    prompt_tokens: int
    computed_tokens: int
    """Prompt tokens the prefill engines computed (the rest hit their caches)."""

    @property
    def hit_rate(self) -> float:
        return 1.0 - self.computed_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


class _Prefill:
    def __init__(self, engine: EngineSimulator) -> None:
        self.engine = engine
        self.pending: Counter[int] = Counter()
        self.last_used = 0

    @property
    def load(self) -> int:
        e = self.engine
        return len(e.waiting) + len(e.running) + len(e.transferring)

    def prefix(self, hashes: list[int]) -> int:
        count = 0
        for block in hashes:
            if not self.engine.cache.holds(block) and not self.pending[block]:
                break
            count += 1
        return count


async def _replay(
    requests: Sequence[PlannedRequest],
    prefills: int,
    decodes: int,
    timing: EngineTiming,
    capacity_blocks: int,
    block_size: int,
    decode_timing: EngineTiming,
    decode_capacity_blocks: int,
) -> SimulationResult:
    timing = timing.model_copy(update={"time_scale": 1.0})
    decode_timing = decode_timing.model_copy(update={"time_scale": 1.0})
    prefill = [_Prefill(EngineSimulator(timing, KvCache(capacity_blocks, block_size))) for _ in range(prefills)]
    decode = [EngineSimulator(decode_timing, KvCache(decode_capacity_blocks, block_size)) for _ in range(decodes)]
    for engine in [p.engine for p in prefill] + decode:
        engine.start()
    loop = asyncio.get_running_loop()
    start = loop.time()
    turn = itertools.count(1)

    async def one(request: PlannedRequest) -> Outcome:
        await asyncio.sleep(max(0.0, start + request.at_s - loop.time()))
        arrived = loop.time()
        tokens = list(request.tokens)  # built once, held while the request runs (a trace's are lazy)
        hashes = block_hashes(tokens, block_size)
        least = min(p.load for p in prefill)
        chosen = max(
            (p for p in prefill if p.load <= least + LOAD_SLACK),
            key=lambda p: (p.prefix(hashes), -p.load, -p.last_used),
        )
        chosen.last_used = next(turn)
        chosen.pending.update(hashes)
        job = chosen.engine.submit(SimulatedRequest(tokens, 1, "prefill_only"))
        while await job.output.get() != DONE:
            pass
        chosen.pending.subtract(hashes)
        target = min(decode, key=lambda e: (len(e.waiting) + len(e.running) + len(e.transferring), e.cache.usage()))
        leg = target.submit(SimulatedRequest(tokens, request.output_tokens, "pull"))
        first = last = None
        while await leg.output.get() != DONE:
            last = loop.time()
            first = last if first is None else first
        assert first is not None and last is not None
        steps = request.output_tokens - 1
        return Outcome((first - arrived) * 1000.0, (last - first) * 1000.0 / steps if steps > 0 else 0.0, request.at_s)

    try:
        outcomes = await asyncio.gather(*(one(r) for r in requests))
    finally:
        for engine in [p.engine for p in prefill] + decode:
            await engine.stop()
    return SimulationResult(
        list(outcomes), sum(len(r.tokens) for r in requests), sum(p.engine.counters.local_compute for p in prefill)
    )


def simulate(
    requests: Sequence[PlannedRequest],
    prefills: int,
    decodes: int,
    timing: EngineTiming,
    capacity_blocks: int,
    block_size: int = 16,
    decode_timing: EngineTiming | None = None,
    decode_capacity_blocks: int | None = None,
) -> SimulationResult:
    """Replay ``requests`` on ``prefills`` engines of ``timing`` and ``capacity_blocks`` and ``decodes`` engines of
    ``decode_timing`` and ``decode_capacity_blocks`` (the prefill engines' when None)."""
    return virtual_time.run(
        _replay(
            requests,
            prefills,
            decodes,
            timing,
            capacity_blocks,
            block_size,
            decode_timing or timing,
            decode_capacity_blocks or capacity_blocks,
        )
    )
