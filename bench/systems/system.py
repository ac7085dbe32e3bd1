"""A router under test: how to start it on a topology, how to tell it is ready, or why it cannot run here."""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.systems.topology import Topology

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class System:
    name: str
    policy: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.policy})"

    def unavailable(self) -> str | None:
        """Why this system cannot run on this machine, or None."""
        return None

    def argv(self, topology: Topology, port: int, metrics_port: int, work: Path) -> list[str]:
        raise NotImplementedError

    def register(self, url: str, topology: Topology) -> None:
        """What the router needs once it answers, before traffic (most need nothing)."""

    ready_path: str = "/health"
    stop_grace_s: float = 10.0
    """How long it may take to exit after SIGTERM before it is killed."""


@dataclass(frozen=True)
class PdstackRouter(System):
    """pdstack's router as the cluster runs it (``python -m runtime router``), product defaults but the mode (and,
    for the admission benchmark, admission control switched off)."""

    ready_path: str = "/ready"
    admission: bool = True

    def argv(self, topology: Topology, port: int, metrics_port: int, work: Path) -> list[str]:
        static = [{"url": e.url, "role": e.role, "kv_events": e.kv_events} for e in topology.engines]
        config = work / f"{self.name}-{self.policy}.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "serving": {
                        "model": {
                            "source": str(topology.tokenizer),
                            "served_name": topology.model,
                            "block_size": topology.block_size,
                        },
                        "router": {
                            "host": "127.0.0.1",
                            "port": port,
                            "metrics_port": None,
                            "prefix_mode": self.policy,
                            "discovery": {"static": static},
                            "admission": {"enabled": self.admission},
                        },
                    }
                }
            )
        )
        return [sys.executable, "-m", "runtime", "router", "--config", str(config)]


@dataclass(frozen=True)
class RoundRobinBaseline(System):
    """The plain baseline: a minimal P/D proxy that takes the next prefill and the next decode in turn."""

    def argv(self, topology: Topology, port: int, metrics_port: int, work: Path) -> list[str]:
        prefills = ",".join(e.url for e in topology.role("prefill"))
        decodes = ",".join(e.url for e in topology.role("decode"))
        return [sys.executable, "-m", "bench.systems.round_robin_proxy", str(port), prefills, decodes]


@dataclass(frozen=True)
class VllmRouter(System):
    """vllm-router (PyPI, Rust) in vLLM P/D mode with NIXL, as reference/llm-d-and-peers.md ran it."""

    ready_path: str = "/readiness"

    def executable(self) -> str | None:
        here = Path(sys.executable).parent / "vllm-router"
        return str(here) if here.exists() else shutil.which("vllm-router")

    def unavailable(self) -> str | None:
        if self.executable() is None:
            return "vllm-router is not installed (pip install -r bench/requirements.txt)"
        return None

    def argv(self, topology: Topology, port: int, metrics_port: int, work: Path) -> list[str]:
        argv = [
            str(self.executable()),
            "--vllm-pd-disaggregation",
            "--kv-connector",
            "nixl",
            "--policy",
            self.policy,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--prometheus-host",
            "127.0.0.1",
            "--prometheus-port",
            str(metrics_port),
            "--log-level",
            "warning",
        ]
        for engine in topology.role("prefill"):
            argv += ["--prefill", engine.url]
        for engine in topology.role("decode"):
            argv += ["--decode", engine.url]
        if self.policy == "kv_aware":  # it accepts event sources for prefill engines only
            for engine in topology.role("prefill"):
                argv += ["--pd-kv-events", f"{engine.url}={engine.kv_events}"]
            argv += ["--kv-event-block-size", str(topology.block_size), "--kv-event-model", topology.model]
        return argv


@dataclass(frozen=True)
class Smg(System):
    """SMG (PyPI ``smg``, Rust) in P/D mode with the vLLM backend. Started with no workers, then every engine is
    registered through ``POST /workers`` as a NixlConnector worker: with plain ``--prefill/--decode`` flags it falls
    into passthrough and decode recomputes (reference/llm-d-and-peers.md)."""

    ready_path: str = "/health"
    stop_grace_s: float = 0.5  # it waits ~5 s on SIGTERM even when idle: a sweep restarts it hundreds of times

    def executable(self) -> str | None:
        here = Path(sys.executable).parent / "smg"
        return str(here) if here.exists() else shutil.which("smg")

    def unavailable(self) -> str | None:
        if self.executable() is None:
            return "smg is not installed (pip install -r bench/requirements.txt)"
        return None

    def argv(self, topology: Topology, port: int, metrics_port: int, work: Path) -> list[str]:
        return [
            str(self.executable()),
            "launch",
            "--pd-disaggregation",
            "--backend",
            "vllm",
            "--policy",
            self.policy,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--prometheus-host",
            "127.0.0.1",
            "--prometheus-port",
            str(metrics_port),
            "--log-level",
            "warn",
        ]

    def register(self, url: str, topology: Topology) -> None:
        for engine in topology.engines:
            worker = {
                "url": engine.url,
                "worker_type": engine.role,
                "runtime_type": "vllm",
                "kv_connector": "NixlConnector",
                "kv_role": "kv_producer" if engine.role == "prefill" else "kv_consumer",
            }
            request = urllib.request.Request(
                f"{url}/workers",
                data=json.dumps(worker).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                if response.status >= 300:
                    raise RuntimeError(f"smg refused worker {engine.url}: HTTP {response.status}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/readiness", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise RuntimeError("smg not ready 60 s after its workers were registered")
