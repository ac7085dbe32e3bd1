"""The router started the way the cluster starts it, ``python -m runtime router --config FILE``; ready when /ready
answers (it has a healthy decode engine)."""

from __future__ import annotations

import os
from pathlib import Path

from testbed.process import HttpServer


class RouterProcess(HttpServer):
    def __init__(self, python: Path, config: Path, port: int, log: Path, repo: Path,
                 start_timeout_s: float = 60.0) -> None:
        super().__init__("router", [str(python), "-m", "runtime", "router", "--config", str(config)],
                         {**os.environ, "PYTHONPATH": str(repo)}, port, log, repo,
                         ready_path="/ready", start_timeout_s=start_timeout_s, poll_s=0.2, stop_grace_s=15.0)
