"""The scheduler: the pipeline, assembled once from configuration, run once per role per request.

    engines -> filters (role, healthy, not saturated) -> weighted scorers (prefix, load, session) -> max-score picker

Decode is scheduled first; the P/D decider then looks at how much of the prompt the chosen decode already holds;
when it disaggregates, the prefill engine is scheduled by its own scores (its prefix cache matters too).
"""

from __future__ import annotations

from collections.abc import Iterable

from runtime.router.config import RouterConfig
from runtime.router.engine import Engine, Role
from runtime.router.scheduling.context import Pick, SchedulingContext
from runtime.router.scheduling.filters import Filter, HealthyFilter, NotSaturatedFilter, RoleFilter
from runtime.router.scheduling.picker import MaxScorePicker
from runtime.router.scheduling.scorers import LoadScorer, PrefixScorer, Scorer, SessionAffinityScorer


class NoEngineAvailable(RuntimeError):
    def __init__(self, role: Role) -> None:
        super().__init__(f"no healthy {role} engine")
        self.role = role


class Scheduler:
    def __init__(self, filters: dict[Role, list[Filter]], scorers: list[tuple[Scorer, float]],
                 picker: MaxScorePicker, sessions: SessionAffinityScorer | None = None) -> None:
        self.filters = filters
        self.scorers = scorers
        self.picker = picker
        self.sessions = sessions

    @classmethod
    def from_config(cls, config: RouterConfig) -> Scheduler:
        sessions = SessionAffinityScorer()
        weights = config.weights
        scorers: list[tuple[Scorer, float]] = [
            (PrefixScorer(), weights.prefix), (LoadScorer(), weights.load), (sessions, weights.session)]
        filters: dict[Role, list[Filter]] = {
            role: [RoleFilter(role), HealthyFilter(), NotSaturatedFilter(config.saturation)]
            for role in ("prefill", "decode")
        }
        return cls(filters, [(scorer, weight) for scorer, weight in scorers if weight > 0], MaxScorePicker(), sessions)

    def candidates(self, role: Role, context: SchedulingContext, engines: Iterable[Engine]) -> list[Engine]:
        remaining = list(engines)
        for step in self.filters[role]:
            remaining = step.filter(context, remaining)
        return remaining

    def schedule(self, role: Role, context: SchedulingContext, engines: Iterable[Engine]) -> Pick:
        remaining = self.candidates(role, context, engines)
        if not remaining:
            raise NoEngineAvailable(role)
        by_scorer = {scorer.name: (scorer.score(context, remaining), weight) for scorer, weight in self.scorers}
        totals = {engine: sum(scores[engine] * weight for scores, weight in by_scorer.values())
                  for engine in remaining}
        chosen = self.picker.pick(totals)
        if role == "decode" and self.sessions is not None:
            self.sessions.record(context.session, chosen)
        return Pick(engine=chosen, role=role, score=totals[chosen],
                    scores={name: scores[chosen] for name, (scores, _) in by_scorer.items()})
