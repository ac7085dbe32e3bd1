"""What happens around a request, never inside the flow: metrics, the prefill backlog, the engines' breakers and
P/D pair health, and the scheduler's release and learning. Each hangs on the request's lifecycle, as the Gateway API
inference extension's ``requestcontrol`` plugins do; the server wires the list, the flow calls every hook once per
event, in list order:

  on_plan once -> per attempt: on_leg_start, on_leg_end -> on_decision once (after the prefill leg) ->
  on_prompt_computed once -> on_first_token at most once -> on_complete once (always, also on failure).
"""

from __future__ import annotations

import time
from typing import Protocol

from runtime.json_log import EventLog
from runtime.roles import DECODE, PREFILL
from runtime.router.engines.registry import EngineRegistry
from runtime.router.flow.outcome import Leg, Outcome
from runtime.router.flow.pd_pairs import PairHealth
from runtime.router.flow.prefill_backlog import PrefillBacklog
from runtime.router.flow.wire import missing_params
from runtime.router.router_metrics import RouterMetrics
from runtime.router.scheduling.scheduler import Scheduler

log = EventLog("runtime.router.flow")

NO_HEALTHY_PREFILL, PREFILL_FAILED, DECODE_PULL_FAILED = FALLBACK_REASONS = (
    "no_healthy_prefill",
    "prefill_failed",
    "decode_pull_failed",
)
"""Why a request meant for P/D was served decode-only: the ``reason`` of pdstack_router_fallbacks_total."""


class RequestObserver(Protocol):
    def on_plan(self, outcome: Outcome) -> None: ...

    def on_leg_start(self, outcome: Outcome, leg: Leg) -> None: ...

    def on_leg_end(self, outcome: Outcome, leg: Leg) -> None: ...

    def on_decision(self, outcome: Outcome, params: dict[str, object] | None) -> None: ...

    def on_prompt_computed(self, outcome: Outcome) -> None: ...

    def on_first_token(self, outcome: Outcome, leg: Leg) -> None: ...

    def on_complete(self, outcome: Outcome) -> None: ...


class Observer:
    """Every hook, doing nothing: an observer overrides the ones it needs."""

    def on_plan(self, outcome: Outcome) -> None:
        pass

    def on_leg_start(self, outcome: Outcome, leg: Leg) -> None:
        pass

    def on_leg_end(self, outcome: Outcome, leg: Leg) -> None:
        pass

    def on_decision(self, outcome: Outcome, params: dict[str, object] | None) -> None:
        pass

    def on_prompt_computed(self, outcome: Outcome) -> None:
        pass

    def on_first_token(self, outcome: Outcome, leg: Leg) -> None:
        pass

    def on_complete(self, outcome: Outcome) -> None:
        pass


