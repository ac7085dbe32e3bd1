"""The bench's simulated vLLM engine on loopback: it tokenizes the prompt as vLLM does (its own path,
bench/fake_engine/tokenizer.py, never the router's), queues and batches requests
through an :class:`~bench.fake_engine.simulator.EngineSimulator` (prefix cache hits and evictions, the time the timing
model says), reports vLLM's metrics, publishes KV events and speaks the NIXL P/D protocol's HTTP side, with vLLM
0.32's answer shapes (testbed/openai_shapes.py). The contract test (tests/e2e/test_fake_engine_contract.py) holds its
answers to real vLLM's fields. The router's unit tests use testbed/fault_engine.py instead."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bench.fake_engine.kv_event_publisher import KvEventPublisher
from bench.fake_engine.metrics_text import metrics_text
from bench.fake_engine.simulator import DONE, EngineSimulator, Mode, SimulatedRequest
from bench.fake_engine.tokenizer import EngineTokenizer
from testbed import openai_shapes as shapes
from testbed.loopback_engine import LoopbackEngine


@dataclass(kw_only=True)
class SimulatedEngine(LoopbackEngine):
    simulator: EngineSimulator
    tokenizer: EngineTokenizer
    publisher: KvEventPublisher | None = None

    async def start(self, port: int = 0) -> None:
        self.simulator.start()
        await super().start(port)

    async def stop(self) -> None:
        await self.simulator.stop()
        if self.publisher is not None:
            self.publisher.close()
        await super().stop()

    def load(self) -> tuple[int, int]:
        return len(self.simulator.running), len(self.simulator.waiting)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=metrics_text(self.simulator, self.model))

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._simulated(request, "text_completion")

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._simulated(request, "chat.completion")

    async def _simulated(self, request: web.Request, kind: shapes.Kind) -> web.StreamResponse:
        """A generation through the simulator: queued, batched, cached and timed like a vLLM engine."""
        body = json.loads(await request.read())
        transfer = shapes.transfer_mode(body.get("kv_transfer_params"))
        mode: Mode = "local"
        if transfer == "prefill_only":
            mode = "prefill_only"
        elif transfer == "pull":
            mode = "pull"
            self.pulled += 1
        elif transfer == "recompute":
            self.recomputed += 1
        count = 1 if mode == "prefill_only" else int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
        job = self.simulator.submit(
            SimulatedRequest(self.tokenizer.tokens(kind == "chat.completion", body), count, mode)
        )
        try:
            if mode == "prefill_only" or not body.get("stream"):
                while await job.output.get() != DONE:
                    pass
                return self._document(request, kind, job)
            return await self._stream(request, body, kind, job)
        except asyncio.CancelledError:
            self.simulator.abort(job)
            self.aborted += 1
            raise

    def _usage(self, job: SimulatedRequest) -> dict[str, Any]:
        return shapes.usage(
            len(job.tokens),
            job.generated,
            job.hit_tokens,
            details=self.prompt_tokens_details,
            created_cache_tokens=job.computed_tokens or None,
        )

    def _document(self, request: web.Request, kind: shapes.Kind, job: SimulatedRequest) -> web.Response:
        params = None
        if job.mode == "prefill_only":
            params = shapes.prefill_kv_transfer_params(
                self.name, shapes.request_id(request.headers), job.block_ids, len(job.tokens), job.hit_tokens
            )
        text = " ".join(f"tok{i}" for i in range(job.generated))
        return web.json_response(shapes.document(kind, f"cmpl-{self.name}", self.model, text, self._usage(job), params))

    async def _stream(
        self, request: web.Request, body: dict[str, Any], kind: shapes.Kind, job: SimulatedRequest
    ) -> web.StreamResponse:
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        answer_id = f"cmpl-{self.name}"
        created = int(time.time())
        while (index := await job.output.get()) != DONE:
            if kind == "chat.completion" and index == 0:
                await out.write(shapes.sse(shapes.opening_chunk(answer_id, self.model, created)))
            piece = ("" if index == 0 else " ") + f"tok{index}"
            await out.write(
                shapes.sse(shapes.token_chunk(kind, answer_id, self.model, created, piece, index == job.max_tokens - 1))
            )
        if (body.get("stream_options") or {}).get("include_usage"):
            await out.write(shapes.sse(shapes.usage_chunk(kind, answer_id, self.model, created, self._usage(job))))
        await out.write(shapes.SSE_DONE)
        await out.write_eof()
        return out
