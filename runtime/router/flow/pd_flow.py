"""One request through the cluster, as vLLM's toy P/D proxy does it: plan, prefill leg, decode leg, relay.

The wire format is :mod:`runtime.router.flow.wire`'s. The flow adds only what a proxy in front of many engines needs:
each leg tries another engine while nothing reached the client (:class:`~runtime.router.flow.attempts.Attempts`),
the request is served decode-only when prefill fails or decode cannot pull, and a committed stream that breaks ends
with an error event. Everything else (metrics, the prefill backlog, breakers and pair health, the scheduler's
release and learning) hangs on the request's observers (:mod:`runtime.router.flow.observers`), told of each event
once. ``serve`` returns the request's :class:`~runtime.router.flow.outcome.Outcome`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from runtime.json_log import EventLog
from runtime.roles import DECODE, PREFILL, Role
from runtime.router.config import RouterConfig
from runtime.router.engines.engine import Engine
from runtime.router.engines.registry import EngineRegistry
from runtime.router.engines.upstream import Upstream, UpstreamFailure
from runtime.router.flow import wire
from runtime.router.flow.attempts import Attempts
from runtime.router.flow.observers import PREFILL_FAILED, RequestObserver
from runtime.router.flow.outcome import Leg, Outcome
from runtime.router.prefix_cache.dp_ranks import by_engine, with_rank
from runtime.router.prefix_cache.prefix_index import PrefixIndex
from runtime.router.prefix_cache.prompt_blocks import PromptBlocks
from runtime.router.requests.api_error import ApiError
from runtime.router.requests.openai_request import OpenAiRequest
from runtime.router.requests.prompt_reader import PromptReader
from runtime.router.scheduling.context import RoutingPlan, SchedulingContext
from runtime.router.scheduling.scheduler import Scheduler

log = EventLog("runtime.router.flow")

RELAYED_ERRORS = (aiohttp.ClientError, TimeoutError)
OFFLOAD_BYTES = 16 * 1024
"""Bodies this large are tokenized in a worker thread (about 0.5 ms per KB on the loop would stall every request)."""


@dataclass(eq=False)
class DecodeLeg:
    """What every decode attempt of one request shares."""

    request: web.Request
    api: OpenAiRequest
    plan: RoutingPlan
    headers: dict[str, str]
    outcome: Outcome
    params: wire.PullParams | None


class PdFlow:
    def __init__(
        self,
        config: RouterConfig,
        registry: EngineRegistry,
        scheduler: Scheduler,
        index: PrefixIndex,
        prompts: PromptReader,
        upstream: Upstream,
        attempts: Attempts,
        observers: Sequence[RequestObserver],
    ) -> None:
        self.config = config
        self.index = index
        self.registry = registry
        self.scheduler = scheduler
        self.prompts = prompts
        self.upstream = upstream
        self.attempts = attempts
        self.observers = tuple(observers)

    async def serve(self, request: web.Request, api: OpenAiRequest, request_id: str) -> Outcome:
        outcome = Outcome(request_id, api.endpoint, started=time.monotonic())
        outcome.plan = plan = self.scheduler.plan(await self._context(request, api, request_id), self.registry)
        outcome.decode = plan.decode.engine
        outcome.uncached_tokens = plan.context.blocks.prompt_tokens - plan.context.matched_tokens(plan.decode.engine)
        log.info("routed", request_id=request_id, endpoint=api.endpoint, **plan.log_fields())
        for observer in self.observers:
            observer.on_plan(outcome)
        try:
            headers = wire.upstream_headers(request, request_id)
            params = await self._prefill_leg(api, plan, headers, outcome) if plan.prefill is not None else None
            if params is not None:
                self._prompt_computed(outcome)  # what follows is decode's work
            outcome.decision = "pd" if params is not None else "decode_only"
            outcome.reason = PREFILL_FAILED if plan.prefill is not None and params is None else plan.decision.reason
            for observer in self.observers:
                observer.on_decision(outcome, params)
            outcome.response = await self._decode_leg(DecodeLeg(request, api, plan, headers, outcome, params))
            return outcome
        finally:
            self._prompt_computed(outcome)  # a request that ends before its prompt was computed leaves the backlog
            for observer in self.observers:
                observer.on_complete(outcome)

    async def _context(self, request: web.Request, api: OpenAiRequest, request_id: str) -> SchedulingContext:
        if len(api.raw) >= OFFLOAD_BYTES:
            blocks: PromptBlocks = await asyncio.to_thread(self.prompts.blocks, api)
        else:
            blocks = self.prompts.blocks(api)
        matches = by_engine(*self.index.match_tiers(blocks.keys))
        return SchedulingContext(
            request_id,
            blocks,
            session=request.headers.get(self.config.session_header),
            single_leg=api.single_leg_reason,
            prefix_matches=matches.held,
            host_matches=matches.host,
            ranks=matches.ranks,
        )

    # -- the prefill leg

    async def _prefill_leg(
        self, api: OpenAiRequest, plan: RoutingPlan, headers: dict[str, str], outcome: Outcome
    ) -> wire.PullParams | None:
        """The params decode needs (``outcome.prefill`` made them), or None: decode serves alone."""
        body = wire.prefill_body(api)
        deadline = self.config.timeouts.prefill_s
        last = "no prefill engine"
        async for engine in self.attempts(PREFILL, plan):
            with self._leg(outcome, PREFILL, engine) as leg:
                try:
                    async with asyncio.timeout(deadline):
                        params = await self._prefill_on(
                            engine, api, body, with_rank(headers, plan.context.rank(engine))
                        )
                except ApiError:
                    leg.result = "client_error"
                    raise
                except TimeoutError:
                    last = leg.failed(
                        "prefill_timeout",
                        f"prefill_s={deadline} s passed before the prefill leg "
                        "ended (its engine is stuck or overloaded)",
                    )
                except UpstreamFailure as failure:
                    last = leg.failed(failure.kind, failure.detail)
                except (*RELAYED_ERRORS, ValueError) as error:
                    last = leg.failed("read", repr(error))
                else:
                    leg.result = "ok"
                    outcome.prefill = engine
                    return params
        log.warning("prefill_fallback", request_id=outcome.request_id, reason=last)
        return None

    async def _prefill_on(
        self, engine: Engine, api: OpenAiRequest, body: bytes, headers: dict[str, str]
    ) -> wire.PullParams:
        async with self.upstream.post(engine, api.path, body, headers) as response:
            payload = await response.read()
            if response.status != 200:
                raise ApiError.from_engine(response.status, payload)
        params = wire.pull_params(payload)
        if params is None:
            raise UpstreamFailure(engine, "no_kv_transfer_params", "prefill answered without them")
        return params

    # -- the decode leg

    async def _decode_leg(self, leg: DecodeLeg) -> web.StreamResponse:
        """Each decode engine in turn; one that is alive but cannot pull serves the request decode-only at once."""
        last, timed_out = "no decode engine", False
        async for engine in self.attempts(DECODE, leg.plan):
            leg.outcome.decode = engine
            response, failure = await self._decode_attempt(leg, engine)
            if response is None and failure is not None and failure.result == "pull_failed":
                leg.params, leg.outcome.decision = None, "decode_only"  # the same engine, without the pull
                response, failure = await self._decode_attempt(leg, engine)
            if response is not None:
                return response
            assert failure is not None
            last = f"{engine.name}: {failure.kind}: {failure.detail[:300]}"
            timed_out = failure.kind.endswith("timeout")
        request_id = leg.outcome.request_id
        log.error("decode_failed", request_id=request_id, last_failure=last)
        if timed_out:
            raise ApiError(504, f"no decode engine answered in time (request id {request_id})", code="upstream_timeout")
        raise ApiError(
            502, f"no decode engine could serve the request (request id {request_id})", code="upstream_failed"
        )

    async def _decode_attempt(self, leg: DecodeLeg, engine: Engine) -> tuple[web.StreamResponse | None, Leg | None]:
        """(the response, None) when it served; (None, the failed attempt) when another try may serve."""
        with self._leg(leg.outcome, DECODE, engine, pulling=leg.params is not None) as attempt:
            try:
                response = await self._decode_on(leg, engine, attempt)
            except ApiError:
                attempt.result = "client_error"
                raise
            except UpstreamFailure as failure:
                attempt.failed(failure.kind, failure.detail)
                if attempt.pulling and failure.decode_alive:
                    attempt.result = "pull_failed"
                return None, attempt
            attempt.result = "ok"
            return response, None

    async def _decode_on(self, leg: DecodeLeg, engine: Engine, attempt: Leg) -> web.StreamResponse:
        api, outcome = leg.api, leg.outcome
        headers = with_rank(leg.headers, leg.plan.context.rank(engine))
        async with self.upstream.post(engine, api.path, wire.decode_body(api, leg.params), headers) as response:
            if response.status >= 400:
                raise ApiError.from_engine(response.status, await response.read())
            if not api.stream:
                payload = await self._whole_body(response, engine)
                self._first_token(outcome, attempt)
                return web.Response(
                    status=response.status,
                    body=payload,
                    headers={
                        "Content-Type": response.headers.get("Content-Type", "application/json"),
                        "X-Request-Id": outcome.request_id,
                    },
                )
            first = await self._first_chunk(response, engine, pulling=attempt.pulling)
            self._first_token(outcome, attempt)
            return await self._relay(leg.request, response, first, engine, outcome)

    async def _whole_body(self, response: aiohttp.ClientResponse, engine: Engine) -> bytes:
        """A non-streaming answer's body. Cut short or silent after its headers, it is a failure like any before the
        headers: nothing reached the client, so another engine may serve it, and the breaker hears of it."""
        try:
            return await response.read()
        except aiohttp.ServerTimeoutError:
            raise UpstreamFailure(
                engine,
                "idle_timeout",
                f"idle_stream_s={self.config.timeouts.idle_stream_s} s passed in the middle of the answer's body",
            ) from None
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
                while pulling and chunk and wire.opening_only(chunk):
                    more = await response.content.readany()
                    if not more:
                        break
                    chunk += more
        except aiohttp.ServerTimeoutError:
            raise UpstreamFailure(
                engine,
                "idle_timeout",
                f"idle_stream_s={self.config.timeouts.idle_stream_s} s passed without a first chunk",
                decode_alive=pulling,
            ) from None
        except TimeoutError:
            raise UpstreamFailure(
                engine,
                "first_token_timeout",
                f"first_token_s={deadline} s passed without decode's first chunk (a stalled KV pull?)",
                decode_alive=True,
            ) from None
        except aiohttp.ClientError as error:
            raise UpstreamFailure(engine, "stream_broken", repr(error), decode_alive=pulling) from None
        if not chunk:
            raise UpstreamFailure(
                engine, "stream_broken", "the stream ended before its first chunk", decode_alive=pulling
            )
        if pulling and wire.pull_failed(chunk):
            # vLLM's kv_load_failure_policy=fail: the pull failed, decode opened the stream with an error event
            raise UpstreamFailure(engine, "pull_failed", chunk[:300].decode(errors="replace"), decode_alive=True)
        return chunk

    # -- the relay

    async def _relay(
        self, request: web.Request, upstream: aiohttp.ClientResponse, first: bytes, engine: Engine, outcome: Outcome
    ) -> web.StreamResponse:
        out = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": upstream.headers.get("Content-Type", "text/event-stream"),
                "Cache-Control": "no-cache",
                "X-Request-Id": outcome.request_id,
            },
        )
        await _to_client(out.prepare(request))
        await _to_client(out.write(first))
        gaps = outcome.gaps
        last = time.monotonic()
        try:
            async for chunk in upstream.content.iter_any():
                try:  # inline, not _to_client: no extra coroutine per chunk on the hottest loop
                    await out.write(chunk)
                except ConnectionResetError:
                    raise ClientGone("the client closed the connection mid-stream") from None
                now = time.monotonic()
                gaps.append(now - last)
                last = now
        except RELAYED_ERRORS as error:
            # the engine died or went quiet mid-stream: tell the client now, in the stream's own format
            outcome.stream_broken = True
            log.error("stream_broken", request_id=outcome.request_id, engine=engine.name, reason=repr(error))
            await _to_client(out.write(wire.stream_error_event(outcome.request_id)))
        await _to_client(out.write_eof())
        return out

    # -- the events the observers hear of

    def _leg(self, outcome: Outcome, role: Role, engine: Engine, pulling: bool = False) -> _LegScope:
        return _LegScope(self, outcome, Leg(role, engine, time.monotonic(), pulling))

    def _prompt_computed(self, outcome: Outcome) -> None:
        """Once per request: at the end of the prefill leg, else at decode's first byte, else at its end."""
        if outcome.prompt_computed:
            return
        outcome.prompt_computed = True
        for observer in self.observers:
            observer.on_prompt_computed(outcome)

    def _first_token(self, outcome: Outcome, leg: Leg) -> None:
        outcome.first_byte = time.monotonic()
        self._prompt_computed(outcome)  # decode-only: decode computed the prompt
        for observer in self.observers:
            observer.on_first_token(outcome, leg)


class _LegScope:
    """One attempt: the registry counts it in flight on its engine, the observers hear of its start and its end."""

    def __init__(self, flow: PdFlow, outcome: Outcome, leg: Leg) -> None:
        self.flow, self.outcome, self.leg = flow, outcome, leg

    def __enter__(self) -> Leg:
        self.flow.registry.started(self.leg.engine)
        for observer in self.flow.observers:
            observer.on_leg_start(self.outcome, self.leg)
        return self.leg

    def __exit__(self, *exc: object) -> None:
        self.flow.registry.ended(self.leg.engine)
        for observer in self.flow.observers:
            observer.on_leg_end(self.outcome, self.leg)


class ClientGone(ConnectionResetError):
    """The client went away mid-stream: its own outcome (client_disconnected), not the engine's stream_broken."""


async def _to_client(write: Awaitable[object]) -> None:
    """aiohttp's write to a closing client raises ClientConnectionResetError, which is also an aiohttp.ClientError,
    so the relay would take it for the engine's failure."""
    try:
        await write
    except ConnectionResetError:
        raise ClientGone("the client closed the connection mid-stream") from None
