"""One request through the cluster: schedule decode, decide P/D, run the prefill leg, stream the decode leg.

The flow, as vLLM's NIXL protocol wants it:
  1. prefill: the client's body with ``max_tokens=1``, ``stream=false``, ``n=1``, no stream options and
     ``kv_transfer_params={"do_remote_decode": true, ...}``; the answer carries the params decode needs.
  2. decode: the client's ORIGINAL body with those params pasted verbatim; its answer goes to the client as it
     arrives. The same ``X-Request-Id`` on both legs.
Around it: retries on another engine while nothing reached the client, decode-only fallback when prefill fails (or
decode could not pull), an error event when a stream breaks, and the upstream dropped when the client leaves.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from runtime.json_log import EventLog
from runtime.router.api_error import ApiError
from runtime.router.config import RouterConfig
from runtime.router.engine import Engine, EnginePool
from runtime.router.json_splice import with_fields
from runtime.router.openai_request import OpenAiRequest
from runtime.router.prefill_backlog import PrefillBacklog
from runtime.router.prefix_index import PrefixIndex
from runtime.router.prompt_reader import PromptReader
from runtime.router.request_keys import OUTCOME
from runtime.router.pull_check import missing_params
from runtime.router.router_metrics import RouterMetrics
from runtime.router.scheduling.context import SchedulingContext
from runtime.router.scheduling.pd_decider import PdDecider
from runtime.router.scheduling.scheduler import NoEngineAvailable, Scheduler
from runtime.router.upstream import Upstream, UpstreamFailure

log = EventLog("runtime.router.flow")

PREFILL_LEG = {
    "max_tokens": 1, "stream": False, "n": 1, "stream_options": None,
    "kv_transfer_params": {"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
                           "remote_block_ids": None, "remote_host": None, "remote_port": None},
}
RELAYED_ERRORS = (aiohttp.ClientError, TimeoutError)


class PrefillFailed(Exception):
    """Every prefill attempt failed; the request goes decode-only."""


@dataclass(eq=False)
class Leg:
    """What the flow learned on the way, for logs and metrics."""

    request_id: str
    endpoint: str
    decision: str = "decode_only"
    started: float = 0.0
    first_byte: float | None = None


class PdFlow:
    def __init__(self, config: RouterConfig, pool: EnginePool, scheduler: Scheduler, index: PrefixIndex,
                 prompts: PromptReader, upstream: Upstream, metrics: RouterMetrics, learn: bool) -> None:
        self.config = config
        self.pool = pool
        self.scheduler = scheduler
        self.decider = PdDecider(config.pd_threshold_tokens)
        self.index = index
        self.prompts = prompts
        self.upstream = upstream
        self.metrics = metrics
        self.learn = learn
        self.backlog = PrefillBacklog(config.signals.prefill_tokens_per_s, metrics.prefill_backlog)

    async def serve(self, request: web.Request, api: OpenAiRequest, raw: bytes, request_id: str) -> web.StreamResponse:
        leg = Leg(request_id, api.endpoint, started=time.monotonic())
        blocks = self.prompts.blocks(api)
        context = SchedulingContext(request_id, blocks, session=request.headers.get(self.config.session_header))
        context.prefix_matches = self.index.match(blocks.keys)
        decode = self.scheduler.schedule("decode", context, self.pool).engine
        prefill_ready = bool(self.scheduler.candidates("prefill", context, self.pool))
        cached = context.matched_tokens(decode)
        decision = self.decider.decide(blocks.prompt_tokens, cached, prefill_ready)
        self.metrics.prompt_tokens.labels("decode").inc(blocks.prompt_tokens)
        self.metrics.prefix_hit_tokens.labels("decode").inc(cached)
        self.backlog.enter(leg, blocks.prompt_tokens - cached)
        try:
            headers = _upstream_headers(request, request_id)
            params: dict[str, Any] | None = None
            prefill: Engine | None = None
            reason = decision.reason
            if reason == "no_prefill_engine" and self.pool.by_role("prefill"):
                self.metrics.fallbacks.labels("no_healthy_prefill").inc()  # prefill engines exist, none can serve
            if decision.decision == "pd":
                try:
                    params, prefill = await self._prefill(api, raw, context, headers)
                    leg.decision = "pd"
                    self.backlog.leave(leg)  # the prompt is computed; what follows is decode's work
                except PrefillFailed as failure:
                    reason = "prefill_failed"
                    self.metrics.fallbacks.labels("prefill_failed").inc()
                    log.warning("prefill_fallback", request_id=request_id, reason=str(failure))
            self.metrics.decisions.labels(leg.decision, reason).inc()
            log.info("routed", request_id=request_id, endpoint=api.endpoint, decision=leg.decision, reason=reason,
                     decode=decode.name, prefill=prefill.name if prefill else None, prompt_tokens=blocks.prompt_tokens,
                     predicted_cached_tokens=cached, exact_tokens=blocks.exact)
            response = await self._decode(request, api, raw, context, decode, params, headers, leg)
            self.metrics.e2e.labels(api.endpoint, leg.decision).observe(time.monotonic() - leg.started)
            if self.learn and response.status == 200 and blocks.keys:
                self.index.add(decode.url, blocks.keys)
                if prefill is not None:
                    self.index.add(prefill.url, blocks.keys)
            return response
        finally:
            self.backlog.leave(leg)

    async def _prefill(self, api: OpenAiRequest, raw: bytes, context: SchedulingContext,
                       headers: dict[str, str]) -> tuple[dict[str, Any], Engine]:
        fields = dict(PREFILL_LEG)
        if "max_completion_tokens" in api.body:
            fields["max_completion_tokens"] = 1
        body = with_fields(raw, fields)
        last = "no prefill engine"
        for attempt in range(self.config.retries.attempts):
            try:
                pick = self.scheduler.schedule("prefill", context, self.pool)
            except NoEngineAvailable:
                break
            engine = pick.engine
            if attempt == 0:
                self.metrics.prefix_hit_tokens.labels("prefill").inc(context.matched_tokens(engine))
                self.metrics.prompt_tokens.labels("prefill").inc(context.blocks.prompt_tokens)
            try:
                async with self.upstream.post(engine, api.path, body, headers) as response:
                    payload = await response.read()
                    if response.status != 200:
                        # the engine refused the request itself (4xx): the client's error, answered as the engine did
                        raise ApiError(response.status, _engine_message(payload), code="engine_rejected")
                answer = json.loads(payload)
                params = answer.get("kv_transfer_params") if isinstance(answer, dict) else None
                if not isinstance(params, dict):
                    raise UpstreamFailure(engine, "no_kv_transfer_params", "prefill answered without them")
                return params, engine
            except UpstreamFailure as failure:
                last = str(failure)
                self._failed(failure.engine, failure.kind, context)
            except (*RELAYED_ERRORS, ValueError) as error:
                last = f"{engine.name}: {error!r}"
                self._failed(engine, "read", context)
            self.metrics.retries.labels("prefill").inc()
            await asyncio.sleep(self.config.retries.backoff_s * 2**attempt)
        raise PrefillFailed(last)

    async def _decode(self, request: web.Request, api: OpenAiRequest, raw: bytes, context: SchedulingContext,
                      engine: Engine, params: dict[str, Any] | None, headers: dict[str, str],
                      leg: Leg) -> web.StreamResponse:
        if params is not None and (missing := missing_params(params)):
            self.metrics.recomputes.labels(engine.name, "invalid_params").inc()
            log.error("decode_will_recompute", request_id=leg.request_id, engine=engine.name, missing=missing)
        last = "no decode engine"
        for attempt in range(self.config.retries.attempts):
            body = with_fields(raw, {"kv_transfer_params": params}) if params is not None else raw
            try:
                async with self.upstream.post(engine, api.path, body, headers) as response:
                    if api.stream and response.status == 200:
                        return await self._relay_stream(request, response, engine, leg)
                    payload = await response.read()
                    self._observe(leg, first_byte=True)
                    return web.Response(status=response.status, body=payload, headers={
                        "Content-Type": response.headers.get("Content-Type", "application/json"),
                        "X-Request-Id": leg.request_id})
            except UpstreamFailure as failure:
                last = str(failure)
                pulled_failed = params is not None and failure.status is not None
                self._failed(engine, failure.kind, context, exclude=not pulled_failed)
                if pulled_failed:
                    # decode is alive but could not take the prefilled KV: serve it decode-only, here or elsewhere
                    params = None
                    leg.decision = "decode_only"
                    self.metrics.fallbacks.labels("decode_pull_failed").inc()
            except RELAYED_ERRORS as error:
                last = f"{engine.name}: {error!r}"
                self._failed(engine, "read", context)
            self.metrics.retries.labels("decode").inc()
            await asyncio.sleep(self.config.retries.backoff_s * 2**attempt)
            try:
                engine = self.scheduler.schedule("decode", context, self.pool).engine
            except NoEngineAvailable:
                break
        raise ApiError(502, f"no decode engine could serve the request: {last}", code="upstream_failed")

    async def _relay_stream(self, request: web.Request, upstream: aiohttp.ClientResponse, engine: Engine,
                            leg: Leg) -> web.StreamResponse:
        out = web.StreamResponse(status=200, headers={
            "Content-Type": upstream.headers.get("Content-Type", "text/event-stream"),
            "Cache-Control": "no-cache", "X-Request-Id": leg.request_id})
        await out.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await out.write(chunk)
                if leg.first_byte is None:
                    self._observe(leg, first_byte=True)
        except RELAYED_ERRORS as error:
            # the engine died or went quiet mid-stream: tell the client now, in the stream's own format
            self.metrics.upstream_errors.labels(engine.name, "stream_broken").inc()
            log.error("stream_broken", request_id=leg.request_id, engine=engine.name, reason=repr(error))
            message = {"error": {"message": f"the engine stopped mid-stream: {type(error).__name__}",
                                 "type": "upstream_error", "param": None, "code": 502}}
            await out.write(b"data: " + json.dumps(message).encode() + b"\n\n")
            request[OUTCOME] = "stream_broken"
        await out.write_eof()
        return out

    def _observe(self, leg: Leg, first_byte: bool) -> None:
        if first_byte and leg.first_byte is None:
            leg.first_byte = time.monotonic()
            self.backlog.leave(leg)
            self.metrics.ttft.labels(leg.endpoint, leg.decision).observe(leg.first_byte - leg.started)

    def _failed(self, engine: Engine, kind: str, context: SchedulingContext, exclude: bool = True) -> None:
        self.metrics.upstream_errors.labels(engine.name, kind).inc()
        log.warning("upstream_failed", request_id=context.request_id, engine=engine.name, role=engine.role, kind=kind)
        if exclude:
            context.excluded.add(engine.url)


def _upstream_headers(request: web.Request, request_id: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "X-Request-Id": request_id}
    authorization = request.headers.get("Authorization")
    if authorization:
        headers["Authorization"] = authorization
    return headers


def _engine_message(payload: bytes) -> str:
    try:
        error = json.loads(payload).get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
    except (ValueError, AttributeError):
        pass
    return payload[:500].decode(errors="replace") or "the engine rejected the request"
