"""Writes a run's ``<date>-<name>.json`` (rows as measured, the sweeps' points, the scale runs, machine and versions),
its markdown (goodput per workload and system with pdstack's ratio to the best peer; the columns at each workload's
start rate; the scale runs; every sweep point) and the plots."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from bench.harness.plot import plot, plot_goodput, plot_scale

SHOWN = (
    ("goodput_rps", "goodput req/s", "{:.2f}"),
    ("slo_attainment", "SLO met", "{:.2f}"),
    ("throughput_rps", "req/s", "{:.2f}"),
    ("output_tps", "out tok/s", "{:.0f}"),
    ("ttft_p50_ms", "TTFT p50 ms", "{:.0f}"),
    ("ttft_p90_ms", "TTFT p90 ms", "{:.0f}"),
    ("ttft_p99_ms", "TTFT p99 ms", "{:.0f}"),
    ("tpot_p50_ms", "TPOT p50 ms", "{:.1f}"),
    ("tpot_p99_ms", "TPOT p99 ms", "{:.1f}"),
    ("e2e_p50_ms", "E2E p50 ms", "{:.0f}"),
    ("e2e_p99_ms", "E2E p99 ms", "{:.0f}"),
    ("engine_prefix_hit_rate", "engine hit rate", "{:.3f}"),
    ("router_cpu_ms_per_req", "router CPU ms/req", "{:.2f}"),
)
SCALE_SHOWN = (
    ("throughput_rps", "req/s", "{:.2f}"),
    ("slo_attainment", "SLO met", "{:.2f}"),
    ("ttft_p50_ms", "TTFT p50 ms", "{:.0f}"),
    ("ttft_p99_ms", "TTFT p99 ms", "{:.0f}"),
    ("engine_prefix_hit_rate", "engine hit rate", "{:.3f}"),
    ("oracle_hit_rate", "oracle", "{:.3f}"),
    ("router_cpu_ms_per_req", "router CPU ms/req", "{:.2f}"),
)
BOUND = {"at_least": ">=", "below": "<", "": ""}
PDSTACK = "pdstack"


def cell(value: Any, form: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return form.format(value)


def goodput_text(entry: dict[str, Any]) -> str:
    if entry["bound"] == "below":
        return f"< {min(p['rate_rps'] for p in entry['points']):.2f}"
    return f"{BOUND[entry['bound']]}{entry['goodput_rps']:.2f}"


def goodput_table(document: dict[str, Any]) -> list[str]:
    """One row per workload: each system's goodput, then pdstack's best over the best peer's."""
    sweeps = document["sweeps"]
    systems = list(dict.fromkeys(f"{s['system']} {s['policy']}" for s in sweeps))
    workloads = list(dict.fromkeys(s["workload"] for s in sweeps))
    found = {(s["workload"], f"{s['system']} {s['policy']}"): s for s in sweeps}
    lines = ["| workload | " + " | ".join(systems) + " | pdstack / best peer |", "|---|" + "---|" * (len(systems) + 1)]
    for workload in workloads:
        cells = [goodput_text(found[(workload, s)]) if (workload, s) in found else "-" for s in systems]
        ours = [e["goodput_rps"] for (w, _), e in found.items() if w == workload and e["system"] == PDSTACK]
        peers = [e["goodput_rps"] for (w, _), e in found.items() if w == workload and e["system"] != PDSTACK]
        ratio = f"{max(ours) / max(peers):.2f}x" if ours and peers and max(peers) > 0 else "-"
        lines.append(f"| {workload} | " + " | ".join(cells) + f" | {ratio} |")
    return lines


