"""Admission control under a bursty overload: interactive TTFT with pdstack's admission on and off, next to
vllm-router and SMG, on the same simulated engines and the same trace.

    flock /tmp/pdstack-vllm.lock .venv/bin/python -m bench.admission_bench [--requests 600] [--rate 20]

The trace: Gamma inter-arrival times with coefficient of variation 3.5 (the bursty workload's arrival process,
bench.workloads.generators.gamma_gap) (bursts far above the mean rate); 70% of the
requests interactive (64-192-token prompts, 32-token answers), 30% batch (1,000-2,000-token prompts, 128-token
answers) marked ``x-pdstack-priority: batch`` (the other routers ignore the header). Engines: 2 prefill + 2 decode
simulated H100s (bench/fake_engine). Each system starts on fresh engines. Rejected requests (429) are counted, not
retried: the TTFT columns are over the requests each system served.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
from datetime import date
from pathlib import Path

from bench.harness.cpus import ENGINE_CPU, REPO
from bench.harness.load_generator import RequestResult, run_workload
from bench.harness.router_under_test import router_under_test
from bench.harness.run import machine, start_engines, versions
from bench.harness.scenario import Scenario
from bench.systems.system import PdstackRouter, Smg, System, VllmRouter
from bench.workloads.generators import completion, gamma_gap, words
from bench.workloads.request import BenchRequest
from bench.workloads.vocabulary import write_tokenizer
from runtime.router.config import Admission
from testbed.percentile import percentile

SCENARIO = Scenario(name="admission", prefills=2, decodes=2, workloads=[])
SYSTEMS: list[System] = [
    PdstackRouter("pdstack", "approximate"),
    PdstackRouter("pdstack-no-admission", "approximate", admission=False),
    VllmRouter("vllm-router", "cache_aware"),
    Smg("smg", "cache_aware"),
]
HEADER = Admission().priority_header


def bursty_trace(count: int, rate_rps: float, seed: int = 12, cv: float = 3.5) -> list[tuple[str, BenchRequest]]:
    rng = random.Random(seed)
    now, out = 0.0, []
    for _ in range(count):
        now += gamma_gap(rng, rate_rps, cv)
        if rng.random() < 0.7:
            out.append(("interactive", completion(now, words(rng, rng.randint(64, 192)), 32)))
        else:
            request = completion(now, words(rng, rng.randint(1000, 2000)), 128)
            out.append(("batch", BenchRequest(request.at_s, request.endpoint, request.body, {HEADER: "batch"})))
    return out


def summarize(system: System, classes: list[str], results: list[RequestResult], wall: float) -> dict[str, object]:
    row: dict[str, object] = {"system": system.name, "policy": system.policy, "wall_s": round(wall, 1)}
    for name in ("interactive", "batch"):
        mine = [r for c, r in zip(classes, results, strict=True) if c == name]
        served = [r.ttft_s * 1000 for r in mine if r.ok]
        row[f"{name}_requests"] = len(mine)
        row[f"{name}_ttft_p50_ms"] = round(percentile(served, 0.5), 1)
        row[f"{name}_ttft_p99_ms"] = round(percentile(served, 0.99), 1)
        row[f"{name}_429"] = sum(1 for r in mine if r.status == 429)
        row[f"{name}_5xx"] = sum(1 for r in mine if r.status >= 500)
        row[f"{name}_failed_other"] = sum(1 for r in mine if not r.ok and r.status != 429 and r.status < 500)
    return row


def run_system(system: System, trace: list[tuple[str, BenchRequest]], tokenizer: Path, work: Path) -> dict[str, object]:
    engines, topology = start_engines(SCENARIO, tokenizer, work)
    try:
        with router_under_test(system, topology, work, system.name) as router:
            results, wall = asyncio.run(run_workload(router.url, [request for _, request in trace]))
        row = summarize(system, [c for c, _ in trace], results, wall)
        print(json.dumps(row), flush=True)
        return row
    finally:
        engines.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--rate", type=float, default=20.0, help="mean arrival rate, requests/s")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / f"{date.today()}-admission")
    args = parser.parse_args()
    work = REPO / ".work" / "bench-admission"
    work.mkdir(parents=True, exist_ok=True)
    tokenizer = write_tokenizer(work / "tokenizer")
    trace = bursty_trace(args.requests, args.rate)
    gaps = [b.at_s - a.at_s for (_, a), (_, b) in itertools.pairwise(trace)]
    mean = sum(gaps) / len(gaps)
    cv = (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5 / mean
    rows = []
    for system in SYSTEMS:
        reason = system.unavailable()
        if reason:
            print(f"skipping {system.label}: {reason}")
            continue
        rows.append(run_system(system, trace, tokenizer, work))
    record = {
        "trace": {"requests": len(trace), "mean_rate_rps": args.rate, "interarrival_cv": round(cv, 2)},
        "engines": {"prefills": SCENARIO.prefills, "decodes": SCENARIO.decodes, "cpu": ENGINE_CPU},
        "versions": versions(),
        "machine": machine(),
        "rows": rows,
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    lines = [
        (
            f"# Admission under a bursty overload ({len(trace)} requests, mean {args.rate:g} rps, "
            f"inter-arrival CV {cv:.2f})"
        ),
        "",
        "| system | interactive TTFT p50 / p99 ms | interactive 429 / 5xx | batch TTFT p99 ms | batch 429 / 5xx |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['system']} ({row['policy']}) | {row['interactive_ttft_p50_ms']} / "
            f"{row['interactive_ttft_p99_ms']} | {row['interactive_429']} / {row['interactive_5xx']} | "
            f"{row['batch_ttft_p99_ms']} | {row['batch_429']} / {row['batch_5xx']} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
