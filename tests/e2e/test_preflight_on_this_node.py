"""Preflight for real on this (CPU) node with real NIXL: it runs, reports GPU and EFA as absent, and measures a
local UCX transfer."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from testbed.cpu_pair import REPO, WORK

pytestmark = pytest.mark.e2e


def test_preflight_reports_this_cpu_node(vllm_python: Path, tiny_model: Path) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    config = WORK / "preflight-serving.yaml"
    config.write_text(yaml.safe_dump({"model": {"source": str(tiny_model), "served_name": "tiny", "block_size": 32}}))
    result = subprocess.run(
        [str(vllm_python), "-m", "runtime", "preflight", "--json", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(result.stdout)
    print("\n" + "\n".join(f"{c['status']:<4} {c['name']:<13} {c['reason']}" for c in report["checks"]))
    checks = {check["name"]: check for check in report["checks"]}
    assert result.returncode == 1 and report["passed"] is False  # no GPU is a fail on a node meant for p5
    assert checks["gpus"]["detail"]["present"] == 0
    assert checks["efa"]["status"] == "warn" and checks["efa"]["detail"]["present"] == 0
    assert checks["nixl"]["status"] == "pass" and "UCX" in checks["nixl"]["detail"]["plugins"]
    assert checks["nixl_transfer"]["status"] == "pass" and checks["nixl_transfer"]["detail"]["nixl_gbps"] > 0
    assert checks["model"]["status"] == "pass"
