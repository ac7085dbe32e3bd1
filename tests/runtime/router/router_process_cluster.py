"""The router as a process (``python -m runtime router --config FILE``, as the cluster starts it) in front of fault
engines and mock control planes (an EndpointSlice API, a KV-event publisher) on loopback, driven from plain tests:
HTTP in, HTTP out, SIGTERM and its exit code. For what must be seen from outside the process: background tasks that
die, discovery that changes, an exit code."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.fault_engine import FaultEngine
from testbed.ports import free_ports
from testbed.router_process import RouterProcess
from testbed.scrape import sample_total
from tests.support.router_cluster import LoopThread

REPO = Path(__file__).resolve().parents[3]


@dataclass
class ProcessCluster:
    loop: LoopThread
    router: RouterProcess
    engines: list[FaultEngine] = field(default_factory=list)
    metrics_port: int | None = None

    @property
    def url(self) -> str:
        return self.router.url

    @property
    def metrics_url(self) -> str:
        """/metrics is served on its own port (serving.router.metrics_port)."""
        return f"http://127.0.0.1:{self.metrics_port}" if self.metrics_port else self.url

    def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None, timeout: float = 30.0
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def get(self, path: str, base: str | None = None) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen((base or self.url) + path, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def metric(self, name: str, **labels: str) -> float:
        return sample_total(self.metrics_url, name, **labels)

    def metrics_text(self) -> str:
        return self.get("/metrics", self.metrics_url)[1].decode()

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """The router's JSON log lines whose event (message) is ``event``."""
        found = []
        for line in self.router.log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and event in (record.get("event"), record.get("message")):
                found.append(record)
        return found

    def wait_for(self, condition: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(
            f"condition not met in time; router log tail:\n{self.router.group.tail() if self.router.group else ''}"
        )

    def terminate(self) -> int | None:
        """SIGTERM, then the exit code."""
        return self.router.stop()


@pytest.fixture
def router_process(tokenizer_dir: Path, tmp_path: Path) -> Iterator[Callable[..., ProcessCluster]]:
    """``start(router_config, engines, ready=True)``: a router process with ``router_config`` (merged over fast test
    defaults) in front of ``engines``, which ``start.engines(*names)`` makes and starts on ``start.loop``."""
    loop = LoopThread()
    stack = ExitStack()
    started: list[FaultEngine] = []
    closers: list[Callable[[], Any]] = []

    def engines(*names: str, **fields: Any) -> list[FaultEngine]:
        made = [FaultEngine(name, **fields) for name in names]
        for engine in made:
            loop.run(engine.start())
        started.extend(made)
        return made

    def start(
        router: dict[str, Any], engines: list[FaultEngine] | None = None, ready: bool = True, kv_events: bool = False
    ) -> ProcessCluster:
        port, metrics_port = free_ports(2)
        config = {
            "host": "127.0.0.1",
            "port": port,
            "metrics_port": metrics_port,
            "health_interval_s": 0.2,
            "metrics_interval_s": 0.2,
            "retries": {"attempts": 3, "backoff_s": 0.01},
            "timeouts": {"connect_s": 1.0, "first_byte_s": 5.0, "idle_stream_s": 5.0},
            "shutdown_grace_s": 2.0,
            "prefix_mode": "approximate",
            **router,
        }
        serving = {
            "model": {"source": str(tokenizer_dir), "served_name": "tiny", "block_size": 32},
            "kv_events": {"enabled": kv_events},
            "router": config,
        }
        path = tmp_path / f"router-{port}.yaml"
        path.write_text(yaml.safe_dump({"name": "router-under-test", "serving": serving}))
        process = RouterProcess(Path(sys.executable), path, port, tmp_path / f"router-{port}.log", REPO)
        process.ready_path = "/ready" if ready else "/health"
        stack.enter_context(process)
        return ProcessCluster(loop, process, list(engines or []), config["metrics_port"])

    start.loop = loop  # type: ignore[attr-defined]
    start.engines = engines  # type: ignore[attr-defined]
    start.closers = closers  # type: ignore[attr-defined]
    yield start
    stack.close()
    for close in closers:
        loop.run(close())
    for engine in started:
        loop.run(engine.stop())
    loop.close()
