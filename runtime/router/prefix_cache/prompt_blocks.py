"""A prompt cut into the engines' KV blocks, each block keyed by a chain hash of everything before it.

Keys are the router's own (Python's hash of (parent key, block tokens)): vLLM's hash algorithm and seed never matter,
only the block size must agree. Token keys come from :class:`~runtime.router.requests.prompt_tokenizer.PromptTokenizer`;
without a tokenizer the prompt's text is cut into character blocks of ``block_size * CHARS_PER_TOKEN`` characters,
each counted as ``block_size`` tokens (an estimate, good enough to route by, useless for KV events).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ROOT_KEY = 0
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class PromptBlocks:
    keys: tuple[int, ...]
    """Chain keys of the prompt's full blocks, in order."""
    prompt_tokens: int
    """The prompt's length in tokens (estimated in character mode)."""
    block_size: int
    exact: bool
    """True when the keys come from the model's tokens, False for character blocks."""

    def tokens_in(self, blocks: int) -> int:
        return blocks * self.block_size


def chain_keys(tokens: Sequence[int], block_size: int, parent: int = ROOT_KEY) -> list[int]:
    """Keys of every full block of ``tokens``, chained from ``parent``."""
    keys = []
    for start in range(0, len(tokens) - block_size + 1, block_size):
        parent = hash((parent, tuple(tokens[start : start + block_size])))
        keys.append(parent)
    return keys


def token_blocks(tokens: Sequence[int], block_size: int) -> PromptBlocks:
    return PromptBlocks(tuple(chain_keys(tokens, block_size)), len(tokens), block_size, exact=True)


def character_blocks(text: str, block_size: int) -> PromptBlocks:
    width = block_size * CHARS_PER_TOKEN
    keys = []
    parent = ROOT_KEY
    for start in range(0, len(text) - width + 1, width):
        parent = hash((parent, text[start : start + width]))
        keys.append(parent)
    return PromptBlocks(tuple(keys), -(-len(text) // CHARS_PER_TOKEN), block_size, exact=False)
