"""Writes a replay's ``<date>-<name>.{json,md,png}``: one row per system, the trace window's own numbers (rate,
bursts, the prefix bound), the engines, the SLOs, and a plot (TTFT and TPOT percentiles, SLO attainment, the
engines' hit rate against the bound, where the time went)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench.harness.report import cell

SHOWN = (
    ("slo_attainment", "SLO met", "{:.2f}"),
    ("goodput_rps", "goodput req/s", "{:.2f}"),
    ("throughput_rps", "req/s", "{:.2f}"),
    ("output_tps", "out tok/s", "{:.0f}"),
    ("ttft_p50_ms", "TTFT p50", "{:.0f}"),
    ("ttft_p90_ms", "TTFT p90", "{:.0f}"),
    ("ttft_p99_ms", "TTFT p99", "{:.0f}"),
    ("tpot_p50_ms", "TPOT p50", "{:.1f}"),
    ("tpot_p99_ms", "TPOT p99", "{:.1f}"),
    ("e2e_p50_ms", "E2E p50", "{:.0f}"),
    ("engine_prefix_hit_rate", "engine hit rate", "{:.3f}"),
    ("bound_hit_rate", "trace bound", "{:.3f}"),
    ("idle_prefill_share", "time: idle prefill", "{:.0%}"),
    ("waiting_share", "time: waiting", "{:.0%}"),
    ("decode_share", "time: decode", "{:.0%}"),
    ("router_cpu_ms_per_req", "router CPU ms/req", "{:.2f}"),
    ("failed", "failed", "{}"),
)


def markdown(document: dict[str, Any]) -> str:
    trace = document["trace"]
    engines = document["engines"]
    slo = document["slo"]
    lines = [
        f"# Trace replay: `{document['command']}` ({document['date']})",
        "",
        (
            "A SIMULATION: simulated vLLM engines sized from the model and the instance type "
            "(bench/fake_engine/hardware.py, its limits stated there), real routers. Compare systems within this "
            "run only."
        ),
        "",
        (
            f"Trace: `{trace['path']}`, window {trace['window']}, {trace['requests']} requests sent "
            f"(skipped: {json.dumps(trace['skipped']) if trace['skipped'] else 'none'}) over {trace['span_s']:.0f} "
            f"trace s: {trace['rate_rps']:.2f} req/s, busiest {trace['burst_window_s']:g} s "
            f"{trace['peak_rate_rps']:.2f} req/s; speedup {trace['speedup']:g}; "
            f"prompt tokens {trace['prompt_tokens']:,}, "
            f"trace bound on the prefix hit rate {trace['bound_hit_rate']:.3f} (every distinct block computed once, "
            f"unlimited KV)."
        ),
        "",
        (
            f"Engines: {engines['prefills']} prefill + {engines['decodes']} decode, {engines['model']} on "
            f"{engines['instance']} (TP {engines['tp']}), {engines['capacity_blocks']:,} KV blocks of "
            f"{engines['block_size']} tokens each; time_scale {engines['timing']['time_scale']:g}. "
            f"SLOs (modelled ms): TTFT {slo['ttft_ms']:g}, TPOT {slo['tpot_ms']:g}."
        ),
        "",
        (
            "Latencies in modelled ms (wall / time_scale). Goodput: requests that met both SLOs per modelled "
            "second at the replayed rate. Time shares: of the served requests' end-to-end time, what idle engines "
            "with the bound's hits would spend before the first token, the rest of the time to first token "
            "(queueing, misses beyond the bound, the router), and decoding."
        ),
        "",
        "| system | policy | requests | " + " | ".join(t for _, t, _ in SHOWN) + " |",
        "|" + "---|" * (3 + len(SHOWN)),
    ]
    for row in document["rows"]:
        lines.append(
            f"| {row['system']} | {row['policy']} | {row['requests']} | "
            + " | ".join(cell(row.get(key), form) for key, _, form in SHOWN)
            + " |"
        )
    if document["failures"]:
        lines += ["", "Failures:"] + [
            f"- {f['system']} ({f['policy']}): {f['error'].splitlines()[0][:200]}" for f in document["failures"]
        ]
    if document["skipped_systems"]:
        lines += ["", "Skipped:"] + [
            f"- {s['system']} ({s['policy']}): {s['reason']}" for s in document["skipped_systems"]
        ]
    return "\n".join(lines) + "\n"


def plot(document: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = document["rows"]
    if not rows:
        return False
    labels = [f"{r['system']}\n{r['policy']}" for r in rows]
    xs = range(len(rows))
    figure, axes = plt.subplots(1, 4, figsize=(20, 5))
    for offset, (key, name) in enumerate((("ttft_p50_ms", "p50"), ("ttft_p90_ms", "p90"), ("ttft_p99_ms", "p99"))):
        axes[0].bar([x + (offset - 1) * 0.27 for x in xs], [r[key] or 0 for r in rows], 0.27, label=f"TTFT {name}")
    axes[0].axhline(document["slo"]["ttft_ms"], color="k", linestyle="--", label="TTFT SLO")
    axes[0].set_title("TTFT, modelled ms")
    for offset, (key, name) in enumerate((("tpot_p50_ms", "p50"), ("tpot_p99_ms", "p99"))):
        axes[1].bar([x + (offset - 0.5) * 0.4 for x in xs], [r[key] or 0 for r in rows], 0.4, label=f"TPOT {name}")
    axes[1].axhline(document["slo"]["tpot_ms"], color="k", linestyle="--", label="TPOT SLO")
    axes[1].set_title("TPOT, modelled ms")
    axes[2].bar([x - 0.2 for x in xs], [r["engine_prefix_hit_rate"] for r in rows], 0.4, label="engine hit rate")
    axes[2].bar([x + 0.2 for x in xs], [r["slo_attainment"] for r in rows], 0.4, label="SLO attainment")
    axes[2].axhline(document["trace"]["bound_hit_rate"], color="k", linestyle="--", label="trace bound (hit rate)")
    axes[2].set_ylim(0, 1.05)
    axes[2].set_title("hit rate and SLO attainment")
    bottom = [0.0] * len(rows)
    for key, name in (("idle_prefill_share", "idle prefill"), ("waiting_share", "waiting"), ("decode_share", "decode")):
        values = [max(0.0, r[key] or 0.0) for r in rows]
        axes[3].bar(list(xs), values, 0.6, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes[3].set_title("where the time went (share of E2E)")
    for axis in axes:
        axis.set_xticks(list(xs))
        axis.set_xticklabels(labels, fontsize=7)
        axis.legend(fontsize=7)
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle(
        f"Trace replay (SIMULATED engines: {document['engines']['model']} on "
        f"{document['engines']['instance']}), {document['trace']['window']}, {document['date']}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


def write_report(document: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{time.strftime('%Y-%m-%d')}-{document['name']}"
    stem.with_suffix(".json").write_text(json.dumps(document, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(document))
    plot(document, stem.with_suffix(".png"))
    return stem.with_suffix(".json")
