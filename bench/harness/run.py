"""``python -m bench.harness.run --scenario quick|full``: every system on the same simulated engines, the same
workloads, in one run; systems alternate (the order rotates each repeat) and each (system, workload) starts on fresh
engines with cold caches. Writes ``bench/results/<date>-<name>.{json,md,png}``.

CPU layout on 2 cores: the router under test alone on CPU 0; the simulated engines and the load generator on CPU 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.fake_engine.cluster import ClusterSpec, EngineSpec
from bench.harness.load_generator import run_workload
from bench.harness.measurement import row, scrape_local_compute
from bench.harness.report import write_report
from bench.harness.scenario import SCENARIOS, Scenario
from bench.oracle import oracle_hit_rate
from bench.systems.system import PdstackRouter, RoundRobinBaseline, Smg, System, VllmRouter
from bench.systems.topology import EngineAddress, Topology
from bench.workloads.generators import WorkloadSpec, generate
from bench.workloads.request import BenchRequest
from bench.workloads.vocabulary import write_tokenizer
from runtime.router.openai_request import OpenAiRequest
from runtime.router.prompt_tokenizer import PromptTokenizer
from testbed.ports import free_ports
from testbed.process import ProcessGroup

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
ROUTER_CPU, ENGINE_CPU = 0, 1

SYSTEMS: list[System] = [
    PdstackRouter("pdstack", "precise"),
    PdstackRouter("pdstack", "approximate"),
    RoundRobinBaseline("baseline", "round_robin"),
    VllmRouter("vllm-router", "round_robin"),
    VllmRouter("vllm-router", "cache_aware"),
    VllmRouter("vllm-router", "kv_aware"),
    Smg("smg", "cache_aware"),
]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0"}


def start_engines(scenario: Scenario, tokenizer: Path, work: Path) -> tuple[ProcessGroup, Topology]:
    count = scenario.prefills + scenario.decodes
    ports = free_ports(2 * count)
    specs = [EngineSpec(name=f"{role}-{i}", role=role, http_port=ports[2 * n], kv_events_port=ports[2 * n + 1])
             for n, (role, i) in enumerate([("prefill", i) for i in range(scenario.prefills)]
                                           + [("decode", i) for i in range(scenario.decodes)])]
    spec = ClusterSpec(tokenizer=str(tokenizer), block_size=scenario.block_size,
                       capacity_blocks=scenario.capacity_blocks, timing=scenario.timing, engines=specs)
    spec_file = work / "engines.json"
    spec_file.write_text(spec.model_dump_json())
    engines = ProcessGroup([sys.executable, "-m", "bench.fake_engine.cluster", str(spec_file)], work / "engines.log",
                           ENGINE_CPU, environment(), REPO)
    engines.wait_line("ready")
    topology = Topology([EngineAddress(s.name, s.role, f"http://127.0.0.1:{s.http_port}",
                                       f"tcp://127.0.0.1:{s.kv_events_port}") for s in specs],
                        tokenizer, scenario.block_size)
    return engines, topology


def prompt_tokens(requests: list[BenchRequest], tokenizer: PromptTokenizer) -> int:
    return sum(len(tokenizer.tokens(OpenAiRequest.parse(r.endpoint, json.dumps(r.body).encode()))) for r in requests)


def run_one(system: System, scenario: Scenario, workload: WorkloadSpec, requests: list[BenchRequest],
            tokens: int, tokenizer: Path, work: Path) -> dict[str, Any]:
    engines, topology = start_engines(scenario, tokenizer, work)
    router: ProcessGroup | None = None
    try:
        port, metrics_port = free_ports(2)
        tag = f"{system.name}-{system.policy}-{workload.kind}"
        router = ProcessGroup(system.argv(topology, port, metrics_port, work), work / f"{tag}.log", ROUTER_CPU,
                              environment(), REPO)
        url = f"http://127.0.0.1:{port}"
        router.wait_http(url + system.ready_path, timeout_s=90)
        system.register(url, topology)
        time.sleep(0.5)  # first health and metrics rounds; KV-event subscriptions settle
        urls = [e.url for e in topology.engines]
        computed_before = scrape_local_compute(urls).local_compute
        cpu_before = router.cpu_seconds()
        results, wall = asyncio.run(run_workload(url, requests))
        cpu = router.cpu_seconds() - cpu_before
        computed = scrape_local_compute(urls).local_compute - computed_before
        failed = sum(1 for r in results if not r.ok)
        result = row(system.name, system.policy, workload.kind, results, wall, tokens, computed, cpu)
        print(f"  {system.label:32s} {workload.kind:14s} {result['throughput_rps']:6.2f} rps  "
              f"TTFT p50 {result['ttft_p50_ms']:8.1f} ms  hit {result['engine_prefix_hit_rate']:.3f}  "
              f"cpu {result['router_cpu_ms_per_req']:.2f} ms/req  failed {failed}", flush=True)
        if failed:
            result["_failed"] = failed
        return result
    finally:
        if router is not None:
            router.stop()
        engines.stop()


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("vllm-router", "smg", "aiohttp", "tokenizers", "pyzmq", "matplotlib"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    try:
        import subprocess
        found["pdstack"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                          text=True, check=False).stdout.strip() or "unknown"
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
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gib": round(memory, 1), "kernel": platform.release(),
            "platform": platform.platform()}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="quick")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the json, md and png")
    parser.add_argument("--systems", default="", help="comma-separated systems to keep: name or name:policy (e.g. pdstack,vllm-router:kv_aware)")
    args = parser.parse_args(argv)
    scenario = SCENARIOS[args.scenario]
    work = REPO / "bench" / ".work" / scenario.name
    work.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = write_tokenizer(work / "tokenizer")
    tokenizer = PromptTokenizer(tokenizer_dir)
    keep = set(args.systems.split(",")) if args.systems else set()
    chosen = [s for s in SYSTEMS if not keep or s.name in keep or f"{s.name}:{s.policy}" in keep]
    skipped = [{"system": s.name, "policy": s.policy, "reason": reason}
               for s in chosen if (reason := s.unavailable()) is not None]
    runnable = [s for s in chosen if s.unavailable() is None]
    workloads = [(spec, generate(spec)) for spec in scenario.workloads]
    prompt_counts = {spec.kind: prompt_tokens(requests, tokenizer) for spec, requests in workloads}
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    began = time.time()
    for repeat in range(scenario.repeats):
        print(f"repeat {repeat + 1}/{scenario.repeats}", flush=True)
        for spec, requests in workloads:
            shift = repeat % max(1, len(runnable))
            for system in runnable[shift:] + runnable[:shift]:
                try:
                    result = run_one(system, scenario, spec, requests, prompt_counts[spec.kind], tokenizer_dir, work)
                except RuntimeError as error:
                    failures.append({"system": system.name, "policy": system.policy, "workload": spec.kind,
                                     "repeat": repeat, "error": str(error)[-2000:]})
                    print(f"  {system.label}: FAILED {str(error)[:300]}", flush=True)
                    continue
                failed = result.pop("_failed", 0)
                if failed:
                    failures.append({"system": system.name, "policy": system.policy, "workload": spec.kind,
                                     "repeat": repeat, "error": f"{failed} of {result['requests']} requests failed"})
                rows.append(result)
    for spec, requests in workloads:
        rows.append({"system": "oracle", "policy": "offline-best", "workload": spec.kind, "requests": len(requests),
                     "throughput_rps": None, "output_tps": None, "ttft_p50_ms": None, "ttft_p90_ms": None,
                     "ttft_p99_ms": None, "e2e_p50_ms": None, "e2e_p99_ms": None,
                     "engine_prefix_hit_rate": oracle_hit_rate(requests, tokenizer, scenario.block_size),
                     "router_cpu_ms_per_req": None})
    document = {
        "name": scenario.name, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "make bench" if scenario.name == "full" else "make bench-quick",
        "duration_s": round(time.time() - began, 1), "machine": machine(), "versions": versions(),
        "scenario": json.loads(scenario.model_dump_json()), "skipped": skipped, "failures": failures, "rows": rows,
    }
    return write_report(document, args.out)


if __name__ == "__main__":
    print(main())
