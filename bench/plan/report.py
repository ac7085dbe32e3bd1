"""The planner's output: a row per layout (its SLO attainment, nodes, hourly cost and cost per million output
tokens on both price bases), the markdown (labelled a simulation), the deployment YAML of a layout, and the plot of
hourly cost against goodput for every layout tried."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from bench.plan.prices import InstancePrice
from bench.plan.search import Layout


def layout_row(layout: Layout, price: InstancePrice, output_tps: float) -> dict[str, Any]:
    row: dict[str, Any] = {
        "instance": layout.candidate.prefill.instance,
        "prefill_tp": layout.candidate.prefill.tp,
        "decode_tp": layout.candidate.decode.tp,
        "prefills": layout.prefills,
        "decodes": layout.decodes,
        "pd_ratio": f"{layout.prefills}:{layout.decodes}",
        "gpus": layout.gpus,
        "nodes": layout.nodes,
        "slo_attainment": layout.attainment,
        "burst_attainment": layout.burst_attainment,
        "margin": min(layout.attainment, layout.burst_attainment) - 0.9,
        "headroom": layout.headroom,
        "ttft_p50_ms": layout.ttft_p50_ms,
        "ttft_p90_ms": layout.ttft_p90_ms,
        "tpot_p90_ms": layout.tpot_p90_ms,
        "hit_rate": layout.hit_rate,
        "goodput_rps": layout.goodput_rps,
        "meets": layout.meets,
    }
    for basis in ("on_demand", "capacity_block"):
        hourly = layout.hourly(price, basis)
        row[f"{basis}_per_hour"] = hourly
        row[f"{basis}_per_million_output"] = (
            None if hourly is None or output_tps <= 0 else hourly / (output_tps * 3600.0) * 1e6
        )
    return row


def yaml_snippet(layout: Layout, model: str) -> str:
    """The deployment file's parts this layout sets (deployments/*.yaml; the model source is yours)."""
    instance = layout.candidate.prefill.instance
    document = {
        "gpu_node_groups": [
            {
                "name": instance.split(".")[0],
                "instance_type": instance,
                "min_size": 0,
                "desired_size": layout.nodes,
                "max_size": layout.nodes,
            }
        ],
        "serving": {
            "model": {"source": f"s3://<your-bucket>/{model}", "served_name": model},
            "prefill": {
                "instance_type": instance,
                "tensor_parallel": layout.candidate.prefill.tp,
                "replicas": layout.prefills,
            },
            "decode": {
                "instance_type": instance,
                "tensor_parallel": layout.candidate.decode.tp,
                "replicas": layout.decodes,
            },
        },
    }
    return yaml.safe_dump(document, sort_keys=False)


def _money(value: float | None, form: str = "${:,.2f}") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else form.format(value)


