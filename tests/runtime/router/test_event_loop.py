"""The router process serves on uvloop's event loop when uvloop is installed (runtime/requirements.txt pins it)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from testbed.ports import free_ports
from testbed.process import ProcessGroup

REPO = Path(__file__).resolve().parents[3]


def test_the_router_process_runs_on_uvloop(tmp_path: Path) -> None:
    pytest.importorskip("uvloop", reason="uvloop is pinned in runtime/requirements.txt")
    config = tmp_path / "router.yaml"
    port, engine_port = free_ports(2)
    config.write_text(yaml.safe_dump({"serving": {
        "model": {"source": str(tmp_path / "no-model"), "served_name": "tiny"},
        "router": {"host": "127.0.0.1", "port": port, "metrics_port": None,
                   "discovery": {"static": [{"url": f"http://127.0.0.1:{engine_port}", "role": "decode"}]}},
    }}))
    router = ProcessGroup([sys.executable, "-m", "runtime", "router", "--config", str(config)], tmp_path / "router.log",
                          env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    try:
        router.wait_line('"router_listening"', timeout_s=30)
        line = next(line for line in router.log.read_text().splitlines() if '"router_listening"' in line)
        assert json.loads(line)["loop"] == "uvloop"
    finally:
        router.stop(15)
