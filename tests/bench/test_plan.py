"""The planner (bench/plan): on a toy case whose answer is known from the timing model, the search finds the fewest
engines that meet the SLOs, the cheapest layout is chosen by price, the price table is overridable, and the YAML it
prints is a deployment pdstack accepts. Virtual time: no wall clock decides anything here."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from bench.fake_engine.hardware import EngineSize
from bench.fake_engine.kv_cache import KvCache, block_hashes
from bench.fake_engine.timing import EngineTiming
from bench.plan.__main__ import main
from bench.plan.prices import InstancePrice, load_prices
from bench.plan.report import yaml_snippet
from bench.plan.search import Candidate, Objectives, Search, burst_members, cheapest
from bench.plan.simulate import PlannedRequest, simulate
from bench.plan.virtual_time import run
from infra.config import parse_deployment

REPO = Path(__file__).resolve().parents[2]
TOY = EngineTiming()  # 6 ms a step, 0.032 ms a prompt token, 8192 tokens a step


def toy(instance: str = "p5.48xlarge") -> Candidate:
    size = EngineSize(model="toy", instance=instance, tp=1, timing=TOY, kv_tokens=640 * 16, engines_per_node=8)
    return Candidate(size, size)


def unique_prompts(count: int, gap_s: float, tokens: int = 3000) -> list[PlannedRequest]:
    return [PlannedRequest(i * gap_s, [i * tokens + t for t in range(tokens)], 4) for i in range(count)]


def test_virtual_time_runs_an_hour_of_sleeps_at_once() -> None:
    async def hour() -> float:
        loop = asyncio.get_running_loop()
        began = loop.time()
        await asyncio.gather(asyncio.sleep(60), asyncio.sleep(3600))
        return loop.time() - began

    assert run(hour()) == 3600


def test_an_idle_engine_answers_in_the_modelled_time() -> None:
    """One 3000-token prompt: prefill step 6 + 96 ms, pull 15 ms, first decode step 6 ms (+ its context's read)."""
    result = simulate(unique_prompts(1, 1.0), 1, 1, TOY, 640)
    outcome = result.outcomes[0]
    assert outcome.ttft_ms == pytest.approx(6 + 96 + 15 + 6 + 3000 * TOY.kv_read_ms_per_token, rel=1e-6)
    assert result.hit_rate == 0.0


def test_shared_prefixes_hit_the_engine_that_holds_them() -> None:
    prefix = list(range(2048))
    requests = [PlannedRequest(i * 0.5, prefix + [10_000 + i] * 64, 2) for i in range(6)]
    result = simulate(requests, 2, 1, TOY, 640)
    # Each later request finds the 2048-token prefix cached on the prefill engine that computed it.
    assert result.computed_tokens == 2048 + 6 * 64


def test_the_search_finds_the_fewest_prefill_engines_the_load_needs() -> None:
    """3000-token prompts every 60 ms: a prefill engine serves two per 198 ms step (8192-token budget), ~10 req/s,
    so one falls behind 16.7 req/s and two keep up; decode is light."""
    requests = unique_prompts(24, 0.06)
    search = Search(
        requests,
        Objectives(ttft_ms=400, tpot_ms=30),
        span_s=requests[-1].at_s,
        block_size=16,
        gpus_per_node=lambda _: 8,
        max_prefills=3,
        max_decodes=3,
    )
    frontier = search.frontier(toy())
    assert [(layout.prefills, layout.decodes) for layout in frontier] == [(2, 1)]
    tried = {(layout.prefills, layout.decodes): layout for layout in search.tried}
    assert not tried[(1, 3)].meets and tried[(1, 3)].attainment < 0.9
    assert tried[(2, 1)].gpus == 3 and tried[(2, 1)].nodes == 1


def test_the_cheapest_layout_is_chosen_by_price_then_margin() -> None:
    """Two GPUs a node, so the meeting layouts span different node counts and the price decides among them."""
    requests = unique_prompts(24, 0.06)
    search = Search(
        requests,
        Objectives(ttft_ms=400, tpot_ms=30),
        span_s=requests[-1].at_s,
        block_size=16,
        gpus_per_node=lambda _: 2,
        max_prefills=3,
        max_decodes=2,
    )
    for instance in ("p5.48xlarge", "p4d.24xlarge"):
        search.frontier(toy(instance))
    prices = {"p5.48xlarge": InstancePrice(capacity_block=40.0), "p4d.24xlarge": InstancePrice(capacity_block=15.0)}
    best = cheapest(search.tried, prices, "capacity_block")
    for instance, price in prices.items():
        meeting = [t for t in search.tried if t.meets and t.candidate.prefill.instance == instance]
        costs = sorted({t.hourly(price, "capacity_block") or 0.0 for t in meeting})
        assert len(costs) > 1, "every meeting layout costs the same: the price could not decide"
        chosen = best[instance]
        assert chosen.hourly(price, "capacity_block") == costs[0] and chosen.nodes == 2
        # Among the cheapest, the widest margin wins, not the first found.
        widest = max(
            min(t.attainment, t.burst_attainment) for t in meeting if t.hourly(price, "capacity_block") == costs[0]
        )
        assert min(chosen.attainment, chosen.burst_attainment) == widest


def test_the_burst_is_the_busiest_window() -> None:
    assert list(burst_members([0, 20, 21, 22, 23, 50], window_s=10)) == [1, 2, 3, 4]


def test_prices_are_overridable_field_by_field(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"p5.48xlarge": {"capacity_block": 30.0}, "p6-b200.48xlarge": {"on_demand": 99.0}}))
    prices = load_prices(path)
    assert prices["p5.48xlarge"].capacity_block == 30.0 and prices["p5.48xlarge"].on_demand is not None
    assert prices["p6-b200.48xlarge"].on_demand == 99.0
    path.write_text(json.dumps({"p5.48xlarge": {"on_demand": -1}}))
    with pytest.raises(ValueError, match=r"p5\.48xlarge"):
        load_prices(path)


