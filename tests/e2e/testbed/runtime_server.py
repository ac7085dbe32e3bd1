"""A prefill or decode server started the way the cluster starts it: ``python -m runtime <role>``, which execs
vLLM. Run in its own process group so that stopping it stops vLLM's engine processes too, by process-group id
(never by name), even when a test fails."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType


class ServerFailedToStart(RuntimeError):
    pass


class RuntimeServer:
    def __init__(self, role: str, python: Path, config: Path, port: int, env: dict[str, str], log: Path,
                 repo: Path, start_timeout_s: float = 300.0) -> None:
        self.role = role
        self.argv = [str(python), "-m", "runtime", role, "--config", str(config)]
        self.port = port
        self.env = env
        self.log = log
        self.repo = repo
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self.started_in_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RuntimeServer:
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
            self.process = subprocess.Popen(
                self.argv, cwd=self.repo, env=self.env, stdout=sink, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        deadline = begin + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailedToStart(f"{self.role} exited with {self.process.returncode}:\n{self.log_tail()}")
            if self._healthy():
                self.started_in_s = time.monotonic() - begin
                return
            time.sleep(1.0)
        raise ServerFailedToStart(f"{self.role} not healthy after {self.start_timeout_s} s:\n{self.log_tail()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        group = self.process.pid  # start_new_session: the group id is the server's pid
        for sig, grace in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        # Engine processes left in the group after the server exited
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
