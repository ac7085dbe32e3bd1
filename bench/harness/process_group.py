"""A process the harness starts (engines, a router), pinned to a core, in its own process group; stopped by that
group's id, never by name; its CPU time (itself and its children) read from the kernel."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free right now (held together while chosen, so never the same twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class ProcessGroup:
    def __init__(self, argv: list[str], log: Path, cpu: int | None, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        prefix = ["taskset", "-c", str(cpu)] if cpu is not None and (os.cpu_count() or 1) > cpu else []
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as sink:
            self.process = subprocess.Popen([*prefix, *argv], cwd=cwd, env=env, stdout=sink,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        try:
            root = psutil.Process(self.process.pid)
            total = sum(root.cpu_times()[:2])
            for child in root.children(recursive=True):
                try:
                    total += sum(child.cpu_times()[:2])
                except psutil.NoSuchProcess:
                    pass
            return total
        except psutil.NoSuchProcess:
            return 0.0

    def wait_http(self, url: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.log.name}: exited {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{url} not ready after {timeout_s} s:\n{self.tail()}")

    def wait_line(self, text: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.log.name}: exited {self.process.returncode}:\n{self.tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.log.name}: no {text!r} after {timeout_s} s:\n{self.tail()}")

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``."""
        if self.process.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
