"""A fake vLLM engine on loopback: speaks the OpenAI API and the NIXL P/D protocol's HTTP side.

Two modes. Without a simulator it answers at once, records what it received and fails on demand (the router's unit
tests and bench/router_overhead use it so). With an :class:`~bench.fake_engine.simulator.EngineSimulator` it tokenizes
the prompt as vLLM does, queues and batches requests, hits and evicts its prefix cache, takes the time the timing model
says, reports vLLM's metrics and publishes KV events (bench/scheduling uses it so). The contract test
(tests/e2e/test_fake_engine_contract.py) holds both modes' answers to real vLLM's fields."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bench.fake_engine.kv_event_publisher import KvEventPublisher
from bench.fake_engine.metrics_text import metrics_text
from bench.fake_engine.simulator import DONE, EngineSimulator, Mode, SimulatedRequest
from runtime.router.openai_request import Endpoint, OpenAiRequest
from runtime.router.prompt_tokenizer import PromptTokenizer

PARAMS_NEEDED = ("remote_engine_id", "remote_request_id", "remote_host", "remote_port", "tp_size")


def request_id(request: web.Request) -> str:
    """The id vLLM gives a request: the client's X-Request-Id, else one of its own (never None: a decode leg needs it
    to pull, and routers such as SMG send no X-Request-Id)."""
    return request.headers.get("X-Request-Id") or f"cmpl-{uuid.uuid4().hex}"


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
    fail_pull_in_stream: bool = False
    """Decode, streaming: when asked to pull, open the stream with vLLM 0.32's error event and end it (what its
    kv_load_failure_policy=fail does when the prefill's blocks cannot be read)."""
    stall_pull: bool = False
    """Decode, streaming: when asked to pull, send the headers and then nothing (its prefill died mid-transfer)."""


