"""``python -m bench.replay --trace FILE``: replay a Mooncake-format trace (bench/replay/trace.py) through pdstack and
the peers the routing benchmark runs, on simulated engines sized like the hardware (bench/fake_engine/hardware.py),
arrival times, shared prefixes and output lengths kept. Writes ``bench/results/<date>-<name>.{json,md,png}``.
Uses both cores (the router on CPU 0, the engines and the client on CPU 1): run it under /tmp/pdstack-vllm.lock
(``make bench-replay`` does). A format error in the trace exits 2 before anything starts, naming the line and field.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.fake_engine.hardware import model_spec, size_engine
from bench.harness.run import REPO, RESULTS, SYSTEMS, machine, versions
from bench.harness.scenario import Scenario
from bench.replay.options import load, trace_arguments
from bench.replay.report import write_report
from bench.replay.run import TraceSlo, replay_one
from bench.replay.trace import TraceFormatError
from bench.replay.workload import BURST_WINDOW_S, build
from bench.workloads.vocabulary import write_tokenizer

ENGINE_BLOCK_SIZE = 16
DEFAULT_SYSTEMS = "pdstack:precise,baseline:round_robin,vllm-router:cache_aware,smg:cache_aware"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    trace_arguments(parser)
    parser.add_argument("--instance", default="p5.48xlarge", help="the engines' instance type (runtime/catalog.py)")
    parser.add_argument("--tp", type=int, default=1, help="GPUs per engine")
    parser.add_argument("--prefills", type=int, default=2)
    parser.add_argument("--decodes", type=int, default=2)
    parser.add_argument(
        "--time-scale",
        type=float,
        default=4.0,
        help="wall ms per modelled ms, for the engines and the arrival gaps alike (the trace's "
        "load on the modelled hardware is kept; higher is gentler on this machine's CPU)",
    )
    parser.add_argument("--systems", default=DEFAULT_SYSTEMS, help="name or name:policy, comma-separated")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="replay")
    parser.add_argument(
        "--export",
        type=Path,
        default=None,
        help="write the window's lines (time order, unchanged) to this file and stop: the trace to "
        "verify with guidellm on the deployed endpoint",
    )
    args = parser.parse_args(argv)
    try:
        index = load(args)
        if args.export is not None:
            print(f"{index.export(args.export)} requests written to {args.export}")
            return args.export
        size = size_engine(args.model, args.instance, args.tp, args.time_scale)
        workload = build(index, size.timing, ENGINE_BLOCK_SIZE, model_spec(args.model).max_context, args.speedup)
    except (TraceFormatError, ValueError, KeyError, OSError) as error:
        print(f"bench.replay: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    scenario = Scenario(
        name=args.name,
        prefills=args.prefills,
        decodes=args.decodes,
        block_size=ENGINE_BLOCK_SIZE,
        capacity_blocks=size.capacity_blocks(ENGINE_BLOCK_SIZE),
        timing=size.timing,
        workloads=[],
    )
    slo = TraceSlo(args.ttft_ms, args.tpot_ms)
    keep = set(args.systems.split(","))
    chosen = [s for s in SYSTEMS if s.name in keep or f"{s.name}:{s.policy}" in keep]
    skipped = [{"system": s.name, "policy": s.policy, "reason": r} for s in chosen if (r := s.unavailable())]
    work = REPO / "bench" / ".work" / args.name
    work.mkdir(parents=True, exist_ok=True)
    tokenizer = write_tokenizer(work / "tokenizer")
    print(
        f"{len(workload)} requests, {workload.rate_rps:.2f} req/s over {workload.span_s:.0f} trace s, "
        f"bound {workload.bound_hit_rate:.3f}; {args.prefills}P+{args.decodes}D {args.model} on {args.instance}",
        flush=True,
    )
    began = time.time()
    rows, failures = [], []
    for system in [s for s in chosen if s.unavailable() is None]:
        try:
            row = replay_one(system, scenario, workload, slo, tokenizer, work)
        except RuntimeError as error:
            failures.append({"system": system.name, "policy": system.policy, "error": str(error)[-2000:]})
            print(f"  {system.label}: FAILED {str(error)[:300]}", flush=True)
            continue
        rows.append(row)
        print(
            f"  {system.label:32s} SLO {row['slo_attainment']:.2f}  TTFT p50/p99 {row['ttft_p50_ms']:.0f}/"
            f"{row['ttft_p99_ms']:.0f} ms  TPOT p50 {row['tpot_p50_ms']:.1f} ms  "
            f"hit {row['engine_prefix_hit_rate']:.3f}"
            f" (bound {row['bound_hit_rate']:.3f})  failed {row['failed']}  ({time.time() - began:.0f} s)",
            flush=True,
        )
    document = {
        "name": args.name,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python -m bench.replay " + " ".join(sys.argv[1:] if argv is None else argv),
        "duration_s": round(time.time() - began, 1),
        "machine": machine(),
        "versions": versions(),
        "trace": {
            "path": str(args.trace),
            "window": args.window or "all",
            "limit": args.limit,
            "block_size": args.block_size,
            "requests": len(workload),
            "read": index.read,
            "skipped": workload.skipped,
            "span_s": workload.span_s,
            "rate_rps": workload.rate_rps,
            "peak_rate_rps": workload.peak_rate_rps,
            "burst_window_s": BURST_WINDOW_S,
            "speedup": args.speedup,
            "prompt_tokens": workload.prompt_tokens,
            "bound_hit_rate": workload.bound_hit_rate,
        },
        "engines": {
            "prefills": args.prefills,
            "decodes": args.decodes,
            "model": args.model,
            "instance": args.instance,
            "tp": args.tp,
            "block_size": ENGINE_BLOCK_SIZE,
            "capacity_blocks": scenario.capacity_blocks,
            "kv_tokens": size.kv_tokens,
            "timing": size.timing.model_dump(),
        },
        "slo": {"ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms},
        "rows": rows,
        "failures": failures,
        "skipped_systems": skipped,
    }
    return write_report(document, args.out)


if __name__ == "__main__":
    print(main())
