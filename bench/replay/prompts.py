"""Prompts for trace requests: equal hash ids give equal token blocks, different ids give different blocks.

A block is words of the bench vocabulary (one token per word, bench/workloads/vocabulary.py), so a prompt of
``input_length`` words is ``input_length`` tokens for the simulated engines and every router. Hash ids are numbered
densely as a replay first sees them (so any non-negative integer id works, as in guidellm's reader); the block
numbered ``n`` opens with ``n`` written in base ``VOCABULARY_SIZE`` in ``ID_WORDS`` words (so two different ids
differ in their first engine block, whatever the rest), then pseudo-random words seeded by ``n``.
A request's last block is cut to the tokens its ``input_length`` leaves (Mooncake's last id covers a partial
block); a partial block shorter than ``ID_WORDS`` may equal another id's,
and vLLM never caches a partial block, so no cache hit depends on it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import overload

from bench.replay.trace import TraceRequest
from bench.workloads.generators import completion
from bench.workloads.request import BenchRequest
from bench.workloads.vocabulary import VOCABULARY_SIZE, word

ID_WORDS = 3
MAX_ID = VOCABULARY_SIZE**ID_WORDS - 1
"""The most distinct ids one replay can number (5.5e11: more than any trace held in memory)."""


@lru_cache(maxsize=4096)
def block_tokens(number: int, block_size: int) -> tuple[int, ...]:
    """The word indices of the block numbered ``number`` (``block_size`` of them)."""
    if not 0 <= number <= MAX_ID:
        raise ValueError(f"block number {number} is outside 0..{MAX_ID}")
    head = []
    rest = number
    for _ in range(ID_WORDS):
        rest, digit = divmod(rest, VOCABULARY_SIZE)
        head.append(digit)
    rng = random.Random(number * 7919 + block_size)
    return tuple(head + [rng.randrange(VOCABULARY_SIZE) for _ in range(block_size - ID_WORDS)])


class Prompts:
    """One replay's prompts: each hash id gets the next dense number the first time it is seen, so equal ids give
    equal blocks and different ids different ones, whatever their magnitude."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._numbers: dict[int, int] = {}

    def number(self, hash_id: int) -> int:
        return self._numbers.setdefault(hash_id, len(self._numbers))

    def tokens(self, request: TraceRequest) -> list[int]:
        """The request's ``input_length`` word indices, block by block."""
        out: list[int] = []
        for hash_id in request.hash_ids:
            out.extend(block_tokens(self.number(hash_id), self.block_size))
        del out[request.input_length :]
        return out

    def text(self, request: TraceRequest) -> str:
        return " ".join(word(index) for index in self.tokens(request))

    def bench_request(self, request: TraceRequest, at_s: float) -> BenchRequest:
        """A streamed completions request sent ``at_s`` seconds after the replay starts, asking for exactly the
        trace's output length (the simulated engines always generate ``max_tokens``; at least one, as vLLM
        requires)."""
        return completion(at_s, self.text(request), max(1, request.output_length))


class LazyPrompt(Sequence[int]):
    """A trace request's prompt tokens, built from its hash ids each time they are read: the planner holds every
    request of a trace, and only its ids stay in memory."""

    def __init__(self, prompts: Prompts, request: TraceRequest) -> None:
        self.prompts = prompts
        self.request = request

    def __len__(self) -> int:
        return self.request.input_length

    def __iter__(self) -> Iterator[int]:
        return iter(self.prompts.tokens(self.request))

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[int]: ...
    def __getitem__(self, index: int | slice) -> int | Sequence[int]:
        return self.prompts.tokens(self.request)[index]
