"""A fake vLLM engine that answers at once, records what it received and fails on demand (``Faults``): the router's
unit tests run against it, and bench/router_overhead uses it (recording off) as the fastest engine there is. Its
answers have vLLM 0.32's shapes (testbed/openai_shapes.py); its numbers (prompt tokens, cache hits) are rough."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from testbed import openai_shapes as shapes
from testbed.loopback_engine import LoopbackEngine


@dataclass
class Faults:
    status: int | None = None
    """Answer every generation with this HTTP status."""
    status_times: int = 0
    """With ``status``: only the first N requests fail (0: all)."""
    delay_s: float = 0.0
    """Wait before answering (first byte)."""
    die_after_chunks: int | None = None
    """Streaming: drop the connection after this many chunks."""
    hang_after_chunks: int | None = None
    """Streaming: go silent after this many chunks."""
    omit_params: bool = False
    """Prefill leg: answer without kv_transfer_params."""
    incomplete_params: bool = False
    """Prefill leg: answer params missing remote_host (decode would recompute)."""
    fail_pull: bool = False
    """Decode: answer 500 when asked to pull (like kv_load_failure_policy=fail with prefill gone)."""
    stale_peers: set[str] = field(default_factory=set)
    """Decode: prefill engine names whose KV it cannot pull (a stale NIXL handshake with them); it answers those
    pulls as ``fail_pull`` does and pulls from every other prefill."""
    fail_pull_in_stream: bool = False
    """Decode, streaming: when asked to pull, open the stream with vLLM 0.32's error event and end it (what its
    kv_load_failure_policy=fail does when the prefill's blocks cannot be read)."""
    stall_pull: bool = False
    """Decode, streaming: when asked to pull, send the headers and then nothing (its prefill died mid-transfer)."""
    chunk_delay_s: float = 0.0
    """Streaming: wait this long before each chunk (a stream that lasts, for restarts under load)."""
    body_cut: bool = False
    """Non-streaming: send the headers and half the body, then drop the connection."""
    body_silent: bool = False
    """Non-streaming: send the headers and half the body, then nothing."""
    compress: bool = False
    """Compress answers (gzip or deflate) when the request's Accept-Encoding allows it, as an HTTP server may
    (RFC 9110 12.5.3: a request without Accept-Encoding accepts any coding)."""


