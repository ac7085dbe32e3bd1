"""Each scheduling part alone: filters, scorers, picker, P/D decider; then the assembled pipeline."""

from __future__ import annotations

import asyncio
import random

import pytest

from runtime.roles import DECODE
from runtime.router.config import Retries, RouterConfig, Saturation
from runtime.router.engines.breaker import CircuitBreaker
from runtime.router.engines.engine import Engine, EngineSpec
from runtime.router.engines.registry import EngineRegistry
from runtime.router.flow.attempts import Attempts
from runtime.router.prefix_cache.prompt_blocks import PromptBlocks
from runtime.router.router_metrics import RouterMetrics
from runtime.router.scheduling.context import SchedulingContext, Served
from runtime.router.scheduling.filters import HealthyFilter, NotSaturatedFilter, RoleFilter
from runtime.router.scheduling.pd_decider import PdDecider
from runtime.router.scheduling.picker import MaxScorePicker
from runtime.router.scheduling.scheduler import NoEngineAvailable, Scheduler
from runtime.router.scheduling.scorers import LoadScorer, PrefixScorer, SessionAffinityScorer


def context(blocks: int = 4, matches: dict[str, int] | None = None, session: str | None = None) -> SchedulingContext:
    prompt = PromptBlocks(tuple(range(blocks)), prompt_tokens=blocks * 32 + 5, block_size=32, exact=True)
    return SchedulingContext("r", prompt, session=session, prefix_matches=matches or {})


def engines() -> list[Engine]:
    return [Engine("http://p0", "prefill"), Engine("http://d0", "decode"), Engine("http://d1", "decode")]


def test_role_filter_keeps_the_role() -> None:
    assert [e.url for e in RoleFilter("decode").filter(context(), engines())] == ["http://d0", "http://d1"]


def test_healthy_filter_drops_unhealthy_and_already_tried() -> None:
    pool = engines()
    pool[1].healthy = False
    ctx = context()
    ctx.excluded.add("http://d1")
    assert [e.url for e in HealthyFilter().filter(ctx, pool)] == ["http://p0"]


def test_saturation_filter_drops_saturated_but_never_all() -> None:
    pool = engines()[1:]
    pool[0].waiting = 50
    limits = Saturation(max_waiting=10, max_kv_usage=0.9, max_in_flight=100)
    assert [e.url for e in NotSaturatedFilter(limits).filter(context(), pool)] == ["http://d1"]
    pool[1].kv_usage = 0.99
    assert len(NotSaturatedFilter(limits).filter(context(), pool)) == 2


def test_prefix_scorer_is_the_leading_share_held() -> None:
    pool = engines()[1:]
    scores = PrefixScorer().score(context(4, {"http://d0": 3}), pool)
    assert scores[pool[0]] == 0.75 and scores[pool[1]] == 0.0


def test_load_scorer_prefers_idle_engines() -> None:
    idle, busy = Engine("http://a", "decode"), Engine("http://b", "decode", in_flight=3, waiting=4, kv_usage=0.8)
    scores = LoadScorer().score(context(), [idle, busy])
    assert scores[idle] == 1.0 and 0 < scores[busy] < scores[idle]


def test_session_scorer_is_a_rendezvous_hash() -> None:
    """The same session lands on the same engine whatever the order of the engines (every router replica agrees);
    when an engine leaves, only the sessions it held move."""
    pool = [Engine(f"http://d{i}", "decode") for i in range(4)]
    scorer = SessionAffinityScorer()

    def owner(session: str, engines: list[Engine]) -> str:
        scores = scorer.score(context(session=session), engines)
        (winner,) = [engine.url for engine, score in scores.items() if score == 1.0]
        return winner

    sessions = [f"chat-{i}" for i in range(40)]
    before = {session: owner(session, pool) for session in sessions}
    assert before == {session: owner(session, list(reversed(pool))) for session in sessions}
    assert len(set(before.values())) == 4
    after = {session: owner(session, pool[1:]) for session in sessions}
    assert all(after[s] == before[s] for s in sessions if before[s] != "http://d0")
    assert scorer.score(context(), pool) == dict.fromkeys(pool, 0.0)


