"""Each router's added latency on the REAL CPU test bed: a vLLM prefill and decode (tiny local model, NIXL over UCX)
started through ``python -m runtime``, measured against a client that runs the two legs itself.

Requests are interleaved round by round (direct, pdstack, vllm-router, in a rotating order) so that the machine's
drift hits every system alike; the added latency is each router's time minus the direct time of the same round.
Two cores hold both engines, so single numbers are noisy (vLLM busy-loops after each step): read the medians and
the spread, never one sample. Every routed request must have been pulled by decode (its external-transfer
counter grows by the prompt length); the run fails otherwise. Results: bench/results/<date>-real-pair.{json,md}.

Run (holds the machine's vLLM lock): ``make bench-real-pair``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import urllib.request
from contextlib import ExitStack
from importlib import metadata
from pathlib import Path
from typing import Any

from testbed.cpu_pair import REPO, VLLM_VENV, WORK, make_tiny_model, server_environment, write_pair_deployment
from testbed.percentile import percentile
from testbed.ports import free_ports
from testbed.process import ProcessGroup
from testbed.router_process import RouterProcess
from testbed.runtime_server import RuntimeServer
from testbed.scrape import sample_total

RESULTS = REPO / "bench" / "results"
PROMPT = "def route(request, engines):\n    scores = [score(e, request) for e in engines]\n" * 6


def post(url: str, body: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def external_tokens(decode_url: str) -> float:
    return sample_total(decode_url, "vllm:prompt_tokens_by_source_total", source="external_kv_transfer")


def direct_two_legs(prefill: str, decode: str, body: dict[str, Any]) -> dict[str, Any]:
    """What a router does, done by the client: the protocol in its simplest form."""
    first = post(
        f"{prefill}/v1/completions",
        {
            **body,
            "max_tokens": 1,
            "stream": False,
            "kv_transfer_params": {
                "do_remote_decode": True,
                "do_remote_prefill": False,
                "remote_engine_id": None,
                "remote_block_ids": None,
                "remote_host": None,
                "remote_port": None,
            },
        },
    )
    return post(f"{decode}/v1/completions", {**body, "kv_transfer_params": first["kv_transfer_params"]})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    python = VLLM_VENV / "bin" / "python"
    work = WORK.parent / "real-pair"
    work.mkdir(parents=True, exist_ok=True)
    model = make_tiny_model(python)
    ports = free_ports(12)
    prefill_url, decode_url = f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[4]}"
    config = write_pair_deployment("real-pair", work, model, ports)
    env = server_environment(python)
    bench_bin = Path(sys.executable).parent
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 16, "temperature": 0.0}
    with ExitStack() as stack:
        stack.enter_context(RuntimeServer("prefill", python, config, ports[0], env, work / "prefill.log", REPO))
        stack.enter_context(RuntimeServer("decode", python, config, ports[4], env, work / "decode.log", REPO))
        pdstack = stack.enter_context(RouterProcess(Path(sys.executable), config, ports[8], work / "pdstack.log", REPO))
        vllm_router = ProcessGroup(
            [
                str(bench_bin / "vllm-router"),
                "--vllm-pd-disaggregation",
                "--kv-connector",
                "nixl",
                "--prefill",
                prefill_url,
                "--decode",
                decode_url,
                "--policy",
                "round_robin",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports[9]),
                "--prometheus-port",
                str(ports[10]),
            ],
            work / "vllm-router.log",
            cpu=None,
            env={**os.environ},
            cwd=REPO,
        )
        stack.callback(vllm_router.stop)
        vllm_router.wait_http(f"http://127.0.0.1:{ports[9]}/readiness", 60.0)
        systems = {
            "direct (client runs both legs)": lambda: direct_two_legs(prefill_url, decode_url, body),
            "pdstack router": lambda: post(f"{pdstack.url}/v1/completions", body),
            "vllm-router round_robin": lambda: post(f"http://127.0.0.1:{ports[9]}/v1/completions", body),
        }
        expected = systems["direct (client runs both legs)"]()["choices"][0]["text"]  # warm-up, and the answer
        samples: dict[str, list[float]] = {name: [] for name in systems}
        names = list(systems)
        for round_ in range(args.rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                pulled_before = external_tokens(decode_url)
                began = time.perf_counter()
                answer = systems[name]()
                samples[name].append((time.perf_counter() - began) * 1000)
                if answer["choices"][0]["text"] != expected:
                    raise SystemExit(f"{name}: answer differs from the direct run")
                if external_tokens(decode_url) <= pulled_before:
                    raise SystemExit(f"{name}: decode did not pull the prompt's KV (it recomputed)")
    direct = samples["direct (client runs both legs)"]
    rows = []
    for name, values in samples.items():
        added = [v - d for v, d in zip(values, direct, strict=True)]
        rows.append(
            {
                "system": name,
                "rounds": len(values),
                "e2e_p50_ms": round(percentile(values, 0.5), 1),
                "e2e_p90_ms": round(percentile(values, 0.9), 1),
                "added_p50_ms": None if values is direct else round(percentile(added, 0.5), 2),
                "added_p90_ms": None if values is direct else round(percentile(added, 0.9), 2),
            }
        )
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "vllm-router": metadata.version("vllm-router"),
        "prompt_tokens": "about 190",
        "max_tokens": 16,
        "every routed request pulled": True,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"{meta['date']}-real-pair"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        "# Router added latency on the real CPU test bed (vLLM prefill + decode, NIXL over UCX)",
        "",
        f"{meta}",
        "",
        "| system | rounds | e2e p50 ms | e2e p90 ms | added p50 ms | added p90 ms |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['system']} | {r['rounds']} | {r['e2e_p50_ms']} | {r['e2e_p90_ms']} | "
        f"{'-' if r['added_p50_ms'] is None else r['added_p50_ms']} | "
        f"{'-' if r['added_p90_ms'] is None else r['added_p90_ms']} |"
        for r in rows
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
