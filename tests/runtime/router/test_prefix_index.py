"""The prefix index: unbroken leading runs, LRU eviction at the cap, dropping one engine, its size."""

from __future__ import annotations

from runtime.router.prefix_cache.prefix_index import PrefixIndex
from runtime.router.prefix_cache.prompt_blocks import chain_keys, character_blocks, token_blocks


def test_match_counts_the_unbroken_leading_run_per_engine() -> None:
    index = PrefixIndex(100)
    index.add("a", [1, 2, 3])
    index.add("b", [1, 2])
    index.add("b", [4])
    assert index.match([1, 2, 3, 4]) == {"a": 3, "b": 2}
    assert index.match([9, 1]) == {}


def test_lru_evicts_the_coldest_blocks_at_the_cap() -> None:
    index = PrefixIndex(3)
    index.add("a", [1, 2, 3])
    index.match([1])  # touch 1: block 2 is now the coldest
    index.add("a", [4])
    assert len(index) == 3 and index.evictions == 1
    assert index.match([1]) == {"a": 1} and index.match([2]) == {}


def test_remove_and_drop_engine() -> None:
    index = PrefixIndex(10)
    index.add("a", [1, 2])
    index.add("b", [1, 2])
    index.remove("a", [2])
    assert index.match([1, 2]) == {"a": 1, "b": 2}
    assert index.drop_engine("b") == 2
    assert index.match([1, 2]) == {"a": 1}
    assert len(index) == 1


def test_keys_chain_so_a_changed_block_breaks_the_rest() -> None:
    tokens = list(range(100))
    keys = chain_keys(tokens, 32)
    assert len(keys) == 3 and token_blocks(tokens, 32).keys == tuple(keys)
    changed = chain_keys([999, *tokens[1:]], 32)
    assert not set(keys) & set(changed)
    assert chain_keys(tokens[32:64], 32, parent=keys[0]) == [keys[1]]


def test_character_blocks_estimate_tokens() -> None:
    blocks = character_blocks("x" * 300, 32)
    assert len(blocks.keys) == 2 and blocks.prompt_tokens == 75 and not blocks.exact
