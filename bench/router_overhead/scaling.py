"""How the router's own cost grows with the number of engines and with prompt length, measured in-process (no HTTP):
the request path's prompt work (tokenizing with the bench model's tokenizer, cutting and hashing blocks), the prefix
index's match and the scheduler's plan, over a cluster of N simulated engines whose prefix index is filled by
synthetic KV events (BlockStored, through the router's own KvEventIndexer), as precise mode fills it.

- CPU per request (process time, median of repeats) for N in ENGINES and prompt lengths in PROMPT_TOKENS; half the
  requests start with a prefix some engines hold (so the match walks), half are new. As many requests as there are
  engines are in flight (their blocks pending, which the plan's scan of pending prefixes walks); the oldest ends
  as each new one is planned.
- A chat request's template rendering (jinja2) against tokenizing what it rendered.
- The prefix index's memory (tracemalloc: the index plus every engine's hash map) for each N, with every engine
  holding FILL_BLOCKS blocks, and the same per learned request in approximate mode for each prompt length.
HTTP is not in these numbers: on top of them comes the stack's constant per request (bench/results/router_overhead.md,
"bare aiohttp P/D proxy"). Results: bench/results/router_scaling.{json,png}.
Run: python -m bench.router_overhead.scaling
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import time
import tracemalloc
from collections import deque
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from bench.workloads.vocabulary import SPECIAL, VOCABULARY_SIZE, word, write_tokenizer
from runtime.roles import DECODE, PREFILL
from runtime.router.config import RouterConfig
from runtime.router.engines.engine import Engine
from runtime.router.prefix_cache.kv_event_decoding import BlockStored
from runtime.router.prefix_cache.kv_event_indexer import KvEventIndexer
from runtime.router.prefix_cache.prefix_index import PrefixIndex
from runtime.router.prefix_cache.prompt_blocks import token_blocks
from runtime.router.requests.openai_request import OpenAiRequest
from runtime.router.requests.prompt_reader import PromptReader
from runtime.router.requests.prompt_tokenizer import PromptTokenizer
from runtime.router.scheduling.context import RoutingPlan, SchedulingContext
from runtime.router.scheduling.scheduler import Scheduler

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
BLOCK_SIZE = 16
ENGINES = (8, 32, 128)
PROMPT_TOKENS = (256, 1024, 4096, 16384)
FILL_BLOCKS = 4096
"""Blocks each engine holds when the index's memory is measured (64k tokens of 16: a small KV cache)."""
SHARED_PREFIXES = 64
"""Distinct shared prefixes (system prompts, documents) spread over the engines."""


