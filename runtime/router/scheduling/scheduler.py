"""The scheduler: the pipeline, assembled once from configuration, and one routing plan per request.

    engines -> filters (role, available, not saturated) -> weighted scorers (prefix, load, session) -> picker
    decode pick -> P/D decider (how much of the prompt that decode would compute) -> prefill pick or none
    the plan's blocks count as pending on its engines until the request ends (pending_prefixes)

Stateful plugins (approximate prefix learning) learn through :meth:`Scheduler.on_served`, after the request, from
what really served it. Session affinity needs no state: it is a rendezvous hash, the same on every router replica.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from runtime.roles import DECODE, PREFILL, ROLES, Role
from runtime.router.config import RouterConfig
from runtime.router.engines.engine import Engine
from runtime.router.flow.pd_pairs import PairHealth
from runtime.router.prefix_cache.prefix_index import PrefixIndex
from runtime.router.scheduling.context import Pick, RoutingPlan, SchedulingContext, Served
from runtime.router.scheduling.filters import Filter, FreshPairFilter, HealthyFilter, NotSaturatedFilter, RoleFilter
from runtime.router.scheduling.pd_decider import PdDecider
from runtime.router.scheduling.pending_prefixes import PendingPrefixes
from runtime.router.scheduling.picker import MaxScorePicker
from runtime.router.scheduling.prefix_learning import ApproximatePrefixLearning
from runtime.router.scheduling.scorers import LoadScorer, PrefixScorer, Scorer, SessionAffinityScorer


class NoEngineAvailable(RuntimeError):
    def __init__(self, role: Role) -> None:
        super().__init__(f"no healthy {role} engine")
        self.role = role


class ServedHook(Protocol):
    name: str

    def on_served(self, plan: RoutingPlan, served: Served) -> None: ...


class Scheduler:
    def __init__(
        self,
        filters: dict[Role, list[Filter]],
        scorers: list[tuple[Scorer, float]],
        picker: MaxScorePicker,
        decider: PdDecider,
        hooks: list[ServedHook] | None = None,
        pending: PendingPrefixes | None = None,
    ) -> None:
        self.pending = pending or PendingPrefixes()
        self.filters = filters
        self.scorers = scorers
        self.picker = picker
        self.decider = decider
        self.hooks = hooks or []

    @classmethod
    def from_config(
        cls,
        config: RouterConfig,
        index: PrefixIndex | None = None,
        learn: bool = False,
        pairs: PairHealth | None = None,
    ) -> Scheduler:
        """``learn``: approximate prefix mode (the index learns from decisions; it needs ``index``). ``pairs``: the
        prefill pick avoids stale (prefill, decode) pairs."""
        sessions = SessionAffinityScorer()
        weights = config.weights
        scorers: list[tuple[Scorer, float]] = [
            (PrefixScorer(), weights.prefix),
            (LoadScorer(), weights.load),
            (sessions, weights.session),
        ]
        filters: dict[Role, list[Filter]] = {
            role: [RoleFilter(role), HealthyFilter(), NotSaturatedFilter(config.saturation)] for role in ROLES
        }
        if pairs is not None:
            filters[PREFILL].insert(2, FreshPairFilter(pairs))
        hooks: list[ServedHook] = []
        if learn and index is not None:
            hooks.append(ApproximatePrefixLearning(index))
        return cls(
            filters,
            [(scorer, weight) for scorer, weight in scorers if weight > 0],
            MaxScorePicker(),
            PdDecider(config.pd_threshold_tokens, config.decode_busy_kv_usage),
            hooks,
        )

    def candidates(self, role: Role, context: SchedulingContext, engines: Iterable[Engine]) -> list[Engine]:
        remaining = list(engines)
        for step in self.filters[role]:
            remaining = step.filter(context, remaining)
        return remaining

    def pick(
        self, role: Role, context: SchedulingContext, engines: Iterable[Engine], remaining: list[Engine] | None = None
    ) -> Pick:
        """``remaining``: this role's candidates when the caller already filtered them (no second pass)."""
        remaining = self.candidates(role, context, engines) if remaining is None else remaining
        if not remaining:
            raise NoEngineAvailable(role)
        by_scorer = {scorer.name: (scorer.score(context, remaining), weight) for scorer, weight in self.scorers}
        totals: dict[Engine, float] = dict.fromkeys(remaining, 0)
        for scores, weight in by_scorer.values():  # the same sums, in the same order, as one sum() per engine
            for engine in remaining:
                totals[engine] += scores[engine] * weight
        chosen = self.picker.pick(totals)
        return Pick(
            engine=chosen,
            role=role,
            score=totals[chosen],
            scores={name: scores[chosen] for name, (scores, _) in by_scorer.items()},
        )

    def plan(self, context: SchedulingContext, engines: Iterable[Engine]) -> RoutingPlan:
        engines = list(engines)
        context.pending_matches = self.pending.match(context.blocks.keys)
        decode = self.pick(DECODE, context, engines)
        context.decode = decode.engine
        prefills = self.candidates(PREFILL, context, engines)
        decision = self.decider.decide(
            context.blocks.prompt_tokens,
            context.cached_tokens(decode.engine),
            bool(prefills),
            context.single_leg,
            self.decider.busy(decode.engine),
        )
        prefill = self.pick(PREFILL, context, engines, prefills) if decision.decision == "pd" else None
        self.pending.add(
            context.request_id, [decode.engine.url] + ([prefill.engine.url] if prefill else []), context.blocks.keys
        )
        return RoutingPlan(context=context, decode=decode, prefill=prefill, decision=decision)

    def retried(self, context: SchedulingContext, failed: Engine, next_engine: Engine) -> None:
        """A leg failed on ``failed`` and goes to ``next_engine``: the blocks in flight go with it."""
        self.pending.move(context.request_id, failed.url, next_engine.url)

    def release(self, plan: RoutingPlan) -> None:
        """The request has ended, served or not: its blocks are no longer on their way anywhere."""
        self.pending.remove(plan.context.request_id)

    # the registry's listener: an engine that leaves takes its place in the picker's turns with it
    def engine_added(self, engine: Engine) -> None:
        pass

    def engine_removed(self, engine: Engine) -> None:
        self.picker.forget(engine.url)

    def engine_reset(self, engine: Engine) -> None:
        pass

    def on_served(self, plan: RoutingPlan, served: Served) -> None:
        """The request was answered: released, then the plugins learn. A request ends with this or with
        :meth:`release`, never both (the flow's SchedulerRelease observer)."""
        self.release(plan)
        for hook in self.hooks:
            hook.on_served(plan, served)
