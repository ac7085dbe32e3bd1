"""The one process supervisor of the tests and the benchmarks: a process (optionally pinned to a core) in its own
process group with its output in a log file, stopped by that group's id (never by name), also when the caller
fails; its CPU time (itself and its children) read from the kernel. ``HttpServer`` is such a process that is ready
when an HTTP path answers 200 (an engine, a router, Prometheus)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

import psutil


class ProcessFailedToStart(RuntimeError):
    """The process exited, or was not ready in time; the message ends with its log's tail."""


class ProcessGroup:
    """Started at once: ``argv`` in a new session (its own process group), stdout and stderr into ``log``."""

    def __init__(
        self,
        argv: list[str],
        log: Path,
        cpu: int | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        name: str | None = None,
    ) -> None:
        prefix = ["taskset", "-c", str(cpu)] if cpu is not None and (os.cpu_count() or 1) > cpu else []
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as sink:
            self.process = subprocess.Popen(
                [*prefix, *argv],
                cwd=cwd,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.log = log
        self.name = name or log.stem

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

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

    def wait_http(self, url: str, timeout_s: float = 60.0, poll_s: float = 0.1) -> None:
        """Until GET ``url`` answers 200; ProcessFailedToStart if the process exits first or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ProcessFailedToStart(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(poll_s)
        raise ProcessFailedToStart(f"{self.name}: {url} not ready after {timeout_s} s:\n{self.tail()}")

    def wait_line(self, text: str, timeout_s: float = 60.0) -> None:
        """Until ``text`` appears in the log; ProcessFailedToStart if the process exits first or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                raise ProcessFailedToStart(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            time.sleep(0.05)
        raise ProcessFailedToStart(f"{self.name}: no {text!r} after {timeout_s} s:\n{self.tail()}")

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM to the group, SIGKILL after ``grace_s``; then SIGKILL whatever the group still holds (vLLM's
        engine processes). Returns the main process's exit code."""
        group = self.process.pid  # start_new_session: the group id is the process's pid
        if self.process.poll() is None:
            for sig, grace in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(group, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.process.poll()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class HttpServer:
    """A ProcessGroup started on ``__enter__`` (or ``start()``) and ready when GET ``ready_path`` on its loopback port
    answers 200; stopped on exit, and at once if it never became ready."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        port: int,
        log: Path,
        cwd: Path,
        *,
        ready_path: str,
        start_timeout_s: float,
        poll_s: float,
        stop_grace_s: float = 30.0,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.port = port
        self.log = log
        self.cwd = cwd
        self.ready_path = ready_path
        self.start_timeout_s = start_timeout_s
        self.poll_s = poll_s
        self.stop_grace_s = stop_grace_s
        self.group: ProcessGroup | None = None
        self.started_in_s: float | None = None
        self._launched_at = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process without waiting for it (servers that only become ready together, such as the nodes of
        a data-parallel group, are launched first and waited for after)."""
        self._launched_at = time.monotonic()
        self.group = ProcessGroup(self.argv, self.log, env=self.env, cwd=self.cwd, name=self.name)

    def wait_ready(self) -> None:
        """Until the launched process answers on ``ready_path``; stopped at once if it never does."""
        assert self.group is not None, "launch() first"
        try:
            self.group.wait_http(f"{self.url}{self.ready_path}", self.start_timeout_s, self.poll_s)
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - self._launched_at

    def stop(self, grace_s: float | None = None) -> int | None:
        if self.group is None:
            return None
        return self.group.stop(self.stop_grace_s if grace_s is None else grace_s)
