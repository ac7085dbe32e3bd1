"""Draw one dashboard row from Prometheus range queries (matplotlib), so the README shows what a panel group gives.

    .venv/bin/python -m testbed.panel_picture RECORDED.json OUT.png

RECORDED.json is what the live observability test writes: {"row": ..., "start": t0, "panels": [{"title", "unit",
"series": [{"legend", "values": [[t, v], ...]}]}]}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

UNITS = {
    "percentunit": "share",
    "reqps": "requests/s",
    "ops": "per second",
    "s": "seconds",
    "Bps": "bytes/s",
    "short": "per second",
}


def draw(recorded: dict[str, Any], out: Path) -> None:
    panels = recorded["panels"]
    end = max((t for p in panels for s in p["series"] for t, _ in s["values"]), default=recorded["start"] + 1)
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.0), squeeze=False)
    for axis, panel in zip(axes[0], panels, strict=True):
        for series in panel["series"]:
            times = [t - recorded["start"] for t, _ in series["values"]]
            axis.plot(times, [float(v) for _, v in series["values"]], label=series["legend"], linewidth=1.4)
        axis.set_title(panel["title"], fontsize=10)
        axis.set_xlabel("seconds into the run", fontsize=8)
        axis.set_ylabel(UNITS.get(panel["unit"], panel["unit"]), fontsize=8)
        axis.set_xlim(0, end - recorded["start"])
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
        if panel["series"]:
            axis.legend(fontsize=7, loc="upper left")
    figure.suptitle(f"pdstack / {recorded['dashboard']}: {recorded['row']} (live run on the CPU test bed)", fontsize=11)
    figure.tight_layout()
    figure.savefig(out, dpi=80)
    plt.close(figure)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    draw(json.loads(Path(argv[0]).read_text()), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
