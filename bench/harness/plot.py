"""The run's plots (matplotlib, Agg): per workload at its start rate, TTFT p90, output tokens/s and the engines'
prefix-cache hit rate (with the oracle bound), one bar per system; the goodput per workload and system with each
sweep's attainment curve; the scale runs' hit rate and router CPU against the cluster size. Without matplotlib
installed the plots are skipped."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

PANELS = (
    ("ttft_p90_ms", "TTFT p90 (ms, lower is better)"),
    ("output_tps", "output tokens/s (higher is better)"),
    ("engine_prefix_hit_rate", "engine prefix-cache hit rate"),
)


def plot(document: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = document["rows"]
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    systems = list(dict.fromkeys(f"{r['system']} {r['policy']}" for r in rows))
    values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in rows:
        for key, _ in PANELS:
            if r[key] is not None:
                values[(key, r["workload"], f"{r['system']} {r['policy']}")].append(r[key])
    figure, axes = plt.subplots(1, len(PANELS), figsize=(18, 5.5))
    width = 0.8 / max(1, len(systems))
    colors = plt.get_cmap("tab10")
    for axis, (key, title) in zip(axes, PANELS, strict=True):
        for s, system in enumerate(systems):
            xs, heights, low, high = [], [], [], []
            for w, workload in enumerate(workloads):
                found = values.get((key, workload, system))
                if not found:
                    continue
                middle = statistics.median(found)
                xs.append(w + (s - (len(systems) - 1) / 2) * width)
                heights.append(middle)
                low.append(middle - min(found))
                high.append(max(found) - middle)
            if xs:
                axis.bar(xs, heights, width, yerr=[low, high], capsize=2, label=system, color=colors(s % 10))
        axis.set_xticks(range(len(workloads)))
        axis.set_xticklabels(workloads, rotation=15)
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)
    handles, labels = axes[-1].get_legend_handles_labels()  # the hit-rate panel has every system and the oracle
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    figure.suptitle(
        f"pdstack routing benchmark ({document['command']}, {document['date']}): "
        f"simulated {document['scenario']['prefills']}P+{document['scenario']['decodes']}D engines"
    )
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_goodput(document: dict[str, Any], path: Path) -> bool:
    plt = _pyplot()
    if plt is None or not document.get("sweeps"):
        return False
    sweeps = document["sweeps"]
    workloads = list(dict.fromkeys(s["workload"] for s in sweeps))
    systems = list(dict.fromkeys(f"{s['system']} {s['policy']}" for s in sweeps))
    colors = plt.get_cmap("tab10")
    figure, axes = plt.subplots(2, 1, figsize=(16, 10))
    width = 0.8 / max(1, len(systems))
    for i, system in enumerate(systems):
        mine = {s["workload"]: s for s in sweeps if f"{s['system']} {s['policy']}" == system}
        xs = [w + (i - (len(systems) - 1) / 2) * width for w, workload in enumerate(workloads) if workload in mine]
        axes[0].bar(
            xs, [mine[w]["goodput_rps"] for w in workloads if w in mine], width, label=system, color=colors(i % 10)
        )
        for w, workload in enumerate(workloads):
            if workload in mine:
                points = sorted((p["rate_rps"], p["slo_attainment"]) for p in mine[workload]["points"])
                top = max(p["rate_rps"] for s in sweeps if s["workload"] == workload for p in s["points"])
                axes[1].plot(
                    [w + 0.9 * r / top - 0.45 for r, _ in points],
                    [a for _, a in points],
                    marker=".",
                    color=colors(i % 10),
                    label=system if w == 0 else None,
                )
    axes[0].set_xticks(range(len(workloads)))
    axes[0].set_xticklabels(workloads)
    axes[0].set_ylabel("goodput (req/s, higher is better)")
    axes[0].grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, ncol=4)
    axes[1].axhline(0.9, color="gray", linestyle="--", linewidth=1)
    axes[1].set_xticks(range(len(workloads)))
    axes[1].set_xticklabels(workloads)
    axes[1].set_ylabel("SLO attainment (x: rate, per workload scaled to its highest point)")
    axes[1].grid(alpha=0.3)
    figure.suptitle(
        f"Goodput ({document['command']}, {document['date']}): simulated "
        f"{document['scenario']['prefills']}P+{document['scenario']['decodes']}D engines"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


def plot_scale(document: dict[str, Any], path: Path) -> bool:
    plt = _pyplot()
    if plt is None or not document.get("scale"):
        return False
    rows = document["scale"]
    systems = list(dict.fromkeys(f"{r['system']} {r['policy']}" for r in rows))
    figure, axes = plt.subplots(1, 3, figsize=(16, 5))
    for key, axis, title in (
        ("engine_prefix_hit_rate", axes[0], "engine prefix-cache hit rate"),
        ("ttft_p50_ms", axes[1], "TTFT p50 (wall ms)"),
        ("router_cpu_ms_per_req", axes[2], "router CPU ms per request"),
    ):
        for system in systems:
            mine = [r for r in rows if f"{r['system']} {r['policy']}" == system]
            axis.plot([r["engines_per_role"] for r in mine], [r[key] for r in mine], marker="o", label=system)
        if key == "engine_prefix_hit_rate":
            sizes = sorted({r["engines_per_role"]: r["oracle_hit_rate"] for r in rows}.items())
            axis.plot([s for s, _ in sizes], [o for _, o in sizes], linestyle="--", color="gray", label="oracle")
        axis.set_xlabel("engines per role (prefill = decode)")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"Scale ({document['command']}, {document['date']}): shared_prefix, load growing with the cluster")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


if __name__ == "__main__":
    import json
    import sys

    source = Path(sys.argv[1])
    document = json.loads(source.read_text())
    plot(document, source.with_suffix(".png"))
    plot_goodput(document, source.with_name(source.stem + "-goodput.png"))
    plot_scale(document, source.with_name(source.stem + "-scale.png"))
