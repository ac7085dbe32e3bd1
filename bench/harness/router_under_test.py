"""The router under test, started for one run: its process on the router's CPU, ready, registered with the engines
of the run's topology, stopped (with the system's own grace) however the run ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.harness.cpus import REPO, ROUTER_CPU, environment
from bench.systems.system import System
from bench.systems.topology import Topology
from testbed.ports import free_ports
from testbed.process import ProcessGroup


@dataclass(frozen=True)
class RunningRouter:
    url: str
    process: ProcessGroup


@contextmanager
def router_under_test(system: System, topology: Topology, work: Path, tag: str) -> Iterator[RunningRouter]:
    """Start ``system``'s router in front of ``topology`` (its log: ``work/<tag>.log``), wait until it answers and the
    system has registered the engines, and yield it; stop it on the way out."""
    port, metrics_port = free_ports(2)
    process = ProcessGroup(
        system.argv(topology, port, metrics_port, work), work / f"{tag}.log", ROUTER_CPU, environment(), REPO
    )
    try:
        url = f"http://127.0.0.1:{port}"
        process.wait_http(url + system.ready_path, timeout_s=90)
        system.register(url, topology)
        time.sleep(0.5)  # first health and metrics rounds; KV-event subscriptions settle
        yield RunningRouter(url, process)
    finally:
        process.stop(system.stop_grace_s)
