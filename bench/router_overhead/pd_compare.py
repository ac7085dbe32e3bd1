"""P/D routers side by side in one run, on the same fast fake prefill + decode pair: pdstack's router (this checkout
and any other checkouts named with ``--pdstack NAME=DIR``, so a change is measured before/after in the same run),
vllm-router and SMG (started exactly as the routing benchmark starts them: bench/systems/system.py).

Every router runs at once, pinned to CPU 0 (idle but for its own health polls while another is measured); the fake
engines and this client share CPU 1. Three measurements, two legs, not streamed:
- added latency p50/p99 over a client that runs both legs itself: samples interleaved across all targets (direct,
  router A, router B, ..., direct, ...) so the machine's drift hits all alike;
- most requests per second on one core (32 concurrent clients) and the router's CPU (user + system, from the kernel)
  per request over that window, in rounds that rotate the routers' order (the median pass is kept);
- the same CPU per request with unique ~1.5k-token prompts (tokenization, block hashing, index updates).
Absolute times are not comparable between runs on a shared machine; ratios to vllm-router within a run are."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.systems.system import Smg, System, VllmRouter
from bench.systems.topology import EngineAddress, Topology
from bench.workloads.generators import words
from bench.workloads.vocabulary import write_tokenizer
from testbed.percentile import percentile
from testbed.ports import free_ports
from testbed.process import ProcessGroup

REPO = Path(__file__).resolve().parents[2]
BLOCK_SIZE = 16
SHORT_PROMPT = "def route(request):\n    return pick(request)\n" * 20
LONG_PROMPT_TOKENS = 1500
REFERENCE = "vllm-router (round_robin)"
BARE_PD = "bare aiohttp P/D proxy (two legs, nothing else)"
"""The floor of pdstack's HTTP stack (aiohttp on uvloop, one server exchange and two client exchanges)."""
PREFILL_PARAMS = {
    "do_remote_decode": True,
    "do_remote_prefill": False,
    "remote_engine_id": None,
    "remote_block_ids": None,
    "remote_host": None,
    "remote_port": None,
}


@dataclass
class Target:
    label: str
    url: str
    process: ProcessGroup


def short_body() -> dict[str, Any]:
    return {"model": "tiny", "prompt": SHORT_PROMPT, "max_tokens": 8, "stream": False}


def long_bodies(count: int) -> list[bytes]:
    rng = random.Random(14)
    return [
        json.dumps(
            {"model": "tiny", "prompt": words(rng, LONG_PROMPT_TOKENS), "max_tokens": 8, "stream": False}
        ).encode()
        for _ in range(count)
    ]


async def post(session: aiohttp.ClientSession, url: str, payload: bytes) -> bytes:
    async with session.post(
        url + "/v1/completions", data=payload, headers={"Content-Type": "application/json"}
    ) as response:
        answer = await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}: {answer[:200]!r}")
        return answer


async def direct_two_legs(session: aiohttp.ClientSession, prefill: str, decode: str, doc: dict[str, Any]) -> None:
    """What a P/D router does, done by the client in its simplest form (the floor every router is compared with)."""
    first = json.loads(
        await post(
            session, prefill, json.dumps({**doc, "max_tokens": 1, "kv_transfer_params": PREFILL_PARAMS}).encode()
        )
    )
    await post(session, decode, json.dumps({**doc, "kv_transfer_params": first["kv_transfer_params"]}).encode())


async def latency(targets: list[Target], prefill: str, decode: str, samples: int) -> dict[str, dict[str, float]]:
    doc = short_body()
    payload = json.dumps(doc).encode()
    base: list[float] = []
    through: dict[str, list[float]] = {t.label: [] for t in targets}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for round_ in range(samples + 20):
            began = time.perf_counter()
            await direct_two_legs(session, prefill, decode, doc)
            direct = time.perf_counter() - began
            order = targets[round_ % len(targets) :] + targets[: round_ % len(targets)]
            for target in order:
                began = time.perf_counter()
                await post(session, target.url, payload)
                if round_ >= 20:
                    through[target.label].append(time.perf_counter() - began)
            if round_ >= 20:
                base.append(direct)
    ms = 1000.0
    out = {
        "direct (client runs both legs)": {"p50_ms": percentile(base, 0.5) * ms, "p99_ms": percentile(base, 0.99) * ms}
    }
    for label, values in through.items():
        added = [b - a for a, b in zip(base, values, strict=True)]
        out[label] = {
            "p50_ms": percentile(values, 0.5) * ms,
            "added_p50_ms": percentile(added, 0.5) * ms,
            "added_p99_ms": percentile(added, 0.99) * ms,
        }
    return out


