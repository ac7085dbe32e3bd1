"""The oracle bound on the engine prefix-cache hit rate: the best any assignment of the workload's requests to
engines could do, computed offline.

With unlimited KV capacity and perfect placement every distinct full block is computed once and every later request
that starts with it hits it; vLLM computes at least the last prompt token of every request, and never caches a
partial block. So the bound is 1 - (tokens that must be computed) / (all prompt tokens), in the same units as the
measured rate (prompt tokens not computed locally by any engine: cache hits plus KV pulled). Real engines have finite
caches, so no router reaches it on workloads whose prefixes overflow the cluster; it is an upper bound, not a target.
"""

from __future__ import annotations

from collections.abc import Iterable

from bench.fake_engine.kv_cache import block_hashes
from bench.fake_engine.tokenizer import EngineTokenizer
from bench.workloads.request import BenchRequest


def oracle_hit_rate(requests: Iterable[BenchRequest], tokenizer: EngineTokenizer, block_size: int) -> float:
    """``tokenizer``: the engines' own (the prompt tokens they see), never the router's."""
    seen: set[int] = set()
    total = computed = 0
    for request in requests:
        tokens = tokenizer.tokens(request.endpoint == "chat", request.body)
        hashes = block_hashes(tokens, block_size)
        cap = (len(tokens) - 1) // block_size
        hit = 0
        for block in hashes[:cap]:
            if block not in seen:
                break
            hit += 1
        seen.update(hashes)
        total += len(tokens)
        computed += len(tokens) - hit * block_size
    return 1.0 - computed / total if total else 0.0