def test_picker_takes_the_max_then_the_least_loaded() -> None:
    a, b, c = Engine("http://a", "decode", in_flight=2), Engine("http://b", "decode"), Engine("http://c", "decode")
    picker = MaxScorePicker(random.Random(0))
    assert picker.pick({a: 0.9, b: 0.5}) is a
    assert picker.pick({a: 0.7, b: 0.7, c: 0.1}) is b


@pytest.mark.parametrize(
    ("threshold", "prompt", "cached", "prefill", "expected", "reason"),
    [
        (0, 1000, 1000, True, "pd", "always"),
        (256, 1000, 900, True, "decode_only", "few_uncached_tokens"),
        (256, 1000, 100, True, "pd", "many_uncached_tokens"),
        (256, 1000, 0, False, "decode_only", "no_prefill_engine"),
    ],
)
def test_decider(threshold: int, prompt: int, cached: int, prefill: bool, expected: str, reason: str) -> None:
    decision = PdDecider(threshold).decide(prompt, cached, prefill)
    assert (decision.decision, decision.reason, decision.uncached_tokens) == (expected, reason, prompt - cached)


@pytest.mark.parametrize(
    ("prompt", "cached", "prefill", "expected", "reason"),
    [
        (100, 0, True, "pd", "decode_busy"),  # a short prompt leaves the busy decode engine's batch alone
        (1000, 900, True, "decode_only", "few_uncached_tokens"),  # offloading would cost a prefill engine 1000 tokens
        (100, 0, False, "decode_only", "no_prefill_engine"),
        (1000, 0, True, "pd", "many_uncached_tokens"),
    ],
)
def test_decider_with_a_busy_decode_engine(prompt: int, cached: int, prefill: bool, expected: str, reason: str) -> None:
    decision = PdDecider(256).decide(prompt, cached, prefill, decode_busy=True)
    assert (decision.decision, decision.reason) == (expected, reason)


def test_a_decode_engine_is_busy_when_it_queues_or_its_cache_is_nearly_full() -> None:
    decider = PdDecider(256, busy_kv_usage=0.8)
    assert not decider.busy(Engine("http://d0", "decode", kv_usage=0.79, in_flight=40))
    assert decider.busy(Engine("http://d0", "decode", kv_usage=0.8))
    assert decider.busy(Engine("http://d0", "decode", waiting=1))


def test_plan_prefers_the_cached_decode_then_the_sessions_engine() -> None:
    scheduler = Scheduler.from_config(RouterConfig(pd_threshold_tokens=64))
    pool = engines()
    plan = scheduler.plan(context(4, {"http://d1": 4}, session="chat-7"), pool)
    assert plan.decode.engine.url == "http://d1" and plan.decode.scores["prefix"] == 1.0
    assert plan.prefill is None and plan.decision.reason == "few_uncached_tokens"  # 5 of 133 tokens uncached
    # no prefix information: the session's rendezvous engine, every time
    picks = {scheduler.plan(context(4, {}, session="chat-7"), pool).decode.engine.url for _ in range(10)}
    assert len(picks) == 1
    plan = scheduler.plan(context(4, {}, session="chat-7"), pool)
    assert plan.prefill is not None and plan.prefill.engine.url == "http://p0" and plan.decision.decision == "pd"
    for engine in pool:
        engine.healthy = False
    with pytest.raises(NoEngineAvailable):
        scheduler.plan(context(), pool)


def test_a_request_that_cannot_be_split_is_planned_decode_only() -> None:
    ctx = context(4)
    ctx.single_leg = "batched_prompt"
    plan = Scheduler.from_config(RouterConfig(pd_threshold_tokens=0)).plan(ctx, engines())
    assert plan.prefill is None and (plan.decision.decision, plan.decision.reason) == ("decode_only", "batched_prompt")