class FlowMetrics(Observer):
    """The request's series: tokens and predicted hits, decisions and fallbacks, upstream errors, leg times, TTFT,
    inter-token gaps and end-to-end latency."""

    def __init__(self, metrics: RouterMetrics, registry: EngineRegistry) -> None:
        self.metrics = metrics
        self.registry = registry
        for reason in FALLBACK_REASONS:  # at zero from the start, so rate() and the fallback alert see a first burst
            metrics.fallbacks.labels(reason)

    def on_plan(self, outcome: Outcome) -> None:
        plan = outcome.plan
        assert plan is not None
        context = plan.context
        self.metrics.prompt_tokens.labels(DECODE).inc(context.blocks.prompt_tokens)
        self.metrics.prefix_hit_tokens.labels(DECODE).inc(context.matched_tokens(plan.decode.engine))
        if plan.prefill is not None:
            self.metrics.prompt_tokens.labels(PREFILL).inc(context.blocks.prompt_tokens)
            self.metrics.prefix_hit_tokens.labels(PREFILL).inc(context.matched_tokens(plan.prefill.engine))
        if plan.decision.reason == "no_prefill_engine" and self.registry.by_role(PREFILL):
            self.metrics.fallbacks.labels(NO_HEALTHY_PREFILL).inc()  # prefill engines exist, none can serve

    def on_leg_end(self, outcome: Outcome, leg: Leg) -> None:
        if leg.result in ("failed", "pull_failed"):
            self.metrics.upstream_errors.labels(leg.engine.name, leg.kind).inc()
            log.warning(
                "upstream_failed",
                request_id=outcome.request_id,
                engine=leg.engine.name,
                role=leg.role,
                kind=leg.kind,
                detail=leg.detail[:300],
            )
        if leg.result == "pull_failed":
            self.metrics.fallbacks.labels(DECODE_PULL_FAILED).inc()
        elif leg.result == "ok" and leg.role == PREFILL:
            self.metrics.leg_seconds.labels(PREFILL).observe(time.monotonic() - leg.started)
        elif leg.result == "ok" and outcome.stream_broken:
            self.metrics.upstream_errors.labels(leg.engine.name, "stream_broken").inc()

    def on_decision(self, outcome: Outcome, params: dict[str, object] | None) -> None:
        if outcome.reason == PREFILL_FAILED:
            self.metrics.fallbacks.labels(PREFILL_FAILED).inc()
        self.metrics.decisions.labels(outcome.decision, outcome.reason).inc()
        if params is not None and (missing := missing_params(params)):
            assert outcome.plan is not None
            engine = outcome.plan.decode.engine
            self.metrics.recomputes.labels(engine.name, "invalid_params").inc()
            log.error("decode_will_recompute", request_id=outcome.request_id, engine=engine.name, missing=missing)

    def on_first_token(self, outcome: Outcome, leg: Leg) -> None:
        assert outcome.first_byte is not None
        self.metrics.leg_seconds.labels("decode_first_byte").observe(outcome.first_byte - leg.started)
        self.metrics.ttft.labels(outcome.endpoint, outcome.decision).observe(outcome.first_byte - outcome.started)

    def on_complete(self, outcome: Outcome) -> None:
        if outcome.gaps:
            itl = self.metrics.itl.labels(outcome.endpoint, outcome.decision)
            for gap in outcome.gaps:
                itl.observe(gap)
        if outcome.response is not None:
            self.metrics.e2e.labels(outcome.endpoint, outcome.decision).observe(time.monotonic() - outcome.started)


class Backlog(Observer):
    """The prefill scaling signal: a request's uncached tokens count from its plan until its prompt is computed."""

    def __init__(self, backlog: PrefillBacklog) -> None:
        self.backlog = backlog

    def on_plan(self, outcome: Outcome) -> None:
        self.backlog.enter(outcome, outcome.uncached_tokens)

    def on_prompt_computed(self, outcome: Outcome) -> None:
        self.backlog.leave(outcome)


class EngineOutcomes(Observer):
    """Each attempt's outcome to the engine registry (the breakers) and to the P/D pairs' health."""

    def __init__(self, registry: EngineRegistry, pairs: PairHealth) -> None:
        self.registry = registry
        self.pairs = pairs

    def on_leg_end(self, outcome: Outcome, leg: Leg) -> None:
        engine = leg.engine
        if leg.result == "client_error":
            self.registry.record(engine, True)  # the engine answered: the client's error
        elif leg.result == "failed":
            if leg.kind.endswith("timeout"):
                self.registry.eject(engine, "timeout")  # every further request would wait it out too
            else:
                self.registry.record(engine, False)
        elif leg.result == "pull_failed":
            if outcome.prefill is not None:  # decode is alive; the pair is what failed
                self.pairs.pull_failed(outcome.prefill, engine)
        elif leg.result == "ok":
            self.registry.record(engine, leg.role == PREFILL or not outcome.stream_broken)
            if leg.pulling and outcome.prefill is not None:
                self.pairs.pulled(outcome.prefill, engine)


class SchedulerRelease(Observer):
    """The request's blocks in flight released once it ends; a served request is learned from (approximate mode)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def on_complete(self, outcome: Outcome) -> None:
        if outcome.plan is None:
            return
        served = outcome.served()
        if served is not None:
            self.scheduler.on_served(outcome.plan, served)  # releases, then the plugins learn
        else:
            self.scheduler.release(outcome.plan)
