"""Writes a run's ``<date>-<name>.json`` (rows as measured, plus machine and versions), a markdown table of the
median over repeats with the spread (min-max), and the plot."""

from __future__ import annotations

import json
import math
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.harness.plot import plot

SHOWN = (("throughput_rps", "req/s", "{:.2f}"), ("output_tps", "out tok/s", "{:.0f}"),
         ("ttft_p50_ms", "TTFT p50 ms", "{:.0f}"), ("ttft_p90_ms", "TTFT p90 ms", "{:.0f}"),
         ("ttft_p99_ms", "TTFT p99 ms", "{:.0f}"), ("e2e_p50_ms", "E2E p50 ms", "{:.0f}"),
         ("e2e_p99_ms", "E2E p99 ms", "{:.0f}"), ("engine_prefix_hit_rate", "engine hit rate", "{:.3f}"),
         ("router_cpu_ms_per_req", "router CPU ms/req", "{:.2f}"))


def grouped(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for entry in rows:
        groups[(entry["workload"], entry["system"], entry["policy"])].append(entry)
    return groups


def cell(values: list[float], form: str) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "-"
    middle = form.format(statistics.median(values))
    if len(values) == 1:
        return middle
    return f"{middle} ({form.format(min(values))}-{form.format(max(values))})"


def markdown(document: dict[str, Any]) -> str:
    lines = [f"# Routing benchmark: `{document['command']}` ({document['date']})", "",
             f"Machine: {document['machine']['cpus']} CPUs ({document['machine']['cpu_model']}), "
             f"{document['machine']['memory_gib']} GiB. Versions: "
             + ", ".join(f"{k} {v}" for k, v in document["versions"].items()) + ".", "",
             f"Median of {document['scenario']['repeats']} repeat(s), (min-max) when more than one. Simulated engines: "
             f"{document['scenario']['prefills']} prefill + {document['scenario']['decodes']} decode, "
             f"{document['scenario']['capacity_blocks']} KV blocks of {document['scenario']['block_size']} tokens each,"
             f" time_scale {document['scenario']['timing']['time_scale']}. Compare within this run only.", ""]
    header = "| workload | system | policy | requests | " + " | ".join(title for _, title, _ in SHOWN) + " |"
    lines += [header, "|" + "---|" * (4 + len(SHOWN))]
    for (workload, system, policy), entries in sorted(grouped(document["rows"]).items(),
                                                      key=lambda item: (item[0][0], item[0][1] == "oracle")):
        cells = [cell([e[key] for e in entries], form) for key, _, form in SHOWN]
        lines.append(f"| {workload} | {system} | {policy} | {entries[0]['requests']} | " + " | ".join(cells) + " |")
    if document["skipped"]:
        lines += ["", "Skipped:"] + [f"- {s['system']} ({s['policy']}): {s['reason']}" for s in document["skipped"]]
    if document["failures"]:
        lines += ["", "Failures:"] + [f"- {f['system']} ({f['policy']}) on {f['workload']}, repeat {f['repeat']}: "
                                      f"{f['error'].splitlines()[0][:200]}" for f in document["failures"]]
    return "\n".join(lines) + "\n"


def write_report(document: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{time.strftime('%Y-%m-%d')}-{document['name']}"
    stem.with_suffix(".json").write_text(json.dumps(document, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(document))
    plot(document, stem.with_suffix(".png"))
    return stem.with_suffix(".json")
