"""The stale P/D pair (vllm-project/vllm issue #49238, smg-project/smg issue #2382) tried on the REAL CPU test bed:
a vLLM prefill and decode (tiny local model, NIXL over UCX) behind the router, under a steady stream of requests;
the prefill is restarted at the same address, then the decode. Per phase it counts what the clients got and what
decode did with the KV (pulled: its external-transfer prompt tokens; computed: local_compute; NIXL failures), and
the router's fallbacks and pair metrics.

Run it with this checkout's router, and with another checkout's (``--router-repo``, e.g. an export of the commit
before the stale-pair tracking) to compare. It holds nothing itself: run it inside ``flock /tmp/pdstack-vllm.lock``.
Results: bench/results/<date>-stale-pair-<label>.json (the .md is written by hand from them).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from testbed.cpu_pair import REPO, VLLM_VENV, WORK, make_tiny_model, server_environment, write_pair_deployment
from testbed.ports import free_ports
from testbed.process import ProcessFailedToStart
from testbed.router_process import RouterProcess
from testbed.runtime_server import RuntimeServer
from testbed.scrape import sample_total

RESULTS = REPO / "bench" / "results"
PROMPT = "def transfer(prefill, decode):\n    return decode.pull(prefill.blocks())\n" * 6
PACE_S = 1.0
ENGINE_COUNTERS = {
    "pulled_tokens": ("vllm:prompt_tokens_by_source_total", {"source": "external_kv_transfer"}),
    "computed_tokens": ("vllm:prompt_tokens_by_source_total", {"source": "local_compute"}),
    "nixl_failed_transfers": ("vllm:nixl_num_failed_transfers_total", {}),
}


class Load:
    """One client, requests back to back; counts per phase."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.phase = "warm"
        self.counts: dict[str, dict[str, int]] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(120)

    def _run(self) -> None:
        sent = 0
        while not self._stop.is_set():
            sent += 1  # a new prompt each time: decode's own prefix cache never holds it, every token is pulled
            body = json.dumps(
                {"model": "tiny", "prompt": f"# request {sent}\n{PROMPT}", "max_tokens": 8, "temperature": 0.0}
            ).encode()
            phase = self.phase
            counts = self.counts.setdefault(phase, {"ok": 0, "failed": 0})
            request = urllib.request.Request(
                self.url + "/v1/completions", data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    response.read()
                counts["ok"] += 1
            except urllib.error.HTTPError as error:
                counts["failed"] += 1
                self.errors.append(f"{phase}: HTTP {error.code} {error.read()[:150]!r}")
            except OSError as error:
                counts["failed"] += 1
                self.errors.append(f"{phase}: {error!r}")
            self._stop.wait(PACE_S)  # two cores: a client hammering decode would starve the restarting engine


def engine_numbers(url: str) -> dict[str, float]:
    try:
        return {name: sample_total(url, metric, **labels) for name, (metric, labels) in ENGINE_COUNTERS.items()}
    except OSError:
        return {}


def router_numbers(url: str) -> dict[str, float]:
    return {
        "fallbacks_decode_pull_failed": sample_total(
            url, "pdstack_router_fallbacks_total", reason="decode_pull_failed"
        ),
        "fallbacks_prefill_failed": sample_total(url, "pdstack_router_fallbacks_total", reason="prefill_failed"),
        "pair_pull_failures": sample_total(url, "pdstack_router_pd_pair_pull_failures_total"),
        "pair_stale": sample_total(url, "pdstack_router_pd_pair_stale"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", required=True, help="names the result file, e.g. with-fix, without-fix")
    parser.add_argument("--router-repo", type=Path, default=REPO, help="the checkout whose router runs")
    parser.add_argument("--phase-s", type=float, default=30.0, help="load after each restart")
    args = parser.parse_args()
    python = VLLM_VENV / "bin" / "python"
    work = WORK.parent / "stale-pair"
    work.mkdir(parents=True, exist_ok=True)
    model = make_tiny_model(python)
    ports = free_ports(12)
    decode_url = f"http://127.0.0.1:{ports[4]}"
    config = write_pair_deployment(
        "stale-pair",
        work,
        model,
        ports,
        health_interval_s=1.0,
        metrics_interval_s=1.0,
        timeouts={"first_token_s": 15.0},
    )
    env = server_environment(python)
    phases: list[dict[str, Any]] = []

    def snapshot(name: str, router: RouterProcess) -> None:
        phases.append(
            {
                "phase": name,
                "at_s": round(time.monotonic() - began, 1),
                "decode": engine_numbers(decode_url),
                "router": router_numbers(router.url),
            }
        )
        print(json.dumps(phases[-1]), flush=True)

    began = time.monotonic()
    with ExitStack() as stack:
        servers = {
            role: RuntimeServer(role, python, config, port, env, work / f"{role}.log", REPO, start_timeout_s=600.0)
            for role, port in (("prefill", ports[0]), ("decode", ports[4]))
        }
        for server in servers.values():
            server.start()
            stack.callback(server.stop)
        router = stack.enter_context(
            RouterProcess(Path(sys.executable), config, ports[8], work / f"router-{args.label}.log", args.router_repo)
        )
        load = Load(router.url)
        load.start()
        stack.callback(load.stop)
        time.sleep(args.phase_s)
        snapshot("warm", router)
        for role in ("prefill", "decode"):
            load.phase = f"{role} restarting"
            servers[role].stop()
            servers[role].log = work / f"{role}-restarted.log"
            try:
                servers[role].start()  # same address, same ports, a new process (a new NIXL agent)
            except ProcessFailedToStart as error:
                phases.append({"phase": f"{role} restart failed", "error": str(error)[:300]})
                break
            load.phase = f"after {role} restart"
            time.sleep(args.phase_s)
            snapshot(f"after {role} restart", router)
        load.stop()
    result = {
        "label": args.label,
        "router_repo": str(args.router_repo),
        "phase_s": args.phase_s,
        "requests": load.counts,
        "first_errors": load.errors[:10],
        "snapshots": phases,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{time.strftime('%Y-%m-%d')}-stale-pair-{args.label}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["requests"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
