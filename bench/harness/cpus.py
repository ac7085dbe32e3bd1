"""Where the benchmark's processes run on the 2-core machine, and with what environment: the router under test alone
on CPU 0; the simulated engines and the load generator on CPU 1."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROUTER_CPU, ENGINE_CPU = 0, 1


def environment() -> dict[str, str]:
    """The environment of every process a run starts: the repository importable, hashing fixed."""
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0"}
