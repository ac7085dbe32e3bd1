"""The trace benchmarks' make targets: what ``make bench-plan`` would run installs the bench packages its plot needs
and records its result, and docs/development.md's benchmark table lists both trace targets (``make -n -B``: the
commands, none run)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def dry_run(target: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return subprocess.run(
        ["make", "-n", "-B", target], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    ).stdout


def test_bench_plan_installs_the_bench_packages_and_records_its_result() -> None:
    commands = dry_run("bench-plan").splitlines()
    plan = [c for c in commands if "-m bench.plan" in c]
    assert len(plan) == 1 and "--out bench/results" in plan[0]
    install = next(i for i, c in enumerate(commands) if "-r bench/requirements.txt" in c)
    assert install < commands.index(plan[0])


def test_the_development_guide_lists_the_trace_benchmarks() -> None:
    table = [row for row in (REPO / "docs" / "development.md").read_text().splitlines() if row.startswith("| `make")]
    assert {"bench-replay", "bench-plan"} <= {row.split("`")[1].removeprefix("make ") for row in table}
