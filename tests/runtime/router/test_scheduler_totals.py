"""The scheduler's cheaper bookkeeping (totals summed scorer by scorer, prefill candidates filtered once) picks
exactly what the weighted sum per engine picks: same totals to the last bit, same engine, on random clusters."""

from __future__ import annotations

import random

from runtime.router.config import RouterConfig
from runtime.router.engines.engine import Engine
from runtime.router.prefix_cache.prompt_blocks import PromptBlocks
from runtime.router.scheduling.context import SchedulingContext
from runtime.router.scheduling.picker import MaxScorePicker
from runtime.router.scheduling.scheduler import Scheduler


def reference_pick(
    scheduler: Scheduler, role: str, context: SchedulingContext, engines: list[Engine], picker: MaxScorePicker
) -> tuple[Engine, float]:
    """The weighted sum per engine, as the scheduler first wrote it."""
    remaining = scheduler.candidates(role, context, engines)  # type: ignore[arg-type]
    by_scorer = {scorer.name: (scorer.score(context, remaining), weight) for scorer, weight in scheduler.scorers}
    totals = {engine: sum(scores[engine] * weight for scores, weight in by_scorer.values()) for engine in remaining}
    chosen = picker.pick(totals)
    return chosen, totals[chosen]


def test_picks_and_totals_match_the_per_engine_sum_on_random_clusters() -> None:
    rng = random.Random(14)
    for trial in range(300):
        count = rng.choice((2, 5, 16, 64))
        engines = [Engine(f"http://e{i}", "prefill" if i % 2 else "decode") for i in range(count)]
        for engine in engines:
            engine.in_flight, engine.waiting = rng.randrange(8), rng.random() * 4
            engine.kv_usage, engine.healthy = rng.random(), rng.random() > 0.1
        blocks = rng.randrange(1, 20)
        matches = {engine.url: rng.randrange(blocks + 1) for engine in engines if rng.random() < 0.5}
        session = rng.choice((None, f"s{trial}"))
        context = SchedulingContext(
            f"r{trial}",
            PromptBlocks(tuple(range(blocks)), blocks * 16, 16, True),
            session=session,
            prefix_matches=matches,
        )
        seed = rng.random()
        scheduler = Scheduler.from_config(RouterConfig())
        scheduler.picker = MaxScorePicker(random.Random(seed))
        for role in ("decode", "prefill"):
            if not scheduler.candidates(role, context, engines):
                continue
            expected = reference_pick(scheduler, role, context, engines, MaxScorePicker(random.Random(seed)))
            pick = scheduler.pick(role, context, engines)
            assert (pick.engine, pick.score) == expected
            scheduler.picker = MaxScorePicker(random.Random(seed))
