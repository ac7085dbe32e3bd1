"""Router overhead on loopback against fast fake engines: added latency (p50/p99) over calling the engine directly,
and the most requests per second on one core, streaming and not; the same for bare pass-through proxies of two HTTP
stacks (aiohttp; starlette + uvicorn + httpx) to show what each stack costs.

First, P/D routers side by side (bench/router_overhead/pd_compare.py): pdstack against vllm-router and SMG, with
ratios to vllm-router. Then every proxy runs pinned to CPU 0; the fake engines and this load generator share CPU 1.
Latency samples are taken interleaved (direct, proxied, direct, ...) so drift hits both alike. Results:
bench/results/router_overhead.{json,md}. Run with the vLLM test venv (it carries starlette, uvicorn, httpx):
``.venv-vllm/bin/python -m bench.router_overhead.run``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.router_overhead.pd_compare import compare, markdown
from testbed.percentile import percentile
from testbed.ports import free_ports
from testbed.process import ProcessGroup

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
WORK = REPO / "bench" / ".work"


def start(argv: list[str], cpu: int, log: Path) -> ProcessGroup:
    return ProcessGroup(argv, log, cpu, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)


async def wait_ready(url: str, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.post(
                    url + "/v1/completions", json={"model": "tiny", "prompt": "x", "max_tokens": 1}
                ) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} not ready")


def body(stream: bool) -> bytes:
    return json.dumps(
        {
            "model": "tiny",
            "prompt": "def route(request):\n    return pick(request)\n" * 20,
            "max_tokens": 8,
            "stream": stream,
        }
    ).encode()


async def one(session: aiohttp.ClientSession, url: str, payload: bytes) -> float:
    began = time.perf_counter()
    async with session.post(
        url + "/v1/completions", data=payload, headers={"Content-Type": "application/json"}
    ) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status}")
    return time.perf_counter() - began


async def latency(direct: str, proxied: str, stream: bool, samples: int) -> dict[str, float]:
    payload = body(stream)
    base: list[float] = []
    through: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for _ in range(20):
            await one(session, direct, payload)
            await one(session, proxied, payload)
        for _ in range(samples):
            base.append(await one(session, direct, payload))
            through.append(await one(session, proxied, payload))
    added = [b - a for a, b in zip(base, through, strict=True)]
    ms = 1000.0
    return {
        "direct_p50_ms": percentile(base, 0.5) * ms,
        "proxied_p50_ms": percentile(through, 0.5) * ms,
        "added_p50_ms": percentile(added, 0.5) * ms,
        "added_p99_ms": percentile(added, 0.99) * ms,
        "proxied_p99_ms": percentile(through, 0.99) * ms,
        "direct_p99_ms": percentile(base, 0.99) * ms,
    }


async def throughput(url: str, stream: bool, concurrency: int, seconds: float) -> float:
    payload = body(stream)
    done = 0
    deadline = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await one(session, url, payload)
            done += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        began = time.monotonic()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return done / (time.monotonic() - began)


def router_config(decode: str, prefill: str, port: int, pd: bool) -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    config = WORK / f"router-{'pd' if pd else 'decode'}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "serving": {
                    "model": {"source": str(WORK / "no-model"), "served_name": "tiny", "block_size": 32},
                    "router": {
                        "host": "127.0.0.1",
                        "port": port,
                        "metrics_port": None,
                        "pd_threshold_tokens": 0 if pd else 1_000_000,
                        "discovery": {
                            "static": [{"url": prefill, "role": "prefill"}, {"url": decode, "role": "decode"}]
                        },
                    },
                }
            }
        )
    )
    return config


async def measure(name: str, url: str, direct: str, args: argparse.Namespace) -> dict[str, Any]:
    await wait_ready(url)
    row: dict[str, Any] = {"target": name}
    for stream in (False, True):
        kind = "stream" if stream else "whole"
        row[kind] = await latency(direct, url, stream, args.samples)
        row[kind]["max_rps"] = await throughput(url, stream, args.concurrency, args.seconds)
    print(json.dumps(row), flush=True)
    return row


def checkouts(specs: list[str]) -> dict[str, Path]:
    """This checkout, and each ``name=path`` given with --pdstack."""
    return {
        "this checkout": REPO,
        **{name: Path(path).resolve() for name, path in (spec.split("=", 1) for spec in specs)},
    }


async def main(args: argparse.Namespace) -> None:
    python = sys.executable
    prefill_port, decode_port = free_ports(2)
    prefill, decode = f"http://127.0.0.1:{prefill_port}", f"http://127.0.0.1:{decode_port}"
    WORK.mkdir(parents=True, exist_ok=True)
    engines = start(
        [python, "-m", "bench.router_overhead.fake_engines", str(prefill_port), str(decode_port)],
        1,
        WORK / "fake-engines.log",
    )
    rows: list[dict[str, Any]] = []
    pdstacks = checkouts(args.pdstack)
    try:
        await wait_ready(decode)
        await wait_ready(prefill)
        compared = await compare(
            prefill_port,
            decode_port,
            pdstacks,
            WORK,
            args.samples,
            args.concurrency,
            args.seconds,
            RESULTS if args.profile else None,
            tuple(args.profile),
            args.rounds,
            tuple(args.no_tokenizer),
        )
        if args.compare_only:
            write(rows, compared, args)
            return
        direct_row: dict[str, Any] = {"target": "direct (no proxy)"}
        for stream in (False, True):
            direct_row["stream" if stream else "whole"] = {
                "max_rps": await throughput(decode, stream, args.concurrency, args.seconds)
            }
        rows.append(direct_row)
        targets = [
            ("pdstack router, decode-only", [python, "-m", "runtime", "router", "--config"], False),
            ("pdstack router, P/D (2 legs)", [python, "-m", "runtime", "router", "--config"], True),
            ("bare aiohttp proxy", [python, "-m", "bench.router_overhead.minimal_proxies", "aiohttp"], None),
            (
                "bare starlette+uvicorn+httpx proxy",
                [python, "-m", "bench.router_overhead.minimal_proxies", "starlette"],
                None,
            ),
        ]
        for name, argv, pd in targets:
            (port,) = free_ports(1)
            if pd is None:
                argv = [*argv, str(port), decode]
            else:
                argv = [*argv, str(router_config(decode, prefill, port, pd))]
            process = start(argv, 0, WORK / f"{name.split(',')[0].replace(' ', '-')}.log")
            try:
                rows.append(await measure(name, f"http://127.0.0.1:{port}", decode, args))
            finally:
                process.stop()
    finally:
        engines.stop()
    write(rows, compared, args)


def write(rows: list[dict[str, Any]], pd: dict[str, Any], args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "samples": args.samples,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "note": "proxy pinned to CPU 0; fake engines and load generator share CPU 1; loopback",
    }
    (RESULTS / "router_overhead.json").write_text(
        json.dumps({"meta": meta, "pd_compare": pd, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        "# Router overhead (fake engines on loopback)",
        "",
        f"{meta}",
        "",
        *markdown(pd),
        "",
        "## Each router and bare proxy against the engine alone",
        "",
        "| target | mode | added p50 ms | added p99 ms | proxied p50 ms | max rps (1 core) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        for mode in ("whole", "stream"):
            cell = row.get(mode, {})

            def fmt(key: str) -> str:
                return f"{cell[key]:.2f}" if key in cell else "-"

            lines.append(
                f"| {row['target']} | {mode} | {fmt('added_p50_ms')} | {fmt('added_p99_ms')} | "
                f"{fmt('proxied_p50_ms')} | {cell.get('max_rps', 0):.0f} |"
            )
    (RESULTS / "router_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--pdstack",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="another pdstack checkout to run side by side (e.g. main before a change)",
    )
    parser.add_argument(
        "--profile",
        metavar="NAME",
        action="append",
        default=[],
        help="py-spy profiles of that pdstack's router under load "
        "into bench/results ('this checkout' or a --pdstack NAME)",
    )
    parser.add_argument(
        "--no-tokenizer",
        metavar="NAME",
        action="append",
        default=[],
        help="also run that pdstack without a tokenizer (character blocks): what tokenizing costs",
    )
    parser.add_argument("--rounds", type=int, default=3, help="saturation passes per router, order rotated")
    parser.add_argument("--compare-only", action="store_true", help="only the P/D routers side by side")
    asyncio.run(main(parser.parse_args()))
