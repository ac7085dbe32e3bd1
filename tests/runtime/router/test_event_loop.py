"""The router process serves on uvloop's event loop when uvloop is installed (runtime/requirements.txt pins it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from testbed.ports import free_ports

REPO = Path(__file__).resolve().parents[3]


def test_the_router_process_runs_on_uvloop(tmp_path: Path) -> None:
    pytest.importorskip("uvloop", reason="uvloop is pinned in runtime/requirements.txt")
    config = tmp_path / "router.yaml"
    port, engine_port = free_ports(2)
    config.write_text(yaml.safe_dump({"serving": {
        "model": {"source": str(tmp_path / "no-model"), "served_name": "tiny"},
        "router": {"host": "127.0.0.1", "port": port,
                   "discovery": {"static": [{"url": f"http://127.0.0.1:{engine_port}", "role": "decode"}]}},
    }}))
    process = subprocess.Popen([sys.executable, "-m", "runtime", "router", "--config", str(config)], cwd=REPO,
                               env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        listening = None
        while listening is None and time.monotonic() < deadline and process.stderr is not None:
            line = process.stderr.readline()
            if not line:
                break
            if '"router_listening"' in line:
                listening = json.loads(line)
        assert listening is not None, "the router never logged router_listening"
        assert listening["loop"] == "uvloop"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
