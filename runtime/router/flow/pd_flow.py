"""One request through the cluster, as vLLM's NIXL protocol wants it: plan, optional prefill leg, decode leg, relay.

  1. prefill: the client's body with ``max_tokens=1``, ``stream=false``, ``n=1``, no stream options, no
     ``min_tokens`` and ``kv_transfer_params={"do_remote_decode": true, ...}``; its answer carries the params.
  2. decode: the client's ORIGINAL body with those params pasted verbatim; its answer goes to the client as it
     arrives, committed at decode's first chunk. The same ``X-Request-Id`` on both legs.
Around it, never inside it: each leg's attempts (another engine while nothing reached the client), decode-only when
prefill fails or decode cannot pull (or its first chunk misses the deadline), an error event when a committed
stream breaks, every outcome reported to the engine registry (breakers), and the scheduler's ``on_served`` hook.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from runtime.json_log import EventLog
from runtime.router.requests.api_error import ApiError
from runtime.router.flow.attempts import Attempts
from runtime.router.config import RouterConfig
from runtime.roles import DECODE, PREFILL
from runtime.router.engines.engine import Engine
from runtime.router.engines.registry import EngineRegistry
from runtime.router.requests.json_splice import with_fields
from runtime.router.requests.openai_request import OpenAiRequest
from runtime.router.flow.pd_pairs import PairHealth
from runtime.router.flow.prefill_backlog import PrefillBacklog
from runtime.router.prefix_cache.prefix_index import PrefixIndex
from runtime.router.prefix_cache.prompt_blocks import PromptBlocks
from runtime.router.requests.prompt_reader import PromptReader
from runtime.router.flow.pull_check import missing_params
from runtime.router.requests.keys import OUTCOME
from runtime.router.router_metrics import RouterMetrics
from runtime.router.scheduling.context import RoutingPlan, SchedulingContext, Served
from runtime.router.scheduling.scheduler import Scheduler
from runtime.router.engines.upstream import Upstream, UpstreamFailure

log = EventLog("runtime.router.flow")

PREFILL_LEG = {
    "max_tokens": 1, "stream": False, "n": 1, "stream_options": None,
    "kv_transfer_params": {"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
                           "remote_block_ids": None, "remote_host": None, "remote_port": None},
}
PREFILL_DROPS = ("min_tokens", "min_completion_tokens")
"""Not for the prefill leg: with its max_tokens=1 vLLM rejects them (vLLM's toy P/D proxy drops them there too)."""
NO_HEALTHY_PREFILL, PREFILL_FAILED, DECODE_PULL_FAILED = FALLBACK_REASONS = (
    "no_healthy_prefill", "prefill_failed", "decode_pull_failed")
"""Why a request meant for P/D was served decode-only: the ``reason`` of pdstack_router_fallbacks_total."""
RELAYED_ERRORS = (aiohttp.ClientError, TimeoutError)
STREAM_ERROR = b'data: {"error"'
"""How vLLM 0.32 opens a stream whose request failed in the engine (serving.py: ``yield f"data: {error}"``)."""
OFFLOAD_BYTES = 16 * 1024
"""Bodies this large are tokenized in a worker thread (about 0.5 ms per KB on the loop would stall every request)."""


@dataclass(eq=False)
class Trace:
    """What the flow learned on the way, for metrics."""

    request_id: str
    endpoint: str
    decision: str = "decode_only"
    started: float = 0.0
    first_byte: float | None = None
    stream_broken: bool = False


class PdFlow:
    def __init__(self, config: RouterConfig, registry: EngineRegistry, scheduler: Scheduler, index: PrefixIndex,
                 prompts: PromptReader, upstream: Upstream, metrics: RouterMetrics,
                 pairs: PairHealth) -> None:
        self.config = config
        self.pairs = pairs
        self.index = index
        self.registry = registry
        self.scheduler = scheduler
        self.prompts = prompts
        self.upstream = upstream
        self.metrics = metrics
        self.attempts = Attempts(scheduler, registry, config.retries, metrics)
        self.backlog = PrefillBacklog(config.signals.prefill_tokens_per_s, metrics.prefill_backlog)
        for reason in FALLBACK_REASONS:  # at zero from the start, so rate() and the fallback alert see a first burst
            metrics.fallbacks.labels(reason)

    async def serve(self, request: web.Request, api: OpenAiRequest, request_id: str) -> web.StreamResponse:
        trace = Trace(request_id, api.endpoint, started=time.monotonic())
        plan = self.scheduler.plan(await self._context(request, api, request_id), self.registry)
        self._count(plan)
        log.info("routed", request_id=request_id, endpoint=api.endpoint, **plan.log_fields())
        uncached = plan.context.blocks.prompt_tokens - plan.context.matched_tokens(plan.decode.engine)
        self.backlog.enter(trace, uncached)
        try:
            headers = _upstream_headers(request, request_id)
            served = Served(decode=plan.decode.engine)
            params = None
            if plan.prefill is not None:
                params, served.prefill = await self._prefill_leg(api, plan, headers)
                if params is not None:
                    self.backlog.leave(trace)  # the prompt is computed; what follows is decode's work
            trace.decision = "pd" if params is not None else "decode_only"
            reason = PREFILL_FAILED if plan.prefill is not None and params is None else plan.decision.reason
            self.metrics.decisions.labels(trace.decision, reason).inc()
            response = await self._decode_leg(request, api, plan, params, headers, trace, served)
            self.metrics.e2e.labels(api.endpoint, trace.decision).observe(time.monotonic() - trace.started)
            served.status = response.status
            self.scheduler.on_served(plan, served)
            return response
        finally:
            self.backlog.leave(trace)
            self.scheduler.release(plan)

    async def _context(self, request: web.Request, api: OpenAiRequest, request_id: str) -> SchedulingContext:
        if len(api.raw) >= OFFLOAD_BYTES:
            blocks: PromptBlocks = await asyncio.to_thread(self.prompts.blocks, api)
        else:
            blocks = self.prompts.blocks(api)
        return SchedulingContext(request_id, blocks, session=request.headers.get(self.config.session_header),
                                 single_leg=api.single_leg_reason, prefix_matches=self.index.match(blocks.keys))

    def _count(self, plan: RoutingPlan) -> None:
        context = plan.context
        self.metrics.prompt_tokens.labels(DECODE).inc(context.blocks.prompt_tokens)
        self.metrics.prefix_hit_tokens.labels(DECODE).inc(context.matched_tokens(plan.decode.engine))
        if plan.prefill is not None:
            self.metrics.prompt_tokens.labels(PREFILL).inc(context.blocks.prompt_tokens)
            self.metrics.prefix_hit_tokens.labels(PREFILL).inc(context.matched_tokens(plan.prefill.engine))
        if plan.decision.reason == "no_prefill_engine" and self.registry.by_role(PREFILL):
            self.metrics.fallbacks.labels(NO_HEALTHY_PREFILL).inc()  # prefill engines exist, none can serve

    # -- the prefill leg

    async def _prefill_leg(self, api: OpenAiRequest, plan: RoutingPlan,
                           headers: dict[str, str]) -> tuple[dict[str, Any] | None, Engine | None]:
        """The params decode needs and the engine that made them, or (None, None): decode serves alone."""
        body = prefill_body(api)
        deadline = self.config.timeouts.prefill_s
        last = "no prefill engine"
        async for engine in self.attempts(PREFILL, plan):
            started = time.monotonic()
            try:
                async with asyncio.timeout(deadline):
                    params = await self._prefill_on(engine, api, body, headers)
            except ApiError:
                self.registry.record(engine, True)  # the engine answered: the client's error
                raise
            except TimeoutError:
                last = self._failed(engine, "prefill_timeout", plan, f"prefill_s={deadline} s passed before the "
                                    "prefill leg ended (its engine is stuck or overloaded)")
                self.registry.eject(engine, "timeout")
            except UpstreamFailure as failure:
                last = self._failed(engine, failure.kind, plan, failure.detail)
                self._judge(engine, failure)
            except (*RELAYED_ERRORS, ValueError) as error:
                last = self._failed(engine, "read", plan, repr(error))
                self.registry.record(engine, False)
            else:
                self.registry.record(engine, True)
                self.metrics.leg_seconds.labels(PREFILL).observe(time.monotonic() - started)
                return params, engine
        self.metrics.fallbacks.labels(PREFILL_FAILED).inc()
        log.warning("prefill_fallback", request_id=plan.context.request_id, reason=last)
        return None, None

    async def _prefill_on(self, engine: Engine, api: OpenAiRequest, body: bytes,
                          headers: dict[str, str]) -> dict[str, Any]:
        async with self.upstream.post(engine, api.path, body, headers) as response:
            payload = await response.read()
            if response.status != 200:
                raise ApiError.from_engine(response.status, payload)
        answer = json.loads(payload)
        params = answer.get("kv_transfer_params") if isinstance(answer, dict) else None
        if not isinstance(params, dict):
            raise UpstreamFailure(engine, "no_kv_transfer_params", "prefill answered without them")
        return params

    # -- the decode leg

    async def _decode_leg(self, request: web.Request, api: OpenAiRequest, plan: RoutingPlan,
                          params: dict[str, Any] | None, headers: dict[str, str], trace: Trace,
                          served: Served) -> web.StreamResponse:
        if params is not None and (missing := missing_params(params)):
            self.metrics.recomputes.labels(plan.decode.engine.name, "invalid_params").inc()
            log.error("decode_will_recompute", request_id=trace.request_id, engine=plan.decode.engine.name,
                      missing=missing)
        last, timed_out = "no decode engine", False
        async for engine in self.attempts(DECODE, plan):
            served.decode = engine
            while True:
                try:
                    response = await self._decode_on(request, api, engine, params, headers, trace)
                except ApiError:
                    self.registry.record(engine, True)
                    raise
                except UpstreamFailure as failure:
                    last = self._failed(engine, failure.kind, plan, failure.detail)
                    if params is not None and failure.decode_alive:
                        # decode is alive but could not take the prefilled KV: serve it decode-only, right here
                        if served.prefill is not None:
                            self.pairs.pull_failed(served.prefill, engine)
                        params, trace.decision = None, "decode_only"
                        self.metrics.fallbacks.labels(DECODE_PULL_FAILED).inc()
                        continue
                    timed_out = failure.kind.endswith("timeout")
                    self._judge(engine, failure)
                    break
                self.registry.record(engine, not trace.stream_broken)
                if params is not None and served.prefill is not None:
                    self.pairs.pulled(served.prefill, engine)
                return response
        log.error("decode_failed", request_id=trace.request_id, last_failure=last)
        if timed_out:
            raise ApiError(504, f"no decode engine answered in time (request id {trace.request_id})",
                           code="upstream_timeout")
        raise ApiError(502, f"no decode engine could serve the request (request id {trace.request_id})",
                       code="upstream_failed")

    async def _decode_on(self, request: web.Request, api: OpenAiRequest, engine: Engine,
                         params: dict[str, Any] | None, headers: dict[str, str], trace: Trace) -> web.StreamResponse:
        body = with_fields(api.raw, {"kv_transfer_params": params}) if params is not None else api.raw
        started = time.monotonic()
        async with self.upstream.post(engine, api.path, body, headers) as response:
            if response.status >= 400:
                raise ApiError.from_engine(response.status, await response.read())
            if not api.stream:
                payload = await self._whole_body(response, engine)
                self._first_byte(trace, started)
                return web.Response(status=response.status, body=payload, headers={
                    "Content-Type": response.headers.get("Content-Type", "application/json"),
                    "X-Request-Id": trace.request_id})
            first = await self._first_chunk(response, engine, pulling=params is not None)
            self._first_byte(trace, started)
            return await self._relay_stream(request, response, first, engine, trace)

    async def _whole_body(self, response: aiohttp.ClientResponse, engine: Engine) -> bytes:
        """A non-streaming answer's body. Cut short or silent after its headers, it is a failure like any before the
        headers: nothing reached the client, so another engine may serve it, and the breaker hears of it."""
        try:
            return await response.read()
        except aiohttp.ServerTimeoutError:
            raise UpstreamFailure(engine, "idle_timeout", f"idle_stream_s={self.config.timeouts.idle_stream_s} s "
                                  "passed in the middle of the answer's body") from None
        except aiohttp.ClientError as error:
            raise UpstreamFailure(engine, "body_broken", f"the answer's body ended early: {error!r}") from None

    async def _first_chunk(self, response: aiohttp.ClientResponse, engine: Engine, pulling: bool) -> bytes:
        """Decode's first chunk, before anything is sent to the client (the stream commits here). After a prefill
        leg it must come within ``first_token_s``: a pull stalled by a dead prefill restarts decode-only. A chat
        stream opens with a role-only chunk sent before the pull is done, so after a prefill leg the head is read
        on to the first event that carries more (a token, or the pull's error event)."""
        deadline = self.config.timeouts.first_token_s if pulling else None
        try:
            async with asyncio.timeout(deadline):
                chunk = await response.content.readany()
                while pulling and chunk and _opening_only(chunk):
                    more = await response.content.readany()
                    if not more:
                        break
                    chunk += more
        except aiohttp.ServerTimeoutError:
            raise UpstreamFailure(engine, "idle_timeout", f"idle_stream_s={self.config.timeouts.idle_stream_s} s "
                                  "passed without a first chunk", decode_alive=pulling) from None
        except TimeoutError:
            raise UpstreamFailure(engine, "first_token_timeout", f"first_token_s={deadline} s passed without decode's "
                                  "first chunk (a stalled KV pull?)", decode_alive=True) from None
        except aiohttp.ClientError as error:
            raise UpstreamFailure(engine, "stream_broken", repr(error), decode_alive=pulling) from None
        if not chunk:
            raise UpstreamFailure(engine, "stream_broken", "the stream ended before its first chunk",
                                  decode_alive=pulling)
        if pulling and (chunk.startswith(STREAM_ERROR) or b"\n\n" + STREAM_ERROR in chunk):
            # vLLM's kv_load_failure_policy=fail: the pull failed, decode opened the stream with an error event
            raise UpstreamFailure(engine, "pull_failed", chunk[:300].decode(errors="replace"), decode_alive=True)
        return chunk

    async def _relay_stream(self, request: web.Request, upstream: aiohttp.ClientResponse, first: bytes,
                            engine: Engine, trace: Trace) -> web.StreamResponse:
        out = web.StreamResponse(status=200, headers={
            "Content-Type": upstream.headers.get("Content-Type", "text/event-stream"),
            "Cache-Control": "no-cache", "X-Request-Id": trace.request_id})
        await _to_client(out.prepare(request))
        itl = self.metrics.itl.labels(trace.endpoint, trace.decision)
        await _to_client(out.write(first))
        last = time.monotonic()
        try:
            async for chunk in upstream.content.iter_any():
                try:  # inline, not _to_client: no extra coroutine per chunk on the hottest loop
                    await out.write(chunk)
                except ConnectionResetError:
                    raise ClientGone("the client closed the connection mid-stream") from None
                now = time.monotonic()
                itl.observe(now - last)
                last = now
        except RELAYED_ERRORS as error:
            # the engine died or went quiet mid-stream: tell the client now, in the stream's own format
            self.metrics.upstream_errors.labels(engine.name, "stream_broken").inc()
            trace.stream_broken = True
            log.error("stream_broken", request_id=trace.request_id, engine=engine.name, reason=repr(error))
            message = {"error": {"message": f"the engine stopped mid-stream (request id {trace.request_id})",
                                 "type": "upstream_error", "param": None, "code": 502}}
            request[OUTCOME] = "stream_broken"
            await _to_client(out.write(b"data: " + json.dumps(message).encode() + b"\n\n"))
        await _to_client(out.write_eof())
        return out

    # -- bookkeeping

    def _first_byte(self, trace: Trace, leg_started: float) -> None:
        trace.first_byte = now = time.monotonic()
        self.backlog.leave(trace)  # decode-only: decode computed the prompt
        self.metrics.leg_seconds.labels("decode_first_byte").observe(now - leg_started)
        self.metrics.ttft.labels(trace.endpoint, trace.decision).observe(now - trace.started)

    def _failed(self, engine: Engine, kind: str, plan: RoutingPlan, detail: str) -> str:
        self.metrics.upstream_errors.labels(engine.name, kind).inc()
        log.warning("upstream_failed", request_id=plan.context.request_id, engine=engine.name, role=engine.role,
                    kind=kind, detail=detail[:300])
        return f"{engine.name}: {kind}: {detail[:300]}"

    def _judge(self, engine: Engine, failure: UpstreamFailure) -> None:
        if failure.kind.endswith("timeout"):
            self.registry.eject(engine, "timeout")
        else:
            self.registry.record(engine, False)


class ClientGone(ConnectionResetError):
    """The client went away mid-stream: its own outcome (client_disconnected), not the engine's stream_broken."""


async def _to_client(write: Awaitable[object]) -> None:
    """aiohttp's write to a closing client raises ClientConnectionResetError, which is also an aiohttp.ClientError,
    so the relay would take it for the engine's failure."""
    try:
        await write
    except ConnectionResetError:
        raise ClientGone("the client closed the connection mid-stream") from None


def _opening_only(head: bytes) -> bool:
    """True while the stream's head holds no complete event yet, or only vLLM's role-only opening chat chunks."""
    *complete, _partial = head.split(b"\n\n")
    return all(_role_only(event) for event in complete if event.strip())


def _role_only(event: bytes) -> bool:
    """A chat chunk whose choices carry no token and no finish: vLLM's opening ``{"role": "assistant"}`` delta. A
    completions chunk (its token in ``text``, no ``delta``) never is: it carries a token."""
    if not event.startswith(b"data: {"):
        return False
    try:
        choices = json.loads(event[6:]).get("choices")
    except (ValueError, AttributeError):
        return False
    return bool(choices) and all(isinstance(c, dict) and isinstance(c.get("delta"), dict)
                                 and not any(c["delta"].get(key) for key in ("content", "tool_calls",
                                                                             "reasoning_content"))
                                 and c.get("finish_reason") is None for c in choices)


def prefill_body(api: OpenAiRequest) -> bytes:
    fields: dict[str, Any] = dict(PREFILL_LEG)
    if "max_completion_tokens" in api.body:
        fields["max_completion_tokens"] = 1
    if any(name in api.body for name in PREFILL_DROPS):  # rare: re-encode without them
        body = {name: value for name, value in api.body.items() if name not in PREFILL_DROPS}
        return json.dumps({**body, **fields}, separators=(",", ":")).encode()
    return with_fields(api.raw, fields)


def _upstream_headers(request: web.Request, request_id: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "X-Request-Id": request_id}
    authorization = request.headers.get("Authorization")
    if authorization:
        headers["Authorization"] = authorization
    return headers
