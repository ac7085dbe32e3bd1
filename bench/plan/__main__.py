"""``python -m bench.plan``: the cheapest prefill/decode layout that meets your SLOs for your traffic, on a
SIMULATION of the instance types you may buy (bench/fake_engine/hardware.py sizes the engines; bench/plan/simulate.py
replays the traffic through them in virtual time; its routing model is pdstack's, simplified).

Traffic: a Mooncake-format trace (``--trace FILE``, the options of ``python -m bench.replay``), or a rate and one of
the bench's completion workloads (``--rate 8 --workload shared_prefix``). For every candidate instance type (and TP:
the two smallest degrees that fit the model, prefill TP never above decode TP) it searches the prefill and decode
engine counts, then prints the cheapest layout that meets the SLOs at the traffic's rate and in its busiest
10 seconds, with its margin, P:D ratio, nodes, hourly cost and cost per million output tokens at On-Demand and
Capacity Block prices (bench/plan/prices.py, ``--prices FILE`` to override), and the deployment YAML for it; with
``--out`` it also writes ``<date>-<name>.{json,md,png}`` (the png: cost against goodput for every layout tried).
Verify the plan on the deployed endpoint with guidellm (bench/README.md: "Bring your own trace").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.fake_engine.hardware import model_spec
from bench.fake_engine.timing import EngineTiming
from bench.plan.prices import PRICES_DATE, InstancePrice, load_prices
from bench.plan.report import layout_row, markdown, plot, yaml_snippet
from bench.plan.search import BASES, Layout, Objectives, Search, candidates, cheapest
from bench.plan.traffic import WORKLOADS, trace_requests, workload_requests
from bench.replay.options import load, trace_arguments
from bench.replay.trace import TraceFormatError
from bench.replay.workload import build
from runtime.catalog import instance_spec


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_argument_group("traffic (a trace, or --rate with --workload)")
    trace_arguments(source, required=False)
    source.add_argument("--rate", type=float, default=None, help="requests/s of --workload")
    source.add_argument("--workload", choices=sorted(WORKLOADS), default=None)
    parser.add_argument(
        "--instances",
        default="p5.48xlarge,p5en.48xlarge",
        help="candidate instance types, comma-separated (runtime/catalog.py)",
    )
    parser.add_argument(
        "--tp", default="", help="TP degrees to try, comma-separated (default: the two smallest that fit the model)"
    )
    parser.add_argument("--max-engines", type=int, default=16, help="most engines per role")
    parser.add_argument(
        "--engine-block-size", type=int, default=128, help="the engines' KV block size (llm-d's AWS P/D guide runs 128)"
    )
    parser.add_argument("--prices", type=Path, default=None, help="JSON overriding the pinned price table")
    parser.add_argument(
        "--basis",
        choices=BASES,
        default="capacity_block",
        help="the price the cheapest layout is chosen by (falls back to the other, then to GPUs)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write <date>-<name>.{json,md,png} there")
    parser.add_argument("--name", default="plan")
    args = parser.parse_args(argv)
    try:
        model = model_spec(args.model)
        if args.trace is not None:
            index = load(args)
            # Modelled time (no time_scale); the idle-engine floor build() computes is not used here.
            workload = build(index, EngineTiming(), args.engine_block_size, model.max_context, args.speedup)
            requests, skipped = trace_requests(workload), workload.skipped
            traffic = (
                f"trace {args.trace} window {args.window or 'all'}"
                + (f" limit {args.limit}" if args.limit else "")
                + (f" x{args.speedup:g}" if args.speedup != 1 else "")
            )
        elif args.rate and args.workload:
            requests, skipped = workload_requests(args.workload, args.rate), {}
            traffic = f"workload {args.workload} at {args.rate:g} req/s"
        else:
            raise ValueError("give --trace FILE, or --rate and --workload")
        prices = load_prices(args.prices)
        found, notes = candidates(
            args.instances.split(","), args.model, [int(t) for t in args.tp.split(",")] if args.tp else None
        )
        for name in args.instances.split(","):
            instance_spec(name)
    except (TraceFormatError, ValueError, KeyError, OSError) as error:
        # A KeyError's str() is its repr, quotes and all: print the message itself.
        print(f"bench.plan: {error.args[0] if isinstance(error, KeyError) else error}", file=sys.stderr)
        raise SystemExit(2) from None
    if not requests:
        print("bench.plan: no request to plan for", file=sys.stderr)
        raise SystemExit(2)
    span = max(r.at_s for r in requests) or 1.0
    output_tps = sum(r.output_tokens for r in requests) / span
    print(
        f"SIMULATION (not a measurement): {traffic}: {len(requests)} requests, {len(requests) / span:.2f} req/s, "
        f"{output_tps:.0f} output tok/s; SLOs TTFT {args.ttft_ms:g} ms, TPOT {args.tpot_ms:g} ms; {args.model}",
        flush=True,
    )
    began = time.time()

    def progress(layout: Layout) -> None:
        print(
            f"  {layout.candidate.label:28s} {layout.prefills:2d}P {layout.decodes:2d}D: SLO {layout.attainment:.2f}"
            f" (burst {layout.burst_attainment:.2f}) TTFT p90 {layout.ttft_p90_ms:7.0f} ms, TPOT p90 "
            f"{layout.tpot_p90_ms:5.1f} ms, hit {layout.hit_rate:.2f}{'  meets' if layout.meets else ''}"
            f"  ({time.time() - began:.0f} s)",
            flush=True,
        )

    search = Search(
        requests,
        Objectives(args.ttft_ms, args.tpot_ms),
        span,
        args.engine_block_size,
        lambda name: instance_spec(name).gpus,
        args.max_engines,
        args.max_engines,
        progress=progress,
    )
    for candidate in found:
        search.frontier(candidate)
    best_per_instance = cheapest(search.tried, prices, args.basis)
    for layout in best_per_instance.values():
        search.headroom(layout)

    def price_of(layout: Layout) -> InstancePrice:
        return prices.get(layout.candidate.prefill.instance, InstancePrice())

    rows = [layout_row(layout, price_of(layout), output_tps) for layout in search.tried]
    chosen = [layout_row(layout, price_of(layout), output_tps) for layout in best_per_instance.values()]
    document: dict[str, Any] = {
        "name": args.name,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "simulation": True,
        "command": "python -m bench.plan " + " ".join(sys.argv[1:] if argv is None else argv),
        "traffic": traffic,
        "requests": len(requests),
        "skipped": skipped,
        "rate_rps": len(requests) / span,
        "output_tps": output_tps,
        "model": args.model,
        "slo": {"ttft_ms": args.ttft_ms, "tpot_ms": args.tpot_ms},
        "engine_block_size": args.engine_block_size,
        "prices_date": PRICES_DATE,
        "prices": {name: price.model_dump() for name, price in prices.items()},
        "basis": args.basis,
        "notes": notes,
        "best": chosen,
        "tried": rows,
        "duration_s": round(time.time() - began, 1),
        "yaml": {
            row["instance"]: yaml_snippet(layout, args.model)
            for row, layout in zip(chosen, best_per_instance.values(), strict=True)
        },
    }
    print()
    print(markdown(document))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.out / f"{time.strftime('%Y-%m-%d')}-{args.name}"
        stem.with_suffix(".json").write_text(json.dumps(document, indent=1) + "\n")
        stem.with_suffix(".md").write_text(markdown(document))
        plot(document, stem.with_suffix(".png"))
        print(stem.with_suffix(".md"))
    return document


if __name__ == "__main__":
    main()
