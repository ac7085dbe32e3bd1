"""A test-bed process started the way the cluster starts it (``python -m runtime ...``), in its own process group,
ready when an HTTP path answers 200, and stopped by that group's id (never by name), also when a test fails."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType


class ProcessFailedToStart(RuntimeError):
    pass


class TestbedProcess:
    __test__ = False  # not a pytest test class

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, log: Path, repo: Path, *,
                 ready_path: str, start_timeout_s: float, poll_s: float) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.port = port
        self.log = log
        self.repo = repo
        self.ready_path = ready_path
        self.start_timeout_s = start_timeout_s
        self.poll_s = poll_s
        self.process: subprocess.Popen[bytes] | None = None
        self.started_in_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> TestbedProcess:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        begin = time.monotonic()
        with open(self.log, "wb") as sink:
            self.process = subprocess.Popen(self.argv, cwd=self.repo, env=self.env, stdout=sink,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = begin + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ProcessFailedToStart(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if self._ready():
                self.started_in_s = time.monotonic() - begin
                return
            time.sleep(self.poll_s)
        raise ProcessFailedToStart(f"{self.name} not ready after {self.start_timeout_s} s:\n{self.log_tail()}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}{self.ready_path}", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGTERM to the group, SIGKILL after ``grace_s``; then SIGKILL whatever the group still holds (vLLM's
        engine processes). Returns the main process's exit code."""
        if self.process is None:
            return None
        group = self.process.pid  # start_new_session: the group id is the process's pid
        if self.process.returncode is None:
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

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