def test_an_open_breaker_takes_the_engine_out_until_its_pause_ends() -> None:
    breaker = CircuitBreaker(failures=2, successes=2, open_s=30.0, window_s=60.0)
    assert breaker.record(False, 0.0) is None and breaker.record(False, 1.0) == "open"
    assert not breaker.allows(29.0) and breaker.allows(31.0) and breaker.state == "half_open"
    assert breaker.record(True, 31.5) is None and breaker.record(True, 32.0) == "closed"
    breaker.record(False, 100.0)
    assert breaker.record(False, 200.0) is None, "a failure past the window starts a new run"
    breaker.trip(300.0)
    assert breaker.allows(331.0) and breaker.record(False, 331.0) == "open", "one failure while half-open reopens"


def test_an_engine_with_another_block_size_gets_no_prefix_credit() -> None:
    pool = engines()
    pool[1].block_size = 16  # its blocks do not line up with the router's 32-token blocks
    pool[2].block_size = 32
    ctx = context(blocks=4, matches={"http://d0": 4, "http://d1": 2})
    scores = PrefixScorer().score(ctx, pool[1:])
    assert scores[pool[1]] == 0.0 and scores[pool[2]] == 0.5
    assert ctx.matched_tokens(pool[1]) == 0 and ctx.matched_tokens(pool[2]) == 64
    pool[1].block_size = None  # not read yet from the engine's metrics: trusted
    assert ctx.matched_tokens(pool[1]) == 128


def test_with_no_prefix_overlap_an_idle_engine_beats_a_busy_one_whatever_stale_kv_usage_says() -> None:
    """The KV usage the router knows was scraped seconds ago: an engine that held a long prompt then and is idle now
    must still win over an engine with a request really in flight (picking the busy one loses to round robin)."""
    scheduler = Scheduler.from_config(RouterConfig(pd_threshold_tokens=0))
    idle_but_stale = Engine("http://d0", "decode", kv_usage=0.6)
    busy = Engine("http://d1", "decode", in_flight=1)
    prefills = [Engine("http://p0", "prefill", kv_usage=0.9), Engine("http://p1", "prefill", in_flight=1)]
    plan = scheduler.plan(context(4, {}), [idle_but_stale, busy, *prefills])
    assert plan.decode.engine is idle_but_stale
    assert plan.prefill is not None and plan.prefill.engine.url == "http://p0"


def test_a_prefix_in_flight_draws_the_requests_that_share_it_until_served() -> None:
    """Before any engine has computed a prefix (nothing in the index yet), a second request with it goes where the
    first was sent, even though that engine is now busier; once the first is served, the credit is gone."""
    scheduler = Scheduler.from_config(RouterConfig(pd_threshold_tokens=0))
    pool = [
        Engine("http://p0", "prefill"),
        Engine("http://p1", "prefill"),
        Engine("http://d0", "decode"),
        Engine("http://d1", "decode"),
    ]
    first = scheduler.plan(SchedulingContext("a", context(4).blocks), pool)
    assert first.prefill is not None
    first.prefill.engine.in_flight = first.decode.engine.in_flight = 1  # what the upstream does while it runs
    second = scheduler.plan(SchedulingContext("b", context(4).blocks), pool)
    assert second.prefill is not None and second.prefill.engine is first.prefill.engine
    assert second.decode.engine is first.decode.engine and second.decode.scores["prefix"] == 1.0
    assert second.context.matched_tokens(second.decode.engine) == 0  # the decider still sees nothing cached
    scheduler.on_served(first, Served(decode=first.decode.engine, prefill=first.prefill.engine, status=200))
    scheduler.on_served(second, Served(decode=second.decode.engine, prefill=second.prefill.engine, status=200))
    third = scheduler.plan(SchedulingContext("c", context(4).blocks), pool)
    assert third.decode.engine is not first.decode.engine and third.decode.scores["prefix"] == 0.0


