"""Prompts for trace requests: equal hash ids give equal token blocks, different ids give different blocks.

A block is words of the bench vocabulary (one token per word, bench/workloads/vocabulary.py), so a prompt of
``input_length`` words is ``input_length`` tokens for the simulated engines and every router. Block ``id`` opens with
its id written in base ``VOCABULARY_SIZE`` in ``ID_WORDS`` words (so two different ids differ in their first engine
block, whatever the rest), then pseudo-random words seeded by the id. A request's last block is cut to the tokens its
``input_length`` leaves (Mooncake's last id covers a partial block); a partial block shorter than ``ID_WORDS`` may
equal another id's, and vLLM never caches a partial block, so no cache hit depends on it.
"""

from __future__ import annotations

import random
from functools import lru_cache

from bench.replay.trace import TraceRequest
from bench.workloads.generators import completion
from bench.workloads.request import BenchRequest
from bench.workloads.vocabulary import VOCABULARY_SIZE, word

ID_WORDS = 3
MAX_ID = VOCABULARY_SIZE**ID_WORDS - 1


@lru_cache(maxsize=4096)
def block_tokens(hash_id: int, block_size: int) -> tuple[int, ...]:
    """The word indices of block ``hash_id`` (``block_size`` of them)."""
    if not 0 <= hash_id <= MAX_ID:
        raise ValueError(f"hash id {hash_id} is outside 0..{MAX_ID}")
    head = []
    rest = hash_id
    for _ in range(ID_WORDS):
        rest, digit = divmod(rest, VOCABULARY_SIZE)
        head.append(digit)
    rng = random.Random(hash_id * 7919 + block_size)
    return tuple(head + [rng.randrange(VOCABULARY_SIZE) for _ in range(block_size - ID_WORDS)])


def prompt_tokens(request: TraceRequest, block_size: int) -> list[int]:
    """The request's ``input_length`` word indices, block by block."""
    out: list[int] = []
    for hash_id in request.hash_ids:
        out.extend(block_tokens(hash_id, block_size))
    del out[request.input_length :]
    return out


def prompt_text(request: TraceRequest, block_size: int) -> str:
    return " ".join(word(index) for index in prompt_tokens(request, block_size))


def bench_request(request: TraceRequest, at_s: float, block_size: int) -> BenchRequest:
    """A streamed completions request sent ``at_s`` seconds after the replay starts, asking for exactly the trace's
    output length (the simulated engines always generate ``max_tokens``; at least one, as vLLM requires)."""
    return completion(at_s, prompt_text(request, block_size), max(1, request.output_length))