@dataclass
class FaultEngine(LoopbackEngine):
    faults: Faults = field(default_factory=Faults)
    waiting: float = 0.0
    """vllm:num_requests_waiting in /metrics."""
    kv_usage: float = 0.0
    """vllm:kv_cache_usage_perc in /metrics."""
    record: bool = True
    """Keep every body and its headers in ``received`` and ``headers``."""
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[Any] = field(default_factory=list)
    failed: int = 0
    max_running: int | None = None
    """Run at most this many generations at a time, each for ``run_s``; the rest wait in the engine's queue (as
    vLLM's max_num_seqs does). /metrics then reports the running and waiting counts."""
    run_s: float = 0.1
    running: int = 0
    queued: int = 0
    peak_queued: int = 0
    """The longest the engine's own queue got."""
    metrics_scrapes: int = 0
    """GET /metrics answered (a test waits for the router to have read a reading)."""

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "text_completion")

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "chat.completion")

    def load(self) -> tuple[int, int]:
        return self.running, int(self.waiting) + self.queued

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.max_running) if self.max_running else None

    async def metrics(self, request: web.Request) -> web.Response:
        self.metrics_scrapes += 1
        text = (
            "# HELP vllm:num_requests_waiting waiting\n# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_running{{engine="0",model_name="{self.model}"}} {float(self.running)}\n'
            f'vllm:num_requests_waiting{{engine="0",model_name="{self.model}"}} {self.waiting + self.queued}\n'
            f'vllm:kv_cache_usage_perc{{engine="0",model_name="{self.model}"}} {self.kv_usage}\n'
            f'vllm:cache_config_info{{block_size="{self.block_size}",engine="0"}} 1.0\n'
            "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
            f"# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {self.started_at}\n"
        )
        return web.Response(text=text)

    async def _generate(self, request: web.Request, kind: shapes.Kind) -> web.StreamResponse:
        body = await request.json()
        if self.record:
            self.received.append(body)
            self.headers.append(request.headers.copy())
        if self._slots is not None:
            return await self._run_in_slot(request, kind, body)
        return await self._generate_now(request, kind, body)

    async def _run_in_slot(self, request: web.Request, kind: shapes.Kind, body: dict[str, Any]) -> web.StreamResponse:
        self.queued += 1
        self.peak_queued = max(self.peak_queued, self.queued)
        try:
            await self._slots.acquire()  # type: ignore[union-attr]
        finally:
            self.queued -= 1
        self.running += 1
        try:
            await asyncio.sleep(self.run_s)
            return await self._generate_now(request, kind, body)
        finally:
            self.running -= 1
            self._slots.release()  # type: ignore[union-attr]

    async def _generate_now(self, request: web.Request, kind: shapes.Kind, body: dict[str, Any]) -> web.StreamResponse:
        faults = self.faults
        try:
            if faults.delay_s:
                await asyncio.sleep(faults.delay_s)
            if faults.status is not None and (faults.status_times == 0 or self.failed < faults.status_times):
                self.failed += 1
                return web.json_response(
                    {"error": {"message": "fake failure", "code": faults.status}}, status=faults.status
                )
            rejected = vllm_rejection(body)
            if rejected is not None:
                return web.json_response(rejected, status=400)
            mode = shapes.transfer_mode(body.get("kv_transfer_params"))
            if mode == "prefill_only":
                return self._prefill_answer(body, kind, request)
            pulling = mode in ("pull", "recompute")
            stale = (body.get("kv_transfer_params") or {}).get("remote_engine_id") in faults.stale_peers
            if pulling and (faults.fail_pull or stale):
                return web.json_response({"error": {"message": "KV load failed"}}, status=500)
            if mode == "pull":
                self.pulled += 1
            elif mode == "recompute":
                self.recomputed += 1
            if pulling and faults.fail_pull_in_stream and body.get("stream"):
                return await self._failed_pull_stream(request, kind)
            return await self._answer(request, body, kind, cached=mode == "pull", stall=pulling and faults.stall_pull)
        except asyncio.CancelledError:
            self.aborted += 1
            raise

    def _answer_id(self) -> str:
        return f"cmpl-{self.name}"

    def _prompt_tokens(self, body: dict[str, Any]) -> int:
        text = body.get("prompt") if "prompt" in body else json.dumps(body.get("messages"))
        return max(1, len(str(text)) // 4)

    def _usage(self, body: dict[str, Any], completion: int, cached: bool) -> dict[str, Any]:
        prompt = self._prompt_tokens(body)
        return shapes.usage(prompt, completion, prompt - 1 if cached else 0, details=self.prompt_tokens_details)

    def _prefill_answer(self, body: dict[str, Any], kind: shapes.Kind, request: web.Request) -> web.Response:
        params = None
        if not self.faults.omit_params:
            params = shapes.prefill_kv_transfer_params(
                self.name, shapes.request_id(request.headers), [1, 2], self._prompt_tokens(body), 0
            )
            if self.faults.incomplete_params:
                del params["remote_host"]
        return web.json_response(
            shapes.document(kind, self._answer_id(), self.model, "tok", self._usage(body, 1, False), params)
        )

    async def _failed_pull_stream(self, request: web.Request, kind: shapes.Kind) -> web.StreamResponse:
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        if kind == "chat.completion":  # vLLM 0.32 sends the role-only opening chunk before the failure
            await out.write(shapes.sse(shapes.opening_chunk(f"chatcmpl-{self.name}", self.model, int(time.time()))))
        await out.write(shapes.sse(shapes.error_body("Internal server error", "InternalServerError", 500)))
        await out.write(shapes.SSE_DONE)
        await out.write_eof()
        return out

    async def _half_body(self, request: web.Request, payload: bytes) -> web.StreamResponse:
        out = web.StreamResponse(headers={"Content-Type": "application/json"})
        out.content_length = len(payload)
        await out.prepare(request)
        await out.write(payload[: len(payload) // 2])
        if self.faults.body_cut:
            request.transport.close()  # type: ignore[union-attr]
            return out
        await asyncio.sleep(3600)
        return out

    async def _answer(
        self, request: web.Request, body: dict[str, Any], kind: shapes.Kind, cached: bool, stall: bool = False
    ) -> web.StreamResponse:
        count = int(body.get("max_tokens") or body.get("max_completion_tokens") or 4)
        tokens = [f"t{i}" for i in range(count)]
        usage = self._usage(body, count, cached)
        if not body.get("stream"):
            answer = web.json_response(shapes.document(kind, self._answer_id(), self.model, " ".join(tokens), usage))
            if self.faults.body_cut or self.faults.body_silent:
                return await self._half_body(request, answer.body)  # type: ignore[arg-type]
            if self.faults.compress:
                answer.enable_compression()
            return answer
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        if self.faults.compress:
            out.enable_compression()
        await out.prepare(request)
        if stall:
            await asyncio.sleep(3600)
        created = int(time.time())
        if kind == "chat.completion":
            await out.write(shapes.sse(shapes.opening_chunk(self._answer_id(), self.model, created)))
        for i, token in enumerate(tokens):
            if self.faults.die_after_chunks is not None and i == self.faults.die_after_chunks:
                request.transport.close()  # type: ignore[union-attr]
                return out
            if self.faults.hang_after_chunks is not None and i == self.faults.hang_after_chunks:
                await asyncio.sleep(3600)
            if self.faults.chunk_delay_s:
                await asyncio.sleep(self.faults.chunk_delay_s)
            piece = ("" if i == 0 else " ") + token
            await out.write(
                shapes.sse(shapes.token_chunk(kind, self._answer_id(), self.model, created, piece, i == count - 1))
            )
        if (body.get("stream_options") or {}).get("include_usage"):
            await out.write(shapes.sse(shapes.usage_chunk(kind, self._answer_id(), self.model, created, usage)))
        await out.write(shapes.SSE_DONE)
        await out.write_eof()
        return out


def vllm_rejection(body: dict[str, Any]) -> dict[str, Any] | None:
    """A few of vLLM 0.32's own request checks, with its messages and ``param`` (vllm/sampling_params.py
    ``_verify_args`` and the protocol's ``validate_stream_options``), answered in its error shape."""

    def error(message: str, param: str | None) -> dict[str, Any]:
        return shapes.error_body(message, "BadRequestError", 400, param)

    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int) and max_tokens < 1:
        return error(f"max_tokens must be at least 1, got {max_tokens}.", "max_tokens")
    min_tokens = body.get("min_tokens")
    if isinstance(min_tokens, int) and isinstance(max_tokens, int) and min_tokens > max_tokens:
        return error(f"min_tokens must be less than or equal to max_tokens={max_tokens}, got {min_tokens}.", None)
    temperature = body.get("temperature")
    if isinstance(temperature, (int, float)) and temperature < 0:
        return error(f"temperature must be non-negative, got {float(temperature)}.", "temperature")
    if body.get("stream_options") and not body.get("stream"):
        return error("Stream options can only be defined when `stream=True`.", "stream_options")
    return None
