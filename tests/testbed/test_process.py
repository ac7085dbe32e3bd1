"""The supervisor stops the whole process group (children too), says why a process never became ready, and the
HTTP server wrapper is stopped when it fails to start."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil
import pytest

from testbed.ports import free_ports
from testbed.process import HttpServer, ProcessFailedToStart, ProcessGroup


def test_stop_ends_the_process_and_its_children(tmp_path: Path) -> None:
    group = ProcessGroup(["sh", "-c", "sleep 300 & echo started; wait"], tmp_path / "sleeper.log")
    group.wait_line("started", timeout_s=10)
    children = psutil.Process(group.pid).children(recursive=True)
    assert children
    group.stop(grace_s=5)
    assert group.process.poll() is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
        child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children
    ):
        time.sleep(0.05)
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children)


def test_a_process_that_exits_fails_with_its_log(tmp_path: Path) -> None:
    group = ProcessGroup([sys.executable, "-c", "print('no such model'); raise SystemExit(3)"], tmp_path / "bad.log")
    (port,) = free_ports(1)
    with pytest.raises(ProcessFailedToStart, match=r"exited with 3(.|\n)*no such model"):
        group.wait_http(f"http://127.0.0.1:{port}/health", timeout_s=10)


def test_a_server_never_ready_is_stopped(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    server = HttpServer(
        "silent",
        [sys.executable, "-c", "import time; time.sleep(300)"],
        {},
        port,
        tmp_path / "silent.log",
        tmp_path,
        ready_path="/health",
        start_timeout_s=1.0,
        poll_s=0.1,
    )
    with pytest.raises(ProcessFailedToStart, match="not ready after"), server:
        pass
    assert server.group is not None and server.group.process.poll() is not None
