"""``make demo`` (``python -m testbed.demo``): the whole thing on this machine without a GPU. A real vLLM prefill
and decode (CPU, tiny local model) started through ``python -m runtime``, the router on 127.0.0.1:${DEMO_PORT:-8000};
prints the URL and a curl, then waits. Ctrl-C or SIGTERM stops every process it started (by process group, never
by name)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import ExitStack
from pathlib import Path

import yaml

from testbed.cpu_pair import REPO, VLLM_VENV, WORK, cpu_pair_serving, make_tiny_model, server_environment
from testbed.ports import free_ports
from testbed.router_process import RouterProcess
from testbed.runtime_server import RuntimeServer


def main() -> int:
    port = int(os.environ.get("DEMO_PORT", "8000"))
    python = VLLM_VENV / "bin" / "python"
    work = WORK.parent / "demo"
    work.mkdir(parents=True, exist_ok=True)
    model = make_tiny_model(python)
    ports = free_ports(8)
    config = work / "demo-deployment.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "demo",
                "serving": {
                    **cpu_pair_serving(model, ports),
                    "router": {
                        "host": "127.0.0.1",
                        "port": port,
                        "metrics_port": None,
                        "pd_threshold_tokens": 0,
                        "prefix_mode": "precise",
                        "discovery": {
                            "static": [
                                {
                                    "url": f"http://127.0.0.1:{ports[0]}",
                                    "role": "prefill",
                                    "kv_events": f"tcp://127.0.0.1:{ports[2]}",
                                },
                                {
                                    "url": f"http://127.0.0.1:{ports[4]}",
                                    "role": "decode",
                                    "kv_events": f"tcp://127.0.0.1:{ports[6]}",
                                },
                            ]
                        },
                    },
                },
            }
        )
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    env = server_environment(python)
    print("starting prefill and decode vLLM servers (about a minute on 2 cores)...", flush=True)
    with ExitStack() as stack:
        stack.enter_context(RuntimeServer("prefill", python, config, ports[0], env, work / "prefill.log", REPO))
        if stop.is_set():
            return 130
        stack.enter_context(RuntimeServer("decode", python, config, ports[4], env, work / "decode.log", REPO))
        if stop.is_set():
            return 130
        router = stack.enter_context(RouterProcess(Path(sys.executable), config, port, work / "router.log", REPO))
        print(
            f"\npdstack router: {router.url}  (logs in {work})\n\ntry:\n"
            f"  curl -s {router.url}/v1/chat/completions -H 'Content-Type: application/json' \\\n"
            '    -d \'{"model": "tiny", "messages": [{"role": "user", "content": "def hello():"}], '
            '"max_tokens": 16}\'\n'
            f"  curl -s {router.url}/metrics | grep pdstack_router_decisions\n\nCtrl-C stops everything.",
            flush=True,
        )
        while not stop.wait(1.0):
            pass
        print("\nstopping router, decode and prefill...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
