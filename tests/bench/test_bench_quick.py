"""Smoke test of ``make bench-quick``: the harness runs end to end on simulated engines and writes its outputs in
the documented shape. It asserts the shape only, never a number: timings on a shared CI machine decide nothing."""

from __future__ import annotations

import json
from pathlib import Path

from bench.harness.measurement import ROW_FIELDS
from bench.harness.run import main


def test_bench_quick_writes_rows_table_and_plot(tmp_path: Path) -> None:
    written = main(["--scenario", "quick", "--out", str(tmp_path)])
    document = json.loads(written.read_text())

    assert written.name.endswith("-quick.json")
    assert {"machine", "versions", "rows", "skipped", "failures", "scenario", "command"} <= document.keys()
    assert document["machine"]["cpus"] >= 1 and document["versions"]["python"]
    rows = document["rows"]
    assert rows and all(tuple(row) == ROW_FIELDS for row in rows)
    workloads = {spec["kind"] for spec in document["scenario"]["workloads"]}
    assert {"shared_prefix", "bursty", "agentic"} <= workloads
    measured = {(row["system"], row["policy"]) for row in rows if row["system"] != "oracle"}
    assert {("pdstack", "precise"), ("pdstack", "approximate"), ("baseline", "round_robin")} <= measured
    skipped = {(entry["system"], entry["policy"]) for entry in document["skipped"]}
    failed = {(entry["system"], entry["policy"]) for entry in document["failures"]}
    for system, policy in measured | skipped:
        assert (
            (system, policy) in skipped
            or {r["workload"] for r in rows if (r["system"], r["policy"]) == (system, policy)} == workloads
            or (system, policy) in failed
        )
    assert {row["workload"] for row in rows if row["system"] == "oracle"} == workloads
    for row in rows:
        if row["system"] != "oracle":
            assert isinstance(row["throughput_rps"], float) and isinstance(row["engine_prefix_hit_rate"], float)
            assert isinstance(row["router_cpu_ms_per_req"], float)
            assert isinstance(row["goodput_rps"], float) and 0.0 <= row["slo_attainment"] <= 1.0
            assert row["goodput_bound"] in ("", "at_least", "below")
    sweeps = {(s["system"], s["policy"], s["workload"]) for s in document["sweeps"]}
    assert {(r["system"], r["policy"], r["workload"]) for r in rows if r["system"] != "oracle"} <= sweeps
    assert all(s["points"] and s["points"][0]["rate_rps"] > 0 for s in document["sweeps"])
    assert {r["engines_per_role"] for r in document["scale"]} == set(document["scenario"]["scale"]["sizes"])
    assert ("pdstack", "precise") not in failed and ("baseline", "round_robin") not in failed
    table = written.with_suffix(".md").read_text()
    assert "## Goodput" in table and "| workload | system | policy |" in table and "## Scale" in table
    for suffix in (".png", "-goodput.png", "-scale.png"):
        assert written.with_name(written.stem + suffix).stat().st_size > 0
