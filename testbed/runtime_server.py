"""A prefill or decode server started the way the cluster starts it: ``python -m runtime <role>``, which execs
vLLM; ready when /health answers."""

from __future__ import annotations

from pathlib import Path

from testbed.process import HttpServer


class RuntimeServer(HttpServer):
    def __init__(
        self,
        role: str,
        python: Path,
        config: Path,
        port: int,
        env: dict[str, str],
        log: Path,
        repo: Path,
        start_timeout_s: float = 300.0,
    ) -> None:
        super().__init__(
            role,
            [str(python), "-m", "runtime", role, "--config", str(config)],
            env,
            port,
            log,
            repo,
            ready_path="/health",
            start_timeout_s=start_timeout_s,
            poll_s=1.0,
        )