def markdown(document: dict[str, Any]) -> str:
    slo = document["slo"]
    lines = [
        f"# Plan: `{document['command']}` ({document['date']})",
        "",
        (
            "**A SIMULATION, not a measurement**: simulated vLLM engines sized from the model and the instance "
            "(bench/fake_engine/hardware.py states what it leaves out) behind a model of pdstack's routing "
            "(bench/plan/simulate.py). Verify on the deployed endpoint with guidellm before buying."
        ),
        "",
        f"Traffic: {document['traffic']}: {document['requests']} requests, {document['rate_rps']:.2f} req/s, "
        f"{document['output_tps']:.0f} output tok/s (skipped: {document['skipped'] or 'none'}). Model "
        f"{document['model']}. SLOs: TTFT <= {slo['ttft_ms']:g} ms and TPOT <= {slo['tpot_ms']:g} ms for >= 90% "
        f"of all requests and of the busiest 10 s's. Prices: pinned {document['prices_date']} "
        "(bench/plan/prices.py), chosen by " + document["basis"].replace("_", " ") + ".",
        "",
    ]
    if document["best"]:
        lines += [
            "## Cheapest layout per instance type",
            "",
            (
                "| instance | TP P/D | P:D | GPUs | nodes | SLO met (burst) | margin | meets up to | TTFT p90 ms | "
                "TPOT p90 ms | hit rate | On-Demand $/h | $/M out tok | Capacity Block $/h | $/M out tok |"
            ),
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in document["best"]:
            lines.append(
                f"| {row['instance']} | {row['prefill_tp']}/{row['decode_tp']} | {row['pd_ratio']} | {row['gpus']} | "
                f"{row['nodes']} | {row['slo_attainment']:.2f} ({row['burst_attainment']:.2f}) | "
                f"{row['margin']:+.2f} | x{row['headroom'] or 1:g} the rate | {row['ttft_p90_ms']:.0f} | "
                f"{row['tpot_p90_ms']:.1f} | {row['hit_rate']:.2f} | {_money(row['on_demand_per_hour'])} | "
                f"{_money(row['on_demand_per_million_output'])} | {_money(row['capacity_block_per_hour'])} | "
                f"{_money(row['capacity_block_per_million_output'])} |"
            )
        for instance, snippet in document["yaml"].items():
            lines += ["", f"Deployment (deployments/*.yaml) for {instance}:", "", "```yaml", snippet.rstrip(), "```"]
    else:
        lines += ["No layout tried met the SLOs (raise --max-engines, relax the SLOs, or try other instances)."]
    lines += [
        "",
        "## Every layout simulated",
        "",
        (
            "| instance | TP P/D | P:D | GPUs | SLO met | burst | TTFT p50 / p90 ms | TPOT p90 ms | hit rate | "
            "goodput req/s | meets |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in document["tried"]:
        lines.append(
            f"| {row['instance']} | {row['prefill_tp']}/{row['decode_tp']} | {row['pd_ratio']} | "
            f"{row['gpus']} | {row['slo_attainment']:.2f} | {row['burst_attainment']:.2f} | "
            f"{row['ttft_p50_ms']:.0f} / {row['ttft_p90_ms']:.0f} | {row['tpot_p90_ms']:.1f} | "
            f"{row['hit_rate']:.2f} | {row['goodput_rps']:.2f} | {'yes' if row['meets'] else 'no'} |"
        )
    if document["notes"]:
        lines += ["", "Not tried: " + "; ".join(document["notes"])]
    return "\n".join(lines) + "\n"


def plot(document: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 6))
    colors = plt.get_cmap("tab10")
    groups = list(dict.fromkeys(f"{r['instance']} TP{r['prefill_tp']}/{r['decode_tp']}" for r in document["tried"]))
    for i, group in enumerate(groups):
        rows = [r for r in document["tried"] if f"{r['instance']} TP{r['prefill_tp']}/{r['decode_tp']}" == group]
        cost = [r["capacity_block_per_hour"] or r["on_demand_per_hour"] or r["gpus"] for r in rows]
        axis.scatter(
            cost,
            [r["goodput_rps"] for r in rows],
            color=colors(i % 10),
            label=group,
            marker="o",
            s=[60 if r["meets"] else 20 for r in rows],
        )
        for r, c in zip(rows, cost, strict=True):
            axis.annotate(r["pd_ratio"], (c, r["goodput_rps"]), fontsize=6, xytext=(2, 2), textcoords="offset points")
    for row in document["best"]:
        cost = row["capacity_block_per_hour"] or row["on_demand_per_hour"] or row["gpus"]
        axis.scatter([cost], [row["goodput_rps"]], facecolors="none", edgecolors="k", s=200)
    axis.axhline(
        0.9 * document["rate_rps"], color="k", linestyle="--", linewidth=0.8, label="90% of the traffic's rate"
    )
    axis.set_xlabel("hourly cost, USD (Capacity Block price; On-Demand, then GPUs, where none is known)")
    axis.set_ylabel("goodput: requests/s meeting both SLOs")
    axis.set_title(
        f"SIMULATED layouts for {document['traffic']} ({document['model']}); large dots meet the SLOs, "
        "circled: cheapest per instance",
        fontsize=8,
    )
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True
