"""A run's row: the client's timings, the SLO attainment, the engines' own prefix-cache counters, the router's CPU
time; the goodput fields are the sweep's (bench/harness/goodput.py), filled in after it."""

from __future__ import annotations

from dataclasses import dataclass

from bench.harness.load_generator import RequestResult
from testbed.percentile import percentile
from testbed.scrape import sample_total

ROW_FIELDS = (
    "system",
    "policy",
    "workload",
    "requests",
    "rate_rps",
    "goodput_rps",
    "goodput_bound",
    "slo_attainment",
    "throughput_rps",
    "output_tps",
    "ttft_p50_ms",
    "ttft_p90_ms",
    "ttft_p99_ms",
    "tpot_p50_ms",
    "tpot_p99_ms",
    "e2e_p50_ms",
    "e2e_p99_ms",
    "engine_prefix_hit_rate",
    "router_cpu_ms_per_req",
)


@dataclass(frozen=True)
class EngineCounters:
    local_compute: float


def scrape_local_compute(urls: list[str]) -> EngineCounters:
    """Prompt tokens the engines computed themselves (vllm:prompt_tokens_by_source{source="local_compute"})."""
    return EngineCounters(
        sum(sample_total(url, "vllm:prompt_tokens_by_source_total", source="local_compute") for url in urls)
    )


def row(
    system: str,
    policy: str,
    workload: str,
    rate_rps: float,
    results: list[RequestResult],
    wall_s: float,
    prompt_tokens: int,
    computed_tokens: float,
    router_cpu_s: float | None,
    slo_attainment: float | None = None,
) -> dict[str, object]:
    """Latencies in wall ms (modelled ms x the scenario's time_scale)."""
    ok = [r for r in results if r.ok]
    ms = 1000.0
    ttft = [r.ttft_s * ms for r in ok]
    tpot = [r.tpot_s * ms for r in ok if r.output_tokens > 1]
    e2e = [r.e2e_s * ms for r in ok]
    return {
        "system": system,
        "policy": policy,
        "workload": workload,
        "requests": len(results),
        "rate_rps": rate_rps,
        "goodput_rps": None,
        "goodput_bound": None,
        "slo_attainment": slo_attainment,
        "throughput_rps": len(ok) / wall_s,
        "output_tps": sum(r.output_tokens for r in ok) / wall_s,
        "ttft_p50_ms": percentile(ttft, 0.5),
        "ttft_p90_ms": percentile(ttft, 0.9),
        "ttft_p99_ms": percentile(ttft, 0.99),
        "tpot_p50_ms": percentile(tpot, 0.5),
        "tpot_p99_ms": percentile(tpot, 0.99),
        "e2e_p50_ms": percentile(e2e, 0.5),
        "e2e_p99_ms": percentile(e2e, 0.99),
        "engine_prefix_hit_rate": 1.0 - computed_tokens / prompt_tokens if prompt_tokens else 0.0,
        "router_cpu_ms_per_req": None if router_cpu_s is None else router_cpu_s * ms / max(1, len(results)),
    }
