"""The CPU vLLM test bed: the vLLM CPU venv (installed by vllm_venv/install.sh), the tiny local model, and the
deployment of a prefill + decode pair started through ``python -m runtime`` on loopback, one core each. Used by the
end-to-end tier (tests/e2e/conftest.py), ``make demo`` and the real-pair benchmark."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = REPO / ".work" / "e2e"
VLLM_VENV = Path(os.environ.get("PDSTACK_VLLM_VENV", REPO / ".venv-vllm"))
VLLM_VENV_FILES = HERE / "vllm_venv"


def install_vllm_venv() -> Path:
    """The vLLM venv's interpreter, installed (or confirmed cached) by the repo's own script."""
    subprocess.run(["bash", str(VLLM_VENV_FILES / "install.sh"), str(VLLM_VENV)], check=True)
    return VLLM_VENV / "bin" / "python"


def make_tiny_model(vllm_python: Path) -> Path:
    """The tiny local model (made once, then reused) in the work directory."""
    out = WORK / "tiny-model"
    subprocess.run([str(vllm_python), str(HERE / "tiny_model.py"), str(out)], check=True)
    return out


def make_tiny_moe_model(vllm_python: Path) -> Path:
    """The tiny local mixture-of-experts model (testbed/tiny_moe_model.py; made once, then reused) in the work
    directory."""
    out = WORK / "tiny-moe-model"
    subprocess.run([str(vllm_python), "-m", "testbed.tiny_moe_model", str(out)], check=True, cwd=REPO)
    return out


def cpu_pair_serving(model: Path, ports: list[int]) -> dict[str, object]:
    """The serving section of the CPU test bed: the tiny model, NIXL over UCX from CPU buffers, prefill on
    ports[0:4] and core 0, decode on ports[4:8] and core 1."""
    return {
        "model": {"source": str(model), "served_name": "tiny", "block_size": 32, "max_model_len": 1024},
        "kv_transfer": {"backend": "UCX", "buffer_device": "cpu"},
        "prefill": cpu_role(ports[0:4], cpu=0),
        "decode": cpu_role(ports[4:8], cpu=1),
    }


def write_pair_deployment(name: str, work: Path, model: Path, ports: list[int], **router: object) -> Path:
    """``work/deployment.yaml``: the CPU pair of :func:`cpu_pair_serving` with the router on ports[8] in front,
    every request P/D, discovering the prefill (ports[0]) and the decode (ports[4]) statically, /metrics on its API
    port; ``router`` adds or overrides router settings. Returns the file."""
    config = work / "deployment.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "serving": {
                    **cpu_pair_serving(model, ports),
                    "router": {
                        "host": "127.0.0.1",
                        "port": ports[8],
                        "metrics_port": None,
                        "pd_threshold_tokens": 0,
                        "discovery": {
                            "static": [
                                {"url": f"http://127.0.0.1:{ports[0]}", "role": "prefill"},
                                {"url": f"http://127.0.0.1:{ports[4]}", "role": "decode"},
                            ]
                        },
                        **router,
                    },
                },
            }
        )
    )
    return config


def cpu_role(ports: list[int], cpu: int) -> dict[str, Any]:
    """One role of the CPU test deployment: loopback, its own ports, its own core for vLLM's OpenMP threads."""
    http, side_channel, kv_events, dp_rpc = ports
    return {
        "bind_address": "127.0.0.1",
        "ports": {"http": http, "nixl_side_channel": side_channel, "kv_events": kv_events, "dp_rpc": dp_rpc},
        "extra_args": ["--enforce-eager"],
        "extra_env": {
            "VLLM_CPU_OMP_THREADS_BIND": str(cpu),
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "UCX_TLS": "tcp,self,sm",
            "VLLM_NO_USAGE_STATS": "1",
        },
    }


def precise_router(port: int, engines: list[tuple[str, int, int]], **settings: object) -> dict[str, Any]:
    """The router section of a test bed whose engines publish KV events: on loopback at ``port`` with /metrics on its
    API port, precise prefix mode, one-second health and metrics polls, discovering each of ``engines`` (role, HTTP
    port, KV-event port) statically on loopback; ``settings`` adds or overrides router settings."""
    return {
        "host": "127.0.0.1",
        "port": port,
        "metrics_port": None,
        "prefix_mode": "precise",
        "health_interval_s": 1.0,
        "metrics_interval_s": 1.0,
        "timeouts": {"connect_s": 2.0, "first_byte_s": 120.0, "idle_stream_s": 60.0},
        "discovery": {
            "static": [
                {"url": f"http://127.0.0.1:{http}", "role": role, "kv_events": f"tcp://127.0.0.1:{kv_events}"}
                for role, http, kv_events in engines
            ]
        },
        **settings,
    }


def server_environment(vllm_python: Path) -> dict[str, str]:
    """The pod-like environment: the venv's `vllm` on PATH, the pod IP, caches in the work dir. The test bed's
    sitecustomize (quirk 3, NIXL progress-thread delay) rides on PYTHONPATH here, test-side only."""
    keep = {name: os.environ[name] for name in ("HOME", "LANG", "TMPDIR") if name in os.environ}
    return {
        **keep,
        "PATH": f"{vllm_python.parent}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "PYTHONPATH": f"{REPO}{os.pathsep}{VLLM_VENV_FILES / 'sitecustomize_dir'}",
        "POD_IP": "127.0.0.1",
        "VLLM_CACHE_ROOT": str(WORK / "vllm-cache"),
        "TORCHINDUCTOR_CACHE_DIR": str(WORK / "inductor-cache"),
        "HF_HOME": str(WORK / "hf-home"),
    }
