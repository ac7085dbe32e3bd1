"""The router started the way the cluster starts it, ``python -m runtime router --config FILE``; ready when /ready
answers (it has a healthy decode engine)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from testbed.ports import free_ports
from testbed.process import HttpServer, ProcessGroup


class RouterProcess(HttpServer):
    def __init__(
        self, python: Path, config: Path, port: int, log: Path, repo: Path, start_timeout_s: float = 60.0
    ) -> None:
        super().__init__(
            "router",
            [str(python), "-m", "runtime", "router", "--config", str(config)],
            {**os.environ, "PYTHONPATH": str(repo)},
            port,
            log,
            repo,
            ready_path="/ready",
            start_timeout_s=start_timeout_s,
            poll_s=0.2,
            stop_grace_s=15.0,
        )


def start_lone_router(tmp_path: Path, repo: Path) -> tuple[ProcessGroup, int]:
    """A router process with one static decode engine that nobody serves (its port is free): enough for what the
    router does before any request reaches an engine (its log, its event loop, its HTTP parser). Returns the process,
    already listening, and its API port; the caller stops it."""
    config = tmp_path / "router.yaml"
    port, engine_port = free_ports(2)
    config.write_text(
        yaml.safe_dump(
            {
                "serving": {
                    "model": {"source": str(tmp_path / "no-model"), "served_name": "tiny"},
                    "router": {
                        "host": "127.0.0.1",
                        "port": port,
                        "metrics_port": None,
                        "discovery": {"static": [{"url": f"http://127.0.0.1:{engine_port}", "role": "decode"}]},
                    },
                }
            }
        )
    )
    router = ProcessGroup(
        [sys.executable, "-m", "runtime", "router", "--config", str(config)],
        tmp_path / "router.log",
        env={**os.environ, "PYTHONPATH": str(repo)},
        cwd=repo,
    )
    try:
        router.wait_line('"router_listening"', timeout_s=30)
    except BaseException:
        router.stop(15)
        raise
    return router, port