def test_with_no_prefix_overlap_and_equal_queues_the_engines_take_turns() -> None:
    """Nothing tells the engines apart (no prefix held, the same queue, KV readings that differ): the picks go round
    robin, never twice to one engine while another waits its turn. A random pick would repeat engines."""
    scheduler = Scheduler.from_config(RouterConfig(pd_threshold_tokens=0))
    prefills = [Engine(f"http://p{i}", "prefill", kv_usage=0.1 * i) for i in range(3)]
    decodes = [Engine(f"http://d{i}", "decode", kv_usage=0.3 - 0.1 * i) for i in range(2)]
    plans = []
    for _ in range(12):  # each served before the next arrives (no pending credit)
        plan = scheduler.plan(context(4, {}), [*prefills, *decodes])
        scheduler.on_served(plan, Served(decode=plan.decode.engine, prefill=plan.prefill.engine, status=200))
        plans.append(plan)
    prefill_urls = [plan.prefill.engine.url for plan in plans if plan.prefill]
    decode_urls = [plan.decode.engine.url for plan in plans]
    assert all(len(set(prefill_urls[i : i + 3])) == 3 for i in range(0, 12, 3))
    assert all(decode_urls[i] != decode_urls[i + 1] for i in range(11))


def test_a_request_that_fails_leaves_no_prefix_in_flight() -> None:
    """A request that ends without being served releases its blocks: the next one with the same prefix is not drawn
    to the engine that failed it (before, its blocks stayed pending there for the 30 s backstop)."""
    scheduler = Scheduler.from_config(RouterConfig(pd_threshold_tokens=0))
    pool = [
        Engine("http://p0", "prefill"),
        Engine("http://p1", "prefill"),
        Engine("http://d0", "decode"),
        Engine("http://d1", "decode"),
    ]
    failed = scheduler.plan(SchedulingContext("a", context(4).blocks), pool)
    scheduler.release(failed)
    after = scheduler.plan(SchedulingContext("b", context(4).blocks), pool)
    assert after.decode.scores["prefix"] == 0.0 and after.decode.engine is not failed.decode.engine
    assert after.prefill is not None and failed.prefill is not None
    assert after.prefill.engine is not failed.prefill.engine


def test_a_retried_leg_takes_its_blocks_in_flight_to_the_engine_that_retries_it() -> None:
    """The decode leg fails on its first engine and the attempts move on: a request that shares its prefix, arriving
    meanwhile, goes where the blocks are now being computed, not to the engine that failed."""
    scheduler = Scheduler.from_config(RouterConfig(pd_threshold_tokens=0))
    decodes = [Engine("http://d0", "decode"), Engine("http://d1", "decode"), Engine("http://d2", "decode")]
    first = scheduler.plan(SchedulingContext("a", context(4).blocks), decodes)
    attempts = Attempts(scheduler, decodes, Retries(attempts=2, backoff_s=0), RouterMetrics())  # type: ignore[arg-type]

    async def second_attempt() -> Engine:
        tries = attempts(DECODE, first)
        assert await anext(tries) is first.decode.engine
        return await anext(tries)

    retried_on = asyncio.run(second_attempt())
    assert retried_on is not first.decode.engine
    retried_on.in_flight = 1
    second = scheduler.plan(SchedulingContext("b", context(4).blocks), decodes)
    assert second.decode.engine is retried_on and second.decode.scores["prefix"] == 1.0


def test_an_engine_that_left_and_came_back_is_new_to_the_picker() -> None:
    """Discovery removes an engine and later adds one at its address (a new pod on the IP): the picker keeps no turn
    for engines that left (its memory follows the pool, not every address ever seen), so the newcomer goes first
    among equals."""
    scheduler = Scheduler.from_config(RouterConfig(pd_threshold_tokens=0))
    registry = EngineRegistry(RouterConfig(), RouterMetrics())
    registry.listeners.append(scheduler)
    registry.replace([EngineSpec("http://d0", "decode"), EngineSpec("http://d1", "decode")])
    picks = []
    for name in "ab":
        plan = scheduler.plan(SchedulingContext(name, context(0).blocks), registry)
        scheduler.release(plan)
        picks.append(plan.decode.engine.url)
    assert sorted(picks) == ["http://d0", "http://d1"]
    registry.replace([EngineSpec(picks[0], "decode")])
    registry.replace([EngineSpec(picks[0], "decode"), EngineSpec(picks[1], "decode")])
    plan = scheduler.plan(SchedulingContext("c", context(0).blocks), registry)
    assert plan.decode.engine.url == picks[1]