def test_the_yaml_snippet_is_a_deployment_pdstack_accepts() -> None:
    requests = unique_prompts(2, 1.0)
    search = Search(
        requests,
        Objectives(ttft_ms=400, tpot_ms=30),
        span_s=1.0,
        block_size=16,
        gpus_per_node=lambda _: 8,
        max_prefills=1,
        max_decodes=1,
    )
    layout = search.evaluate(toy(), 1, 1)
    base = yaml.safe_load((REPO / "deployments" / "default.yaml").read_text())
    snippet = yaml.safe_load(yaml_snippet(layout, "llama-3.1-8b"))
    base["gpu_node_groups"] = snippet["gpu_node_groups"]
    base["serving"].update(snippet["serving"])
    deployment = parse_deployment(base)
    assert deployment.serving.prefill.replicas == 1 and deployment.serving.decode.tensor_parallel == 1


def test_the_planner_says_it_is_a_simulation_and_refuses_no_traffic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "trace.jsonl"
    trace.write_text(
        "\n".join(
            json.dumps({"timestamp": i * 500, "input_length": 1024, "output_length": 4, "hash_ids": [0, i + 1]})
            for i in range(8)
        )
        + "\n"
    )
    document = main(
        ["--trace", str(trace), "--instances", "p5.48xlarge", "--tp", "1", "--max-engines", "2", "--out", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert "SIMULATION" in out and document["simulation"] is True
    assert document["best"] and document["best"][0]["pd_ratio"] == "1:1"
    assert (tmp_path / f"{document['date'][:10]}-plan.md").read_text().count("A SIMULATION") == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["--instances", "p5.48xlarge"])
    assert exit_info.value.code == 2


def test_the_planner_takes_a_rate_and_a_workload_instead_of_a_trace(capsys: pytest.CaptureFixture[str]) -> None:
    document = main(
        ["--rate", "4", "--workload", "decode_heavy", "--instances", "p5.48xlarge", "--tp", "1", "--max-engines", "1"]
    )
    assert document["traffic"] == "workload decode_heavy at 4 req/s" and document["requests"] == 60
    assert document["best"][0]["pd_ratio"] == "1:1"


def test_an_unknown_model_exits_2_naming_the_known_models(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "no-such-model", "--rate", "4", "--workload", "decode_heavy", "--instances", "p5.48xlarge"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model 'no-such-model'; known models: " in err
    assert "llama-3.1-8b" in err and not err.startswith('bench.plan: "')


def test_a_cache_says_which_blocks_it_holds_in_use_or_evictable() -> None:
    """The planner's prefix match reads this (not the cache's private map); an evicted block is no longer held."""
    cache = KvCache(2, 4)
    tokens = list(range(8))
    hashes = block_hashes(tokens, 4)
    allocation = cache.allocate(hashes, 0, 2)
    cache.store(allocation, hashes, tokens)
    assert all(cache.holds(h) for h in hashes) and not cache.holds(12345)
    cache.release(allocation)
    assert all(cache.holds(h) for h in hashes)  # evictable, still a hit
    other = block_hashes(list(range(100, 108)), 4)
    cache.store(cache.allocate(other, 0, 2), other, list(range(100, 108)))
    assert not any(cache.holds(h) for h in hashes)


def test_the_planner_cli_does_not_load_the_replay_cli() -> None:
    """The planner shares the replay's options module, not its command line (which imports the harness)."""
    import subprocess
    import sys

    code = "import sys, bench.plan.__main__; print('bench.replay.__main__' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