async def saturate(target: Target, payloads: list[bytes], concurrency: int, seconds: float) -> dict[str, float]:
    """Requests per second with the router's core saturated, and the router's CPU per request over that window."""
    done = 0

    async def worker(session: aiohttp.ClientSession, offset: int, deadline: float) -> None:
        nonlocal done
        i = offset
        while time.monotonic() < deadline:
            await post(session, target.url, payloads[i % len(payloads)])
            i += concurrency
            done += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        warm = time.monotonic() + 1.0
        await asyncio.gather(*(worker(session, i, warm) for i in range(concurrency)))
        done = 0
        cpu, began = target.process.cpu_seconds(), time.monotonic()
        await asyncio.gather(*(worker(session, i, began + seconds) for i in range(concurrency)))
        cpu, wall = target.process.cpu_seconds() - cpu, time.monotonic() - began
    return {"max_rps": done / wall, "cpu_ms_per_req": cpu * 1000.0 / max(done, 1), "requests": done}


def median_pass(passes: list[dict[str, float]]) -> dict[str, Any]:
    """The pass with the median CPU per request, and every pass's CPU per request (the spread)."""
    ordered = sorted(passes, key=lambda p: p["cpu_ms_per_req"])
    return {**ordered[len(ordered) // 2], "cpu_ms_per_req_passes": [p["cpu_ms_per_req"] for p in passes]}


def pdstack_argv(
    checkout: Path, topology: Topology, port: int, work: Path, name: str, tokenizer: bool = True
) -> list[str]:
    """``tokenizer=False``: the model directory has no tokenizer, so the router cuts character blocks (what
    tokenizing costs, measured)."""
    config = work / f"pd-compare-{name}.yaml"
    source = topology.tokenizer if tokenizer else work / "no-tokenizer"
    source.mkdir(parents=True, exist_ok=True)
    config.write_text(
        yaml.safe_dump(
            {
                "serving": {
                    "model": {"source": str(source), "served_name": topology.model, "block_size": BLOCK_SIZE},
                    "router": {
                        "host": "127.0.0.1",
                        "port": port,
                        "metrics_port": None,
                        "pd_threshold_tokens": 0,
                        "discovery": {"static": [{"url": e.url, "role": e.role} for e in topology.engines]},
                    },
                }
            }
        )
    )
    return [sys.executable, "-m", "runtime", "router", "--config", str(config)]


def start_targets(
    topology: Topology, pdstacks: dict[str, Path], work: Path, untokenized: tuple[str, ...] = ()
) -> list[Target]:
    targets: list[Target] = []
    peers: list[System] = [
        VllmRouter("vllm-router", "round_robin"),
        VllmRouter("vllm-router", "cache_aware"),
        Smg("smg", "round_robin"),
    ]
    runs = [(name, checkout, True) for name, checkout in pdstacks.items()]
    runs += [(name, pdstacks[name], False) for name in untokenized]
    try:
        for name, checkout, tokenizer in runs:
            (port,) = free_ports(1)
            env = {**os.environ, "PYTHONPATH": str(checkout)}
            label = name if tokenizer else f"{name}, no tokenizer"
            argv = pdstack_argv(checkout, topology, port, work, label.replace(" ", "-").replace(",", ""), tokenizer)
            process = ProcessGroup(argv, work / f"pd-{label.replace(' ', '-')}.log", 0, env=env, cwd=checkout)
            targets.append(Target(f"pdstack ({label})", f"http://127.0.0.1:{port}", process))
            process.wait_http(targets[-1].url + "/ready")
        (port,) = free_ports(1)
        prefill, decode = (next(e.url for e in topology.engines if e.role == role) for role in ("prefill", "decode"))
        process = ProcessGroup(
            [sys.executable, "-m", "bench.router_overhead.minimal_proxies", "aiohttp-pd", str(port), prefill, decode],
            work / "pd-bare-aiohttp.log",
            0,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=REPO,
        )
        targets.append(Target(BARE_PD, f"http://127.0.0.1:{port}", process))
        for system in peers:
            if (why := system.unavailable()) is not None:
                print(f"skipped {system.label}: {why}", flush=True)
                continue
            port, metrics_port = free_ports(2)
            process = ProcessGroup(
                system.argv(topology, port, metrics_port, work),
                work / f"pd-{system.name}-{system.policy}.log",
                0,
                cwd=REPO,
            )
            url = f"http://127.0.0.1:{port}"
            targets.append(Target(system.label, url, process))
            process.wait_http(url + system.ready_path, timeout_s=90)
            system.register(url, topology)
    except BaseException:
        for target in targets:
            target.process.stop()
        raise
    return targets


async def warm(targets: list[Target], payload: bytes) -> None:
    async with aiohttp.ClientSession() as session:
        for target in targets:
            deadline = time.monotonic() + 30
            while True:
                try:
                    await post(session, target.url, payload)
                    break
                except (aiohttp.ClientError, RuntimeError):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.3)


def profiler(target: Target, seconds: float, out: Path) -> ProcessGroup | None:
    """py-spy (bench/requirements.txt) sampling the router while it is saturated, on the client's core; speedscope."""
    spy = Path(sys.executable).parent / "py-spy"
    spy = spy if spy.exists() else Path(shutil.which("py-spy") or "py-spy")
    if not spy.exists():
        print("no py-spy: no profile", flush=True)
        return None
    return ProcessGroup(
        [
            str(spy),
            "record",
            "--pid",
            str(target.process.pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "250",
            "--nonblocking",
            "--format",
            "speedscope",
            "-o",
            str(out),
        ],
        REPO / "bench" / ".work" / out.with_suffix(".log").name,
        1,
    )


async def compare(
    prefill_port: int,
    decode_port: int,
    pdstacks: dict[str, Path],
    work: Path,
    samples: int,
    concurrency: int,
    seconds: float,
    profile_dir: Path | None = None,
    profiled: tuple[str, ...] = ("this checkout",),
    rounds: int = 3,
    untokenized: tuple[str, ...] = (),
) -> dict[str, Any]:
    prefill, decode = f"http://127.0.0.1:{prefill_port}", f"http://127.0.0.1:{decode_port}"
    topology = Topology(
        [EngineAddress("prefill-0", "prefill", prefill, ""), EngineAddress("decode-0", "decode", decode, "")],
        write_tokenizer(work / "tokenizer"),
        BLOCK_SIZE,
    )
    targets = start_targets(topology, pdstacks, work, untokenized)
    try:
        short = [json.dumps(short_body()).encode()]
        await warm(targets, short[0])
        rows: dict[str, dict[str, Any]] = {
            label: dict(cells) for label, cells in (await latency(targets, prefill, decode, samples)).items()
        }
        long = long_bodies(400)
        passes: dict[str, dict[str, list[dict[str, float]]]] = {
            t.label: {"short": [], "long_1500": []} for t in targets
        }
        for round_ in range(rounds):  # rounds rotate the order, so drift over the run hits every router alike
            for target in targets[round_ % len(targets) :] + targets[: round_ % len(targets)]:
                for kind, payloads in (("short", short), ("long_1500", long)):
                    passes[target.label][kind].append(await saturate(target, payloads, concurrency, seconds))
        for target in targets:
            for kind in ("short", "long_1500"):
                rows[target.label][kind] = median_pass(passes[target.label][kind])
            print(json.dumps({target.label: rows[target.label]}), flush=True)
        if profile_dir is not None:
            for target in targets:
                if target.label.removeprefix("pdstack (").removesuffix(")") not in profiled:
                    continue
                for kind, payloads in (("short", short), ("long_1500", long)):
                    # passes of their own, not recorded: the sampler's cost must not bias the numbers above
                    name = target.label.removeprefix("pdstack (").removesuffix(")").replace(" ", "_")
                    spy = profiler(target, seconds, profile_dir / f"router_profile_{name}_{kind}.speedscope.json")
                    await saturate(target, payloads, concurrency, seconds)
                    if spy is not None:
                        spy.process.wait(30)
    finally:
        for target in targets:
            target.process.stop()
    return {"reference": REFERENCE, "rows": rows, "ratios": ratios(rows)}


def ratios(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each router's numbers over vllm-router round_robin's in this run (the issue's goals are stated so)."""
    ref = rows.get(REFERENCE)
    if ref is None:
        return {}
    out = {}
    for label, row in rows.items():
        if "short" not in row:
            continue
        out[label] = {
            "added_p50": row["added_p50_ms"] / ref["added_p50_ms"],
            "added_p99": row["added_p99_ms"] / ref["added_p99_ms"],
            "cpu_per_req": row["short"]["cpu_ms_per_req"] / ref["short"]["cpu_ms_per_req"],
            "max_rps": row["short"]["max_rps"] / ref["short"]["max_rps"],
            "cpu_per_req_long_1500": row["long_1500"]["cpu_ms_per_req"] / ref["long_1500"]["cpu_ms_per_req"],
        }
    return out


def markdown(result: dict[str, Any]) -> list[str]:
    lines = [
        "## P/D routers side by side (two legs, not streamed; one run)",
        "",
        (
            f"Ratios are to {result['reference']} in the same run (goals of issue 14: CPU/req <= 1.5x, added p50 "
            "<= 2x, CPU/req on 1.5k-token prompts <= 1.5x)."
        ),
        "",
        (
            "| target | added p50 ms | added p99 ms | CPU ms/req | max rps (1 core) | CPU ms/req, 1.5k-token prompts |"
            " x added p50 | x CPU/req | x rps | x CPU/req 1.5k |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, row in result["rows"].items():
        if "short" not in row:
            lines.append(f"| {label} | - | - | - | - | - | - | - | - | - |")
            continue
        r = result["ratios"].get(label, {})

        def x(key: str) -> str:
            return f"{r[key]:.2f}" if key in r else "-"

        lines.append(
            f"| {label} | {row['added_p50_ms']:.3f} | {row['added_p99_ms']:.3f} | "
            f"{row['short']['cpu_ms_per_req']:.3f} | {row['short']['max_rps']:.0f} | "
            f"{row['long_1500']['cpu_ms_per_req']:.3f} | {x('added_p50')} | {x('cpu_per_req')} | "
            f"{x('max_rps')} | {x('cpu_per_req_long_1500')} |"
        )
    return lines