def markdown(document: dict[str, Any]) -> str:
    scenario = document["scenario"]
    lines = [
        f"# Routing benchmark: `{document['command']}` ({document['date']})",
        "",
        f"Machine: {document['machine']['cpus']} CPUs ({document['machine']['cpu_model']}), "
        f"{document['machine']['memory_gib']} GiB. Versions: "
        + ", ".join(f"{k} {v}" for k, v in document["versions"].items())
        + f". Took {document['duration_s']:.0f} s.",
        "",
        (
            f"Simulated engines: {scenario['prefills']} prefill + {scenario['decodes']} decode, "
            f"{scenario['capacity_blocks']} KV blocks of {scenario['block_size']} tokens each, time_scale "
            f"{scenario['timing']['time_scale']} (wall ms = modelled ms x time_scale). One run per point, fresh "
            "engines and router each. Compare within this run only."
        ),
        "",
        "## Goodput (requests/s at which >= 90% of requests meet both SLOs)",
        "",
        "SLOs in modelled ms (bench/harness/slo.py): "
        + "; ".join(
            f"{kind} TTFT {slo['ttft_ms']:g} / TPOT {slo['tpot_ms']:g}" for kind, slo in document["slos"].items()
        )
        + f". Sweep: {json.dumps(scenario['sweep'])} "
        "(geometric ramp from the workload's start rate"
        + (f", scaled by {json.dumps(scenario['start_scale'])}" if scenario.get("start_scale") else "")
        + ", then bisection). `>=`: the ramp's top rate still met "
        "the SLOs; `<`: the lowest rate tried did not.",
        "",
    ]
    lines += goodput_table(document)
    lines += [
        "",
        "## At each workload's start rate",
        "",
        "Latencies in wall ms.",
        "",
        "| workload | system | policy | requests | rate req/s | " + " | ".join(t for _, t, _ in SHOWN) + " |",
        "|" + "---|" * (5 + len(SHOWN)),
    ]
    for entry in sorted(document["rows"], key=lambda e: (e["workload"], e["system"] == "oracle")):
        lines.append(
            f"| {entry['workload']} | {entry['system']} | {entry['policy']} | {entry['requests']} | "
            f"{cell(entry['rate_rps'], '{:.2f}')} | "
            + " | ".join(cell(entry[key], form) for key, _, form in SHOWN)
            + " |"
        )
    if document.get("scale"):
        lines += [
            "",
            "## Scale (shared_prefix, prefix groups and modelled rate growing with the cluster)",
            "",
            "| engines | time_scale | system | policy | requests | " + " | ".join(t for _, t, _ in SCALE_SHOWN) + " |",
            "|" + "---|" * (5 + len(SCALE_SHOWN)),
        ]
        for entry in document["scale"]:
            lines.append(
                f"| {entry['engines_per_role']}P+{entry['engines_per_role']}D | {entry['time_scale']:g} | "
                f"{entry['system']} | {entry['policy']} | {entry['requests']} | "
                + " | ".join(cell(entry[key], form) for key, _, form in SCALE_SHOWN)
                + " |"
            )
    lines += ["", "## Sweep points (rate req/s: SLO attainment)", ""]
    for entry in document["sweeps"]:
        points = ", ".join(f"{p['rate_rps']:.2f}: {p['slo_attainment']:.2f}" for p in entry["points"])
        lines.append(f"- {entry['workload']}, {entry['system']} ({entry['policy']}): {points}")
    if document["skipped"]:
        lines += ["", "Skipped:"] + [f"- {s['system']} ({s['policy']}): {s['reason']}" for s in document["skipped"]]
    if document["failures"]:
        lines += ["", "Failures:"] + [
            f"- {f['system']} ({f['policy']}) on {f['workload']}"
            f"{' at ' + format(f['rate_rps'], '.2f') + ' rps' if 'rate_rps' in f else ''}: "
            f"{f['error'].splitlines()[0][:200]}"
            for f in document["failures"]
        ]
    return "\n".join(lines) + "\n"


def write_report(document: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{time.strftime('%Y-%m-%d')}-{document['name']}"
    stem.with_suffix(".json").write_text(json.dumps(document, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(document))
    plot(document, stem.with_suffix(".png"))
    plot_goodput(document, stem.with_name(stem.name + "-goodput.png"))
    plot_scale(document, stem.with_name(stem.name + "-scale.png"))
    return stem.with_suffix(".json")