def engines(count: int) -> list[Engine]:
    """Half prefill, half decode (at least one of each)."""
    prefills = max(1, count // 2)
    return [
        Engine(url=f"http://10.0.{i // 250}.{i % 250}:8000", role=PREFILL if i < prefills else DECODE)
        for i in range(count)
    ]


def tokens(rng: random.Random, count: int) -> list[int]:
    """Token ids of the bench tokenizer (word i is id i + len(SPECIAL))."""
    return [len(SPECIAL) + rng.randrange(VOCABULARY_SIZE) for _ in range(count)]


def text(ids: list[int]) -> str:
    return " ".join(word(token - len(SPECIAL)) for token in ids)


def fill(
    index: PrefixIndex, cluster: list[Engine], prefixes: list[list[int]], blocks_each: int, rng: random.Random
) -> list[KvEventIndexer]:
    """Every engine stores ``blocks_each`` blocks: some shared prefixes, then sequences of its own, as KV events."""
    indexers = []
    for n, engine in enumerate(cluster):
        indexer = KvEventIndexer(engine.url, index, BLOCK_SIZE, capacity=10 * blocks_each)
        stored = 0
        sequence = 0
        while stored < blocks_each:
            head = prefixes[(n + sequence) % len(prefixes)] if sequence % 2 == 0 else []
            ids = head + tokens(rng, 1024)
            ids = ids[: (blocks_each - stored) * BLOCK_SIZE]
            hashes: list[Hashable] = [
                rng.getrandbits(63) for _ in range(len(ids) // BLOCK_SIZE)
            ]  # vLLM's are 64-bit ints
            indexer.apply(BlockStored(hashes, None, ids, BLOCK_SIZE))
            stored += len(hashes)
            sequence += 1
        indexers.append(indexer)
    return indexers


def index_bytes(cluster_size: int, prefixes: list[list[int]]) -> tuple[int, int]:
    """(bytes, blocks) of the index and the engines' hash maps with every engine holding FILL_BLOCKS blocks."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index = PrefixIndex(RouterConfig().index_capacity_blocks)
    indexers = fill(index, engines(cluster_size), prefixes, FILL_BLOCKS, random.Random(cluster_size))
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert indexers
    return used, len(index)


def per_request(
    reader: PromptReader, scheduler: Scheduler, index: PrefixIndex, cluster: list[Engine], bodies: list[bytes]
) -> dict[str, float]:
    """Median process-time per request of each step, in ms."""
    steps: dict[str, list[float]] = {"tokenize": [], "blocks": [], "match": [], "plan": []}
    held = []
    in_flight: deque[RoutingPlan] = deque()
    clock = time.process_time
    for repeat in range(3):
        sums = dict.fromkeys(steps, 0.0)
        for i, raw in enumerate(bodies):
            api = OpenAiRequest.parse("completions", raw)
            t0 = clock()
            ids = reader.tokenizer.tokens(api)  # type: ignore[union-attr]
            t1 = clock()
            blocks = token_blocks(ids, BLOCK_SIZE)
            t2 = clock()
            matches = index.match(blocks.keys)
            t3 = clock()
            held.append(max(matches.values(), default=0))
            in_flight.append(
                scheduler.plan(SchedulingContext(f"r{repeat}-{i}", blocks, prefix_matches=matches), cluster)
            )
            if len(in_flight) > len(cluster):
                scheduler.release(in_flight.popleft())
            t4 = clock()
            for step, took in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                sums[step] += took
        for step in steps:
            steps[step].append(sums[step] * 1000.0 / len(bodies))
    out: dict[str, float] = {step: statistics.median(values) for step, values in steps.items()}
    out["total"] = sum(out.values())
    out["best_held_blocks_mean"] = statistics.mean(held)
    return out


def learned_bytes(scheduler_index: PrefixIndex, prompt_tokens: int, requests: int) -> float:
    """Bytes the index grows by per request learned in approximate mode (decode and prefill each add the keys)."""
    rng = random.Random(prompt_tokens)
    keys = [token_blocks(tokens(rng, prompt_tokens), BLOCK_SIZE).keys for _ in range(requests)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n, request_keys in enumerate(keys):
        scheduler_index.add(f"http://decode-{n % 8}", request_keys)
        scheduler_index.add(f"http://prefill-{n % 8}", request_keys)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / requests


def chat_cost(tokenizer: PromptTokenizer, requests: int) -> list[dict[str, float]]:
    """A chat request's prompt work split: rendering the chat template (jinja2) and tokenizing what it rendered, for
    eight messages of ``length / 8`` words each."""
    rng = random.Random(15)
    rows = []
    for length in PROMPT_TOKENS:
        apis = [
            OpenAiRequest.parse(
                "chat",
                json.dumps(
                    {
                        "model": "tiny",
                        "messages": [
                            {"role": "user" if m % 2 == 0 else "assistant", "content": text(tokens(rng, length // 8))}
                            for m in range(8)
                        ],
                    }
                ).encode(),
            )
            for _ in range(requests)
        ]
        render, tokenize = [], []
        for _ in range(3):
            t0 = time.process_time()
            rendered = [tokenizer.render_chat(api) for api in apis]
            t1 = time.process_time()
            for prompt in rendered:
                tokenizer._ids(prompt, add_special_tokens=False)
            t2 = time.process_time()
            render.append((t1 - t0) * 1000.0 / requests)
            tokenize.append((t2 - t1) * 1000.0 / requests)
        rows.append(
            {
                "prompt_tokens": length,
                "render_ms": statistics.median(render),
                "tokenize_ms": statistics.median(tokenize),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def measure(requests: int) -> dict[str, Any]:
    work = REPO / "bench" / ".work"
    tokenizer = PromptTokenizer(write_tokenizer(work / "tokenizer"))
    reader = PromptReader(BLOCK_SIZE, tokenizer)
    rng = random.Random(14)
    prefixes = [tokens(rng, 2048) for _ in range(SHARED_PREFIXES)]
    rows: list[dict[str, Any]] = []
    for count in ENGINES:
        cluster = engines(count)
        index = PrefixIndex(RouterConfig().index_capacity_blocks)
        fill(index, cluster, prefixes, FILL_BLOCKS, random.Random(count))
        scheduler = Scheduler.from_config(RouterConfig(pd_threshold_tokens=0), index)
        for length in PROMPT_TOKENS:
            bodies = []
            for i in range(requests):
                head = prefixes[i % len(prefixes)][: length // 2] if i % 2 == 0 else []
                ids = head + tokens(rng, length - len(head))
                bodies.append(json.dumps({"model": "tiny", "prompt": text(ids), "max_tokens": 8}).encode())
            row = {
                "engines": count,
                "prompt_tokens": length,
                "index_blocks": len(index),
                "cpu_ms": per_request(reader, scheduler, index, cluster, bodies),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    memory = []
    for count in ENGINES:
        used, blocks = index_bytes(count, prefixes)
        memory.append(
            {
                "engines": count,
                "blocks_per_engine": FILL_BLOCKS,
                "index_keys": blocks,
                "bytes": used,
                "bytes_per_engine_block": used / (count * FILL_BLOCKS),
            }
        )
        print(json.dumps(memory[-1]), flush=True)
    learned = [
        {"prompt_tokens": length, "bytes_per_request": learned_bytes(PrefixIndex(10_000_000), length, 200)}
        for length in PROMPT_TOKENS
    ]
    return {
        "meta": {
            "date": time.strftime("%Y-%m-%d"),
            "python": platform.python_version(),
            "block_size": BLOCK_SIZE,
            "requests_per_point": requests,
            "fill_blocks_per_engine": FILL_BLOCKS,
            "note": "in-process (no HTTP): tokenize + blocks + prefix match + scheduler plan; index filled by "
            "synthetic KV events through KvEventIndexer; memory by tracemalloc",
        },
        "cpu": rows,
        "memory": memory,
        "learned": learned,
        "chat": chat_cost(tokenizer, requests),
    }


def plot(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cpu_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for count in ENGINES:
        points = [row for row in result["cpu"] if row["engines"] == count]
        lengths = [row["prompt_tokens"] for row in points]
        cpu_axis.plot(lengths, [row["cpu_ms"]["total"] for row in points], marker="o", label=f"{count} engines")
        if count == ENGINES[-1]:
            for step, style in (("tokenize", ":"), ("match", "--"), ("plan", "-.")):
                cpu_axis.plot(
                    lengths,
                    [row["cpu_ms"][step] for row in points],
                    linestyle=style,
                    color="grey",
                    label=f"{step} ({count} engines)",
                )
    cpu_axis.set(
        xscale="log",
        yscale="log",
        xlabel="prompt tokens",
        ylabel="router CPU ms per request (no HTTP)",
        title="Prompt work + match + plan",
    )
    cpu_axis.legend(fontsize=7)
    memory = result["memory"]
    memory_axis.plot([m["engines"] for m in memory], [m["bytes"] / 2**20 for m in memory], marker="o")
    memory_axis.set(
        xscale="log", xlabel="engines", ylabel="MiB", title=f"Prefix index, {FILL_BLOCKS} blocks held per engine"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200, help="requests per (engines, prompt length) point")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for router_scaling.{json,png}")
    args = parser.parse_args()
    result = measure(args.requests)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "router_scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "router_scaling.png")


if __name__ == "__main__":
    main()
