"""The run's plot (matplotlib, Agg): per workload, TTFT p90, output tokens/s and the engines' prefix-cache hit rate
(with the oracle bound), one bar per system, the median over repeats with min-max whiskers. Without matplotlib
installed the plot is skipped and the markdown says so."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

PANELS = (("ttft_p90_ms", "TTFT p90 (ms, lower is better)"), ("output_tps", "output tokens/s (higher is better)"),
          ("engine_prefix_hit_rate", "engine prefix-cache hit rate"))


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
    for axis, (key, title) in zip(axes, PANELS):
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
    figure.suptitle(f"pdstack routing benchmark ({document['command']}, {document['date']}): "
                    f"simulated {document['scenario']['prefills']}P+{document['scenario']['decodes']}D engines")
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


if __name__ == "__main__":
    import json
    import sys

    source = Path(sys.argv[1])
    plot(json.loads(source.read_text()), source.with_suffix(".png"))
