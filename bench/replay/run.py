"""One replay of a trace window through one router on fresh simulated engines (the routing benchmark's systems,
process layout and engines: bench/harness/run.py), and its row: SLO attainment, goodput at the replayed rate,
TTFT/TPOT percentiles, the engines' prefix hit rate next to the trace's bound, and where the time went."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness.load_generator import RequestResult, send
from bench.harness.measurement import scrape_local_compute
from bench.harness.router_under_test import router_under_test
from bench.harness.run import start_engines
from bench.harness.scenario import Scenario
from bench.replay.workload import TraceWorkload
from bench.systems.system import System
from bench.workloads.request import BenchRequest
from testbed.percentile import percentile

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class TraceSlo:
    """Objectives in modelled ms (wall ms / time_scale), as bench/harness/slo.py."""

    ttft_ms: float
    tpot_ms: float

    def met(self, result: RequestResult, time_scale: float) -> bool:
        return (
            result.ok
            and result.ttft_s * 1000.0 / time_scale <= self.ttft_ms
            and result.tpot_s * 1000.0 / time_scale <= self.tpot_ms
        )


async def send_as_scheduled(url: str, requests: Iterable[BenchRequest]) -> tuple[list[RequestResult], float]:
    """bench/harness/load_generator.py's run_workload for a lazy ``requests`` (sorted by ``at_s``): each request is
    taken from the iterator (its prompt built) only when it is due, and dropped once answered, so a long trace
    never holds every prompt at once. All results in request order, and the wall time from the start to the last
    answer."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent: list[asyncio.Task[RequestResult]] = []
        for request in requests:
            await asyncio.sleep(max(0.0, start + request.at_s - loop.time()))
            sent.append(asyncio.ensure_future(send(session, url, request)))
        results = await asyncio.gather(*sent)
        return list(results), loop.time() - start


def summarize(
    system: System,
    workload: TraceWorkload,
    results: list[RequestResult],
    wall_s: float,
    computed_tokens: float,
    router_cpu_s: float | None,
    slo: TraceSlo,
    time_scale: float,
) -> dict[str, Any]:
    """Latencies in MODELLED ms (wall / time_scale): the trace's SLOs are stated on the modelled hardware.

    Where the time went, over the requests served: ``idle_prefill_share`` is the part of their time to first token
    that idle engines with the bound's cache hits would have spent anyway (prefill, pull, first step); the rest of
    TTFT (``waiting_share``) is queueing, cache misses beyond the bound and the router; ``decode_share`` is the part
    of end-to-end time after the first token."""
    scale = 1000.0 / time_scale
    ok = [(r, idle) for r, idle in zip(results, workload.idle_ttft_ms, strict=True) if r.ok]
    ttft = [r.ttft_s * scale for r, _ in ok]
    tpot = [r.tpot_s * scale for r, _ in ok if r.output_tokens > 1]
    e2e = [r.e2e_s * scale for r, _ in ok]
    met = sum(1 for r in results if slo.met(r, time_scale))
    total_e2e = sum(e2e) or 1.0
    idle = sum(min(i, r.ttft_s * scale) for r, i in ok)
    modelled_s = wall_s / time_scale
    return {
        "system": system.name,
        "policy": system.policy,
        "requests": len(results),
        "failed": len(results) - len(ok),
        "rate_rps": workload.rate_rps,
        "slo_attainment": met / len(results) if results else 0.0,
        "goodput_rps": met / modelled_s if modelled_s > 0 else 0.0,
        "throughput_rps": len(ok) / modelled_s if modelled_s > 0 else 0.0,
        "output_tps": sum(r.output_tokens for r, _ in ok) / modelled_s if modelled_s > 0 else 0.0,
        "ttft_p50_ms": percentile(ttft, 0.5),
        "ttft_p90_ms": percentile(ttft, 0.9),
        "ttft_p99_ms": percentile(ttft, 0.99),
        "tpot_p50_ms": percentile(tpot, 0.5),
        "tpot_p90_ms": percentile(tpot, 0.9),
        "tpot_p99_ms": percentile(tpot, 0.99),
        "e2e_p50_ms": percentile(e2e, 0.5),
        "e2e_p99_ms": percentile(e2e, 0.99),
        "engine_prefix_hit_rate": 1.0 - computed_tokens / workload.prompt_tokens if workload.prompt_tokens else 0.0,
        "bound_hit_rate": workload.bound_hit_rate,
        "idle_prefill_share": idle / total_e2e,
        "waiting_share": (sum(ttft) - idle) / total_e2e,
        "decode_share": (total_e2e - sum(ttft)) / total_e2e,
        "router_cpu_ms_per_req": None if router_cpu_s is None else router_cpu_s * 1000.0 / max(1, len(results)),
    }


def replay_one(
    system: System, scenario: Scenario, workload: TraceWorkload, slo: TraceSlo, tokenizer: Path, work: Path
) -> dict[str, Any]:
    engines, topology = start_engines(scenario, tokenizer, work)
    try:
        with router_under_test(system, topology, work, f"{system.name}-{system.policy}-replay") as router:
            urls = [e.url for e in topology.engines]
            before = scrape_local_compute(urls).local_compute
            cpu_before = router.process.cpu_seconds()
            results, wall = asyncio.run(send_as_scheduled(router.url, workload.bench_requests()))
            cpu = router.process.cpu_seconds() - cpu_before
            computed = scrape_local_compute(urls).local_compute - before
        return summarize(system, workload, results, wall, computed, cpu, slo, scenario.timing.time_scale)
    finally:
        engines.stop()
