"""The router process serves on uvloop's event loop when uvloop is installed (runtime/requirements.txt pins it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.router_process import start_lone_router

REPO = Path(__file__).resolve().parents[3]


def test_the_router_process_runs_on_uvloop(tmp_path: Path) -> None:
    pytest.importorskip("uvloop", reason="uvloop is pinned in runtime/requirements.txt")
    router, _port = start_lone_router(tmp_path, REPO)
    try:
        line = next(line for line in router.log.read_text().splitlines() if '"router_listening"' in line)
        assert json.loads(line)["loop"] == "uvloop"
    finally:
        router.stop(15)
