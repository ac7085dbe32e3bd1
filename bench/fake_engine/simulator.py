"""One simulated vLLM engine: a waiting queue, a running batch, a KV cache, and a step loop that costs what
:class:`~bench.fake_engine.timing.EngineTiming` says.

Each step (vLLM V1, chunked prefill on):
  1. admit waiting requests in arrival order while the KV cache has room for their prompt and output blocks and the
     step's token budget allows (the head of the queue blocks the rest when it does not fit: vLLM queues when full);
  2. a request that pulls KV (decode leg of P/D) first waits for the transfer, then joins the batch;
  3. the step lasts ``step_ms(uncached prompt tokens admitted, context tokens of the decoding requests)``;
  4. after it, every newly prefilled request has its first token, every decoding request one more.
Counters mirror vLLM's metrics: prefix-cache queries and hits (tokens), prompt tokens by source (local_compute,
local_cache_hit, external_kv_transfer), generation tokens, finished requests.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from bench.fake_engine.kv_cache import Allocation, KvCache, block_hashes
from bench.fake_engine.timing import EngineTiming

Mode = Literal["local", "prefill_only", "pull"]
DONE = -1


@dataclass
class SimulatedRequest:
    tokens: list[int]
    max_tokens: int
    mode: Mode
    hashes: list[int] = field(default_factory=list)
    hit_tokens: int = 0
    host_hit_tokens: int = 0
    """Of ``hit_tokens``, those reloaded from the host tier (bench/fake_engine/kv_cache.py)."""
    computed_tokens: int = 0
    pulled_tokens: int = 0
    generated: int = 0
    block_ids: list[int] = field(default_factory=list)
    allocation: Allocation | None = None
    ready_at: float = 0.0
    output: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    """One item per generated token (its index), then ``DONE``."""


@dataclass
class EngineCounters:
    prefix_queries: int = 0
    prefix_hits: int = 0
    host_hits: int = 0
    local_compute: int = 0
    local_cache_hit: int = 0
    external_kv_transfer: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    finished: int = 0
    steps: int = 0


class EngineSimulator:
    def __init__(self, timing: EngineTiming, cache: KvCache) -> None:
        self.timing = timing
        self.cache = cache
        self.block_size = cache.block_size
        self.counters = EngineCounters()
        self.waiting: deque[SimulatedRequest] = deque()
        self.transferring: list[SimulatedRequest] = []
        self.running: list[SimulatedRequest] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._block_ids = itertools.count(1)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def submit(self, request: SimulatedRequest) -> SimulatedRequest:
        request.hashes = block_hashes(request.tokens, self.block_size)
        self.waiting.append(request)
        self._wake.set()
        return request

    def abort(self, request: SimulatedRequest) -> None:
        """The client left: free what it holds at once (vLLM aborts the request)."""
        if request in self.waiting:
            self.waiting.remove(request)
        for queue in (self.transferring, self.running):
            if request in queue:
                queue.remove(request)
                self._finish(request, count=False)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not (self.waiting or self.transferring or self.running):
                self._wake.clear()
                await self._wake.wait()
            prefilling = self._admit(loop.time())
            now = loop.time()
            for request in [r for r in self.transferring if r.ready_at <= now]:
                self.transferring.remove(request)
                self.cache.store(request.allocation, request.hashes, request.tokens)  # type: ignore[arg-type]
                self.running.append(request)
            decoding = [r for r in self.running if r not in prefilling]
            if not prefilling and not decoding:
                wake_at = min((r.ready_at for r in self.transferring), default=now + 0.001)
                await asyncio.sleep(max(0.0, wake_at - now))
                continue
            context = sum(len(r.tokens) + r.generated for r in decoding)
            prefill_tokens = sum(r.computed_tokens for r in prefilling)
            pairs = sum(self.timing.attention_pairs(r.hit_tokens, r.computed_tokens) for r in prefilling)
            reload_ms = self.timing.host_load_ms(sum(r.host_hit_tokens for r in prefilling))
            step_ms = (self.timing.step_ms(prefill_tokens, context, pairs) + reload_ms) * self.timing.time_scale
            await asyncio.sleep(step_ms / 1000.0)
            self.counters.steps += 1
            for request in prefilling:
                self.cache.store(request.allocation, request.hashes, request.tokens)  # type: ignore[arg-type]
            for request in prefilling + decoding:
                self._emit(request)

    def _admit(self, now: float) -> list[SimulatedRequest]:
        admitted: list[SimulatedRequest] = []
        budget = self.timing.max_batched_tokens
        while self.waiting and len(self.running) + len(self.transferring) < self.timing.max_running:
            request = self.waiting[0]
            cap = (len(request.tokens) - 1) // self.block_size  # vLLM computes at least the last prompt token
            hit = min(self.cache.hit_blocks(request.hashes), cap)
            host_hit = (
                min(self.cache.host_hit_blocks(request.hashes, hit), cap - hit) if self.cache.host_capacity else 0
            )
            total = -(-(len(request.tokens) + request.max_tokens) // self.block_size)
            uncached = len(request.tokens) - (hit + host_hit) * self.block_size
            if request.mode != "pull" and admitted and uncached > budget:
                break
            if not self.cache.can_allocate(total - hit):
                break
            self.waiting.popleft()
            request.allocation = self.cache.allocate(request.hashes, hit, total - hit)
            request.block_ids = [next(self._block_ids) for _ in range(-(-len(request.tokens) // self.block_size))]
            request.host_hit_tokens = host_hit * self.block_size
            request.hit_tokens = hit * self.block_size + request.host_hit_tokens
            counters = self.counters
            counters.prefix_queries += len(request.tokens)
            counters.prefix_hits += hit * self.block_size
            counters.host_hits += request.host_hit_tokens
            counters.prompt_tokens += len(request.tokens)
            counters.local_cache_hit += request.hit_tokens
            if request.mode == "pull":
                request.pulled_tokens = uncached
                counters.external_kv_transfer += uncached
                wait_ms = self.timing.transfer_ms(uncached) + self.timing.host_load_ms(request.host_hit_tokens)
                request.ready_at = now + wait_ms * self.timing.time_scale / 1000.0
                self.transferring.append(request)
            else:
                request.computed_tokens = uncached
                counters.local_compute += uncached
                budget -= uncached
                self.running.append(request)
                admitted.append(request)
        return admitted

    def _emit(self, request: SimulatedRequest) -> None:
        request.output.put_nowait(request.generated)
        request.generated += 1
        self.counters.generation_tokens += 1
        if request.generated >= request.max_tokens:
            self.running.remove(request)
            self._finish(request, count=True)

    def _finish(self, request: SimulatedRequest, count: bool) -> None:
        if request.allocation is not None:
            self.cache.release(request.allocation)
        if count:
            self.counters.finished += 1
        request.output.put_nowait(DONE)
