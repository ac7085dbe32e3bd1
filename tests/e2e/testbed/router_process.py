"""The router started the way the cluster starts it, ``python -m runtime router --config FILE``, in its own process
group; stopped by that group's id (never by name), also when a test fails."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType


class RouterFailedToStart(RuntimeError):
    pass


class RouterProcess:
    def __init__(self, python: Path, config: Path, port: int, log: Path, repo: Path,
                 start_timeout_s: float = 60.0) -> None:
        self.argv = [str(python), "-m", "runtime", "router", "--config", str(config)]
        self.port = port
        self.log = log
        self.repo = repo
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RouterProcess:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(self.repo)}
        with open(self.log, "wb") as sink:
            self.process = subprocess.Popen(self.argv, cwd=self.repo, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RouterFailedToStart(f"router exited with {self.process.returncode}:\n{self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.2)
        raise RouterFailedToStart(f"router not ready after {self.start_timeout_s} s:\n{self.log_tail()}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self, grace_s: float = 15.0) -> int | None:
        if self.process is None or self.process.returncode is not None:
            return None if self.process is None else self.process.returncode
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            return self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout=5)
        except ProcessLookupError:
            return self.process.poll()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