@dataclass
class FakeEngine:
    name: str
    model: str = "tiny"
    block_size: int = 32
    prompt_tokens_details: bool = True
    faults: Faults = field(default_factory=Faults)
    waiting: float = 0.0
    kv_usage: float = 0.0
    healthy: bool = True
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[Any] = field(default_factory=list)
    pulled: int = 0
    recomputed: int = 0
    aborted: int = 0
    failed: int = 0
    health_checks: int = 0
    started_at: float = field(default_factory=time.time)
    """process_start_time_seconds in /metrics (as prometheus_client's process collector reports it in vLLM)."""
    record: bool = True
    port: int = 0
    simulator: EngineSimulator | None = None
    tokenizer: PromptTokenizer | None = None
    publisher: KvEventPublisher | None = None
    kv_events_endpoint: str | None = None
    max_model_len: int = 1024
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        # what vllm-router probes besides the OpenAI API
        for path in ("/get_server_info", "/server_info", "/get_model_info"):
            app.router.add_get(path, self._server_info)
        app.router.add_get("/get_load", self._load)
        app.router.add_get("/health_generate", self._health)
        app.router.add_get("/kv_event_sources", self._kv_event_sources)
        app.router.add_get("/version", self._version)
        app.router.add_post("/tokenize", self._tokenize)
        app.router.add_post("/detokenize", self._detokenize)
        return app

    async def start(self, port: int = 0) -> None:
        if self.simulator is not None:
            self.simulator.start()
        self._runner = web.AppRunner(self.app(), handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port or self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.simulator is not None:
            await self.simulator.stop()
        if self.publisher is not None:
            self.publisher.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "vllm", "max_model_len": self.max_model_len}]})

    async def _tokenize(self, request: web.Request) -> web.Response:
        """vLLM's /tokenize answer shape: one id per character here (code points), enough to round-trip."""
        body = await request.json()
        tokens = [ord(ch) for ch in str(body.get("prompt", ""))]
        return web.json_response({"count": len(tokens), "max_model_len": self.max_model_len, "tokens": tokens,
                                  "token_strs": None})

    async def _detokenize(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"prompt": "".join(chr(t) for t in body.get("tokens", []))})

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "0.32.0+fake"})

    async def _server_info(self, request: web.Request) -> web.Response:
        block_size = self.simulator.block_size if self.simulator is not None else self.block_size
        return web.json_response({"model_path": self.model, "served_model_name": self.model,
                                  "block_size": block_size, "kv_block_size": block_size,
                                  "vllm_config": {"cache_config": {"block_size": block_size},
                                                  "model_config": {"served_model_name": self.model,
                                                                   "max_model_len": self.max_model_len}}})

    async def _load(self, request: web.Request) -> web.Response:
        simulator = self.simulator
        running = len(simulator.running) if simulator is not None else 0
        waiting = len(simulator.waiting) if simulator is not None else int(self.waiting)
        return web.json_response({"load": running + waiting, "num_running_reqs": running, "num_waiting_reqs": waiting})

    async def _kv_event_sources(self, request: web.Request) -> web.Response:
        endpoints = [self.kv_events_endpoint] if self.kv_events_endpoint else []
        return web.json_response({"endpoints": endpoints, "block_size": self.block_size})

    async def _health(self, request: web.Request) -> web.Response:
        self.health_checks += 1
        return web.Response(status=200 if self.healthy else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        if self.simulator is not None:
            return web.Response(text=metrics_text(self.simulator, self.model))
        text = (
            "# HELP vllm:num_requests_waiting waiting\n# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{engine="0",model_name="{self.model}"}} {self.waiting}\n'
            f'vllm:kv_cache_usage_perc{{engine="0",model_name="{self.model}"}} {self.kv_usage}\n'
            f'vllm:cache_config_info{{block_size="{self.block_size}",engine="0"}} 1.0\n'
            "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
            f"# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {self.started_at}\n"
        )
        return web.Response(text=text)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        if self.simulator is not None:
            return await self._simulated(request, "completions", "text_completion")
        return await self._generate(request, "text_completion")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if self.simulator is not None:
            return await self._simulated(request, "chat", "chat.completion")
        return await self._generate(request, "chat.completion")

    async def _simulated(self, request: web.Request, endpoint: Endpoint, kind: str) -> web.StreamResponse:
        """A generation through the simulator: queued, batched, cached and timed like a vLLM engine."""
        assert self.simulator is not None and self.tokenizer is not None
        raw = await request.read()
        api = OpenAiRequest.parse(endpoint, raw)  # the router's parser: it drops kv_transfer_params, a router field
        body = api.body
        params = (json.loads(raw).get("kv_transfer_params") or {}) if b'"kv_transfer_params"' in raw else {}
        mode: Mode = "local"
        if params.get("do_remote_decode"):
            mode = "prefill_only"
        elif params.get("do_remote_prefill") or params.get("remote_engine_id"):
            if all(params.get(name) is not None for name in PARAMS_NEEDED):
                mode = "pull"
                self.pulled += 1
            else:
                self.recomputed += 1
        count = 1 if mode == "prefill_only" else int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
        job = self.simulator.submit(SimulatedRequest(self.tokenizer.tokens(api), count, mode))
        try:
            if mode == "prefill_only" or not api.stream:
                while await job.output.get() != DONE:
                    pass
                return self._simulated_document(request, body, kind, job)
            return await self._simulated_stream(request, body, kind, job)
        except asyncio.CancelledError:
            self.simulator.abort(job)
            self.aborted += 1
            raise

    def _simulated_usage(self, job: SimulatedRequest) -> dict[str, Any]:
        prompt = len(job.tokens)
        usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": job.generated,
                                 "total_tokens": prompt + job.generated, "completion_tokens_details": None}
        if self.prompt_tokens_details:
            usage["prompt_tokens_details"] = {"cached_tokens": job.hit_tokens, "multimodal_tokens": None,
                                              "created_cache_tokens": job.computed_tokens or None}
        return usage

    def _simulated_document(self, request: web.Request, body: dict[str, Any], kind: str,
                            job: SimulatedRequest) -> web.Response:
        answer = self._document(body, kind, [f"tok{i}" for i in range(job.generated)], self._simulated_usage(job))
        answer.update({"service_tier": None, "system_fingerprint": None, "metrics": None, "ec_transfer_params": None})
        choice = answer["choices"][0]
        choice.update({"stop_reason": None, "token_ids": None, "routed_experts": None})
        if kind == "chat.completion":
            answer.update({"prompt_logprobs": None, "prompt_token_ids": None, "prompt_text": None})
        else:
            choice.update({"prompt_logprobs": None, "prompt_token_ids": None})
        if job.mode == "prefill_only":
            answer["kv_transfer_params"] = {
                "do_remote_prefill": True, "do_remote_decode": False, "remote_block_ids": [job.block_ids],
                "remote_engine_id": self.name, "remote_request_id": request_id(request),
                "remote_host": "127.0.0.1", "remote_port": 5600, "tp_size": 1, "pp_size": 1, "dcp_size": 1,
                "remote_num_tokens": len(job.tokens), "remote_prefill_cached_tokens": job.hit_tokens,
                "remote_blocks_expiry_time": time.time() + 30.0, "transfer_mode": "pull"}  # vLLM 0.32's keys
        else:
            answer["kv_transfer_params"] = None
        return web.json_response(answer)

    async def _simulated_stream(self, request: web.Request, body: dict[str, Any], kind: str,
                                job: SimulatedRequest) -> web.StreamResponse:
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        chat = kind == "chat.completion"
        object_name = "chat.completion.chunk" if chat else "text_completion"
        created = int(time.time())
        while (index := await job.output.get()) != DONE:
            piece = ("" if index == 0 else " ") + f"tok{index}"
            last = index == job.max_tokens - 1
            head = {"id": f"cmpl-{self.name}", "object": object_name, "created": created, "model": self.model}
            if chat and index == 0:  # vLLM opens a chat stream with the role alone
                opening = {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                "logprobs": None, "finish_reason": None}],
                           "prompt_token_ids": None, "prompt_text": None}
                await out.write(b"data: " + json.dumps(opening).encode() + b"\n\n")
            choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": "length" if last else None}
            if chat:
                choice["delta"] = {"content": piece}
            else:
                choice.update({"text": piece, "stop_reason": None, "prompt_token_ids": None, "token_ids": None})
            chunk = {**head, "choices": [choice]}
            await out.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            chunk = {"id": f"cmpl-{self.name}", "object": object_name, "created": created, "model": self.model,
                     "choices": [], "usage": self._simulated_usage(job), "system_fingerprint": "vllm-0.32.0-fake"}
            await out.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await out.write(b"data: [DONE]\n\n")
        await out.write_eof()
        return out

    async def _generate(self, request: web.Request, kind: str) -> web.StreamResponse:
        body = await request.json()
        if self.record:
            self.received.append(body)
            self.headers.append(request.headers.copy())
        faults = self.faults
        try:
            if faults.delay_s:
                await asyncio.sleep(faults.delay_s)
            if faults.status is not None and (faults.status_times == 0 or self.failed < faults.status_times):
                self.failed += 1
                return web.json_response({"error": {"message": "fake failure", "code": faults.status}},
                                         status=faults.status)
            rejected = _vllm_rejection(body)
            if rejected is not None:
                return web.json_response({"error": rejected}, status=400)
            params = body.get("kv_transfer_params") or {}
            if params.get("do_remote_decode"):
                return self._prefill_answer(body, kind, request)
            pulling = bool(params.get("do_remote_prefill") or params.get("remote_engine_id"))
            if pulling and faults.fail_pull:
                return web.json_response({"error": {"message": "KV load failed"}}, status=500)
            complete = pulling and all(params.get(name) is not None for name in PARAMS_NEEDED)
            if complete:
                self.pulled += 1
            elif pulling:
                self.recomputed += 1
            if pulling and faults.fail_pull_in_stream and body.get("stream"):
                out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await out.prepare(request)
                if kind == "chat.completion":  # vLLM 0.32 sends the role-only opening chunk before the failure
                    opening = {"id": f"chatcmpl-{self.name}", "object": "chat.completion.chunk",
                               "created": int(time.time()), "model": self.model,
                               "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                            "logprobs": None, "finish_reason": None}]}
                    await out.write(b"data: " + json.dumps(opening).encode() + b"\n\n")
                error = {"error": {"message": "Internal server error", "type": "InternalServerError", "param": None,
                                   "code": 500}}
                await out.write(b"data: " + json.dumps(error, separators=(",", ":")).encode() + b"\n\n")
                await out.write(b"data: [DONE]\n\n")
                await out.write_eof()
                return out
            return await self._answer(request, body, kind, cached=complete, stall=pulling and faults.stall_pull)
        except asyncio.CancelledError:
            self.aborted += 1
            raise

    def _prompt_tokens(self, body: dict[str, Any]) -> int:
        text = body.get("prompt") if "prompt" in body else json.dumps(body.get("messages"))
        return max(1, len(str(text)) // 4)

    def _usage(self, body: dict[str, Any], completion: int, cached: bool) -> dict[str, Any]:
        prompt = self._prompt_tokens(body)
        usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                 "total_tokens": prompt + completion}
        if self.prompt_tokens_details:
            usage["prompt_tokens_details"] = {"cached_tokens": prompt - 1 if cached else 0}
        return usage

    def _prefill_answer(self, body: dict[str, Any], kind: str, request: web.Request) -> web.Response:
        answer = self._document(body, kind, ["tok"], self._usage(body, 1, False))
        if not self.faults.omit_params:
            params = {"do_remote_prefill": True, "do_remote_decode": False, "remote_engine_id": self.name,
                      "remote_request_id": request_id(request), "remote_block_ids": [[1, 2]],
                      "remote_host": "127.0.0.1", "remote_port": 5600, "tp_size": 1}
            if self.faults.incomplete_params:
                del params["remote_host"]
            answer["kv_transfer_params"] = params
        return web.json_response(answer)

    def _document(self, body: dict[str, Any], kind: str, tokens: list[str], usage: dict[str, Any]) -> dict[str, Any]:
        text = " ".join(tokens)
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length", "logprobs": None}
        if kind == "chat.completion":
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {"id": f"cmpl-{self.name}", "object": kind, "created": int(time.time()), "model": self.model,
                "choices": [choice], "usage": usage}

    async def _answer(self, request: web.Request, body: dict[str, Any], kind: str, cached: bool,
                      stall: bool = False) -> web.StreamResponse:
        count = int(body.get("max_tokens") or body.get("max_completion_tokens") or 4)
        tokens = [f"t{i}" for i in range(count)]
        usage = self._usage(body, count, cached)
        if not body.get("stream"):
            return web.json_response(self._document(body, kind, tokens, usage))
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        if stall:
            await asyncio.sleep(3600)
        chat = kind == "chat.completion"
        for i, token in enumerate(tokens):
            if self.faults.die_after_chunks is not None and i == self.faults.die_after_chunks:
                request.transport.close()  # type: ignore[union-attr]
                return out
            if self.faults.hang_after_chunks is not None and i == self.faults.hang_after_chunks:
                await asyncio.sleep(3600)
            piece = ("" if i == 0 else " ") + token
            choice: dict[str, Any] = {"index": 0, "finish_reason": "length" if i == count - 1 else None}
            if chat:
                choice["delta"] = {"content": piece}
            else:
                choice["text"] = piece
            chunk = {"id": f"cmpl-{self.name}", "object": "chat.completion.chunk" if chat else "text_completion",
                     "created": 0, "model": self.model, "choices": [choice]}
            await out.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            chunk = {"id": f"cmpl-{self.name}", "object": "chat.completion.chunk" if chat else "text_completion",
                     "created": 0, "model": self.model, "choices": [], "usage": usage}
            await out.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await out.write(b"data: [DONE]\n\n")
        await out.write_eof()
        return out


def _vllm_rejection(body: dict[str, Any]) -> dict[str, Any] | None:
    """A few of vLLM 0.32's own request checks, with its messages and ``param`` (vllm/sampling_params.py
    ``_verify_args`` and the protocol's ``validate_stream_options``), answered in its error shape."""
    def error(message: str, param: str | None) -> dict[str, Any]:
        return {"message": message, "type": "BadRequestError", "param": param, "code": 400}

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
