"""The simulated engine's host KV tier (issue 24): blocks evicted from HBM stay reloadable from host memory, reported
with vLLM 0.32's media, and the router's index keeps such an engine as a holder of the prefix."""

from __future__ import annotations

from bench.fake_engine.kv_cache import KvCache, block_hashes
from bench.fake_engine.timing import EngineTiming
from runtime.router.prefix_cache.kv_event_decoding import BlockRemoved, BlockStored
from runtime.router.prefix_cache.kv_event_indexer import KvEventIndexer
from runtime.router.prefix_cache.prefix_index import PrefixIndex
from runtime.router.prefix_cache.prompt_blocks import chain_keys

A = list(range(100, 164))  # four blocks of 16
B = list(range(500, 564))


class ToIndexer:
    """The events as the router's indexer would apply them after the wire."""

    def __init__(self, indexer: KvEventIndexer) -> None:
        self.indexer = indexer

    def stored(self, hashes: list[int], parent: int | None, token_ids: list[int], medium: str = "GPU") -> None:
        self.indexer.apply(BlockStored(list(hashes), parent, token_ids, 16, medium))

    def removed(self, hashes: list[int], medium: str = "GPU") -> None:
        self.indexer.apply(BlockRemoved(list(hashes), medium))


def run(cache: KvCache, tokens: list[int]) -> None:
    hashes = block_hashes(tokens, 16)
    hit = cache.hit_blocks(hashes)
    allocation = cache.allocate(hashes, hit, len(hashes) - hit)
    cache.store(allocation, hashes, tokens)
    cache.release(allocation)


def test_a_prefix_evicted_from_hbm_is_found_on_the_host_and_still_routed_to() -> None:
    index = PrefixIndex(100)
    cache = KvCache(4, 16, ToIndexer(KvEventIndexer("http://e", index, 16, 100)), host_capacity=8)
    run(cache, A)
    run(cache, B)  # HBM holds four blocks: A is evicted from it
    hashes = block_hashes(A, 16)
    assert cache.hit_blocks(hashes) == 0 and cache.host_hit_blocks(hashes, 0) == 4
    assert index.match_tiers(chain_keys(A, 16)) == ({"http://e": 4}, {"http://e": 4})


def test_without_a_host_tier_an_eviction_loses_the_prefix() -> None:
    index = PrefixIndex(100)
    cache = KvCache(4, 16, ToIndexer(KvEventIndexer("http://e", index, 16, 100)))
    run(cache, A)
    run(cache, B)
    assert cache.host_hit_blocks(block_hashes(A, 16), 0) == 0 and index.match(chain_keys(A, 16)) == {}


def test_the_host_tier_drops_its_least_recent_blocks_and_says_so() -> None:
    index = PrefixIndex(100)
    cache = KvCache(4, 16, ToIndexer(KvEventIndexer("http://e", index, 16, 100)), host_capacity=4)
    run(cache, A)
    run(cache, B)  # the host holds four blocks too: A's copies go
    assert cache.host_hit_blocks(block_hashes(A, 16), 0) == 0 and index.match(chain_keys(A, 16)) == {}


def test_a_reload_costs_pcie_time_far_below_the_recompute() -> None:
    timing = EngineTiming()
    assert timing.host_load_ms(1000) < 0.1 * timing.prefill_ms_per_token * 1000
