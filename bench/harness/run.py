"""``python -m bench.harness.run --scenario quick|full``: every system on the same simulated engines, the same
workloads, in one run. Per (workload, system) a goodput rate sweep (bench/harness/goodput.py) whose every point starts
on fresh engines with cold caches and a fresh router; the row keeps the first point's columns (the workload's start
rate, the same for every system) next to the goodput. Then the scale runs: the same workload on growing clusters.
Writes ``bench/results/<date>-<name>.{json,md,png}`` and ``<date>-<name>-goodput.png``, ``<date>-<name>-scale.png``.

CPU layout on 2 cores: the router under test alone on CPU 0; the simulated engines and the load generator on CPU 1.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.fake_engine.cluster import ClusterSpec, EngineSpec
from bench.fake_engine.tokenizer import EngineTokenizer
from bench.harness.cpus import ENGINE_CPU, REPO, environment
from bench.harness.goodput import SweepPlan, sweep
from bench.harness.load_generator import run_workload
from bench.harness.measurement import ROW_FIELDS, row, scrape_local_compute
from bench.harness.oracle import oracle_hit_rate
from bench.harness.report import write_report
from bench.harness.router_under_test import router_under_test
from bench.harness.scenario import SCENARIOS, Scenario
from bench.harness.slo import SLOS
from bench.systems.system import PdstackRouter, RoundRobinBaseline, Smg, System, VllmRouter
from bench.systems.topology import EngineAddress, Topology
from bench.workloads.generators import SharedPrefix, WorkloadSpec, generate
from bench.workloads.request import BenchRequest
from bench.workloads.vocabulary import write_tokenizer
from testbed.ports import free_ports
from testbed.process import ProcessGroup

RESULTS = REPO / "bench" / "results"

SYSTEMS: list[System] = [
    PdstackRouter("pdstack", "precise"),
    PdstackRouter("pdstack", "approximate"),
    RoundRobinBaseline("baseline", "round_robin"),
    VllmRouter("vllm-router", "round_robin"),
    VllmRouter("vllm-router", "cache_aware"),
    VllmRouter("vllm-router", "kv_aware"),
    Smg("smg", "cache_aware"),
]


def start_engines(scenario: Scenario, tokenizer: Path, work: Path) -> tuple[ProcessGroup, Topology]:
    count = scenario.prefills + scenario.decodes
    ports = free_ports(2 * count)
    specs = [
        EngineSpec(name=f"{role}-{i}", role=role, http_port=ports[2 * n], kv_events_port=ports[2 * n + 1])
        for n, (role, i) in enumerate(
            [("prefill", i) for i in range(scenario.prefills)] + [("decode", i) for i in range(scenario.decodes)]
        )
    ]
    spec = ClusterSpec(
        tokenizer=str(tokenizer),
        block_size=scenario.block_size,
        capacity_blocks=scenario.capacity_blocks,
        host_capacity_blocks=scenario.host_capacity_blocks,
        timing=scenario.timing,
        engines=specs,
    )
    spec_file = work / "engines.json"
    spec_file.write_text(spec.model_dump_json())
    engines = ProcessGroup(
        [sys.executable, "-m", "bench.fake_engine.cluster", str(spec_file)],
        work / "engines.log",
        ENGINE_CPU,
        environment(),
        REPO,
    )
    engines.wait_line("ready")
    topology = Topology(
        [
            EngineAddress(s.name, s.role, f"http://127.0.0.1:{s.http_port}", f"tcp://127.0.0.1:{s.kv_events_port}")
            for s in specs
        ],
        tokenizer,
        scenario.block_size,
    )
    return engines, topology


def offered_rate(requests: list[BenchRequest]) -> float:
    """Requests per second over the span of their arrivals (a multi-turn workload's own rate: its think times
    count, not only its conversations' start rate)."""
    return len(requests) / max(r.at_s for r in requests)


def at_offered_rate(requests: list[BenchRequest], rate: float) -> list[BenchRequest]:
    """The same requests, every arrival time (think and tool pauses included) scaled to offer ``rate``."""
    stretch = offered_rate(requests) / rate
    return [dataclasses.replace(r, at_s=r.at_s * stretch) for r in requests]


def prompt_tokens(requests: list[BenchRequest], tokenizer: EngineTokenizer) -> int:
    """The workload's prompt tokens as the engines count them (their tokenizer, not the router's)."""
    return sum(len(tokenizer.tokens(r.endpoint == "chat", r.body)) for r in requests)


def run_one(
    system: System,
    scenario: Scenario,
    workload: WorkloadSpec,
    requests: list[BenchRequest],
    tokens: int,
    tokenizer: Path,
    work: Path,
) -> dict[str, Any]:
    """One run on fresh engines and a fresh router; the row's ``slo_attainment`` against the workload's SLO."""
    engines, topology = start_engines(scenario, tokenizer, work)
    try:
        with router_under_test(system, topology, work, f"{system.name}-{system.policy}-{workload.kind}") as router:
            urls = [e.url for e in topology.engines]
            computed_before = scrape_local_compute(urls).local_compute
            cpu_before = router.process.cpu_seconds()
            results, wall = asyncio.run(run_workload(router.url, requests))
            cpu = router.process.cpu_seconds() - cpu_before
        computed = scrape_local_compute(urls).local_compute - computed_before
        failed = sum(1 for r in results if not r.ok)
        attainment = SLOS[workload.kind].attainment(results, scenario.timing.time_scale)
        result = row(
            system.name,
            system.policy,
            workload.kind,
            workload.rate_rps,
            results,
            wall,
            tokens,
            computed,
            cpu,
            attainment,
        )
        print(
            f"  {system.label:32s} {workload.kind:14s} at {workload.rate_rps:6.2f} rps: SLO {attainment:.2f}  "
            f"TTFT p50 {result['ttft_p50_ms']:8.1f} ms  TPOT p50 {result['tpot_p50_ms']:6.1f} ms  "
            f"hit {result['engine_prefix_hit_rate']:.3f}  cpu {result['router_cpu_ms_per_req']:.2f} ms/req  "
            f"failed {failed}",
            flush=True,
        )
        if failed:
            result["_failed"] = failed
        return result
    finally:
        engines.stop()


def scale_rows(
    scenario: Scenario,
    runnable: list[System],
    tokenizer_dir: Path,
    tokenizer: EngineTokenizer,
    work: Path,
    failures: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The scale runs: shared_prefix on N prefill + N decode engines for each N of the plan, its prefix groups and
    its modelled rate growing with N. time_scale grows with N as well (the wall rate stays the plan's): one Python
    process simulates every engine, and at 64 engines it could not keep up at the 4 + 4 cluster's time_scale."""
    plan = scenario.scale
    if plan is None:
        return []
    chosen = [s for s in runnable if f"{s.name}:{s.policy}" in plan.systems]
    out: list[dict[str, Any]] = []
    for size in plan.sizes:
        grow = size / plan.sizes[0]
        sized = scenario.model_copy(
            update={
                "prefills": size,
                "decodes": size,
                "timing": scenario.timing.model_copy(update={"time_scale": scenario.timing.time_scale * grow}),
            }
        )
        spec = SharedPrefix(
            rate_rps=plan.rate_rps, groups=plan.groups_per_engine * size, users=plan.users, questions=plan.questions
        )
        requests = generate(spec)
        tokens = prompt_tokens(requests, tokenizer)
        for system in chosen:
            try:
                result = run_one(system, sized, spec, requests, tokens, tokenizer_dir, work)
            except RuntimeError as error:
                failures.append(
                    {
                        "system": system.name,
                        "policy": system.policy,
                        "workload": f"scale-{size}",
                        "error": str(error)[-2000:],
                    }
                )
                continue
            result.pop("_failed", None)
            out.append(
                {
                    **result,
                    "engines_per_role": size,
                    "time_scale": sized.timing.time_scale,
                    "oracle_hit_rate": oracle_hit_rate(requests, tokenizer, scenario.block_size),
                }
            )
    return out


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("vllm-router", "smg", "aiohttp", "tokenizers", "pyzmq", "matplotlib"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    try:
        import subprocess

        found["pdstack"] = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
            ).stdout.strip()
            or "unknown"
        )
    except OSError:
        found["pdstack"] = "unknown"
    return found


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory, 1),
        "kernel": platform.release(),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="quick")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the json, md and png")
    parser.add_argument(
        "--systems",
        default="",
        help="comma-separated systems to keep: name or name:policy (e.g. pdstack,vllm-router:kv_aware)",
    )
    parser.add_argument("--workloads", default="", help="comma-separated workload kinds to keep (default: all)")
    parser.add_argument("--no-scale", action="store_true", help="skip the scale runs")
    parser.add_argument("--sweep", default="", help="override the sweep plan: factor,ramp,down,bisections")
    parser.add_argument(
        "--start-scale",
        type=float,
        default=1.0,
        help="multiply every workload's start rate (the offered rate its requests are scaled to), "
        "on top of the scenario's own start_scale",
    )
    parser.add_argument("--name", default="", help="name the results <date>-NAME.* (default: the scenario's)")
    parser.add_argument(
        "--host-tier", type=int, default=0, help="each engine's host KV tier in blocks (issue 24; 0: none)"
    )
    parser.add_argument(
        "--capacity-blocks", type=int, default=0, help="each engine's HBM KV blocks (default: the scenario's)"
    )
    args = parser.parse_args(argv)
    scenario = SCENARIOS[args.scenario]
    if args.capacity_blocks:
        scenario = scenario.model_copy(update={"capacity_blocks": args.capacity_blocks})
    if args.host_tier:
        scenario = scenario.model_copy(update={"host_capacity_blocks": args.host_tier})
    if args.name:
        scenario = scenario.model_copy(update={"name": args.name})
    if args.sweep:
        factor, ramp, down, bisections = args.sweep.split(",")
        scenario = scenario.model_copy(
            update={
                "sweep": SweepPlan(factor=float(factor), ramp=int(ramp), down=int(down), bisections=int(bisections))
            }
        )
    if args.workloads:
        scenario = scenario.model_copy(
            update={"workloads": [w for w in scenario.workloads if w.kind in args.workloads.split(",")]}
        )
    if args.no_scale:
        scenario = scenario.model_copy(update={"scale": None})
    work = REPO / "bench" / ".work" / scenario.name
    work.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = write_tokenizer(work / "tokenizer")
    tokenizer = EngineTokenizer(tokenizer_dir)
    keep = set(args.systems.split(",")) if args.systems else set(scenario.systems or ())
    chosen = [s for s in SYSTEMS if not keep or s.name in keep or f"{s.name}:{s.policy}" in keep]
    skipped = [
        {"system": s.name, "policy": s.policy, "reason": reason}
        for s in chosen
        if (reason := s.unavailable()) is not None
    ]
    runnable = [s for s in chosen if s.unavailable() is None]
    workloads = [(spec, generate(spec)) for spec in scenario.workloads]
    prompt_counts = {spec.kind: prompt_tokens(requests, tokenizer) for spec, requests in workloads}
    rows: list[dict[str, Any]] = []
    sweeps: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    began = time.time()
    for index, (spec, requests) in enumerate(workloads):
        shift = index % max(1, len(runnable))
        for system in runnable[shift:] + runnable[:shift]:
            measured: list[dict[str, Any]] = []

            def measure(rate: float) -> float:
                at_rate = spec.model_copy(update={"rate_rps": rate})
                try:
                    result = run_one(
                        system,
                        scenario,
                        at_rate,
                        at_offered_rate(requests, rate),
                        prompt_counts[spec.kind],
                        tokenizer_dir,
                        work,
                    )
                except RuntimeError as error:
                    failures.append(
                        {
                            "system": system.name,
                            "policy": system.policy,
                            "workload": spec.kind,
                            "rate_rps": rate,
                            "error": str(error)[-2000:],
                        }
                    )
                    print(f"  {system.label}: FAILED {str(error)[:300]}", flush=True)
                    return 0.0
                failed = result.pop("_failed", 0)
                if failed:
                    failures.append(
                        {
                            "system": system.name,
                            "policy": system.policy,
                            "workload": spec.kind,
                            "rate_rps": rate,
                            "error": f"{failed} of {result['requests']} requests failed",
                        }
                    )
                measured.append(result)
                return float(result["slo_attainment"])

            start = offered_rate(requests) * args.start_scale * scenario.start_scale.get(spec.kind, 1.0)
            found = sweep(measure, start, scenario.sweep)
            print(
                f"  {system.label:32s} {spec.kind:14s} goodput {found.goodput_rps:.2f} rps {found.bound} "
                f"({time.time() - began:.0f} s)",
                flush=True,
            )
            sweeps.append(
                {
                    "system": system.name,
                    "policy": system.policy,
                    "workload": spec.kind,
                    "goodput_rps": found.goodput_rps,
                    "bound": found.bound,
                    "points": [{"rate_rps": rate, "slo_attainment": attainment} for rate, attainment in found.points],
                    "rows": measured,
                }
            )
            if measured and measured[0]["rate_rps"] == start:
                rows.append({**measured[0], "goodput_rps": found.goodput_rps, "goodput_bound": found.bound})
    scale = scale_rows(scenario, runnable, tokenizer_dir, tokenizer, work, failures)
    for spec, requests in workloads:
        rows.append(
            {
                **dict.fromkeys(ROW_FIELDS),
                "system": "oracle",
                "policy": "offline-best",
                "workload": spec.kind,
                "requests": len(requests),
                "engine_prefix_hit_rate": oracle_hit_rate(requests, tokenizer, scenario.block_size),
            }
        )
    document = {
        "name": scenario.name,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": {"full": "make bench", "quick": "make bench-quick"}.get(
            scenario.name, "python -m bench.harness.run " + " ".join(sys.argv[1:] if argv is None else argv)
        ),
        "duration_s": round(time.time() - began, 1),
        "machine": machine(),
        "versions": versions(),
        "scenario": json.loads(scenario.model_dump_json()),
        "slos": {kind: vars(slo) for kind, slo in SLOS.items()},
        "skipped": skipped,
        "failures": failures,
        "rows": rows,
        "sweeps": sweeps,
        "scale": scale,
    }
    return write_report(document, args.out)


if __name__ == "__main__":
    print(main())
