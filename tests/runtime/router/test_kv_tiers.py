"""The host tier in routing: where vLLM 0.32 says a block lives (the events' medium), what an engine holding a prefix
on its host is worth next to one holding it in HBM and one holding nothing, and what the P/D decider counts cached.

The events are shaped as the pinned vLLM publishes them with the OffloadingConnector: the block pool's own stores and
removals carry ``medium="GPU"``, the connector's carry ``medium="CPU"``, and a device eviction of an offloaded block
is a ``BlockRemoved(medium="GPU")`` while the host copy lives on (runtime/router/prefix_cache/tiers.py)."""

from __future__ import annotations

from collections.abc import Hashable

import msgpack

from runtime.router.config import RouterConfig
from runtime.router.engines.engine import Engine
from runtime.router.prefix_cache.kv_event_decoding import BlockRemoved, BlockStored, decode_batch
from runtime.router.prefix_cache.kv_event_indexer import KvEventIndexer
from runtime.router.prefix_cache.prefix_index import PrefixIndex
from runtime.router.prefix_cache.prompt_blocks import token_blocks
from runtime.router.prefix_cache.tiers import HOST_HIT_WEIGHT, HOST_LOAD_COST
from runtime.router.scheduling.context import SchedulingContext
from runtime.router.scheduling.scheduler import Scheduler
from runtime.router.scheduling.scorers import PrefixScorer

TOKENS = list(range(2000, 2128))  # four blocks of 32
HASHES: list[Hashable] = [0xA1, 0xA2, 0xA3, 0xA4]
D0, D1, D2 = "http://d0", "http://d1", "http://d2"


def indexer(index: PrefixIndex, engine: str = D0) -> KvEventIndexer:
    return KvEventIndexer(engine, index, 32, 100)


def on_device(events: KvEventIndexer, blocks: int = 4) -> None:
    events.apply(BlockStored(HASHES[:blocks], None, TOKENS[: 32 * blocks], 32, "GPU"))


def offloaded(events: KvEventIndexer, blocks: int = 4, self_describing: bool = False) -> None:
    """The OffloadingConnector's stores: with ``self_describing_kv_events`` the payload is the block's own; without
    it, a placeholder per block (no tokens, block size 0, the block's hash) (vLLM 0.32 offloading/events.py)."""
    for i in range(blocks):
        if self_describing:
            parent = HASHES[i - 1] if i else None
            events.apply(BlockStored([HASHES[i]], parent, TOKENS[32 * i : 32 * (i + 1)], 32, "CPU"))
        else:
            events.apply(BlockStored([HASHES[i]], None, [], 0, "CPU"))


def keys() -> list[int]:
    return list(token_blocks(TOKENS, 32).keys)


def test_the_cpu_medium_on_the_wire_decodes_as_such() -> None:
    payload = msgpack.packb(
        [
            1.0,
            [
                {
                    "type": "BlockStored",
                    "block_hashes": [1],
                    "parent_block_hash": None,
                    "token_ids": TOKENS[:32],
                    "block_size": 32,
                    "lora_id": None,
                    "medium": "CPU",
                    "lora_name": None,
                },
                {"type": "BlockRemoved", "block_hashes": [1], "medium": "GPU"},
            ],
            0,
        ]
    )
    assert decode_batch(payload).events == [BlockStored([1], None, TOKENS[:32], 32, "CPU"), BlockRemoved([1], "GPU")]


def test_an_eviction_from_hbm_of_an_offloaded_block_is_not_a_removal() -> None:
    index = PrefixIndex(100)
    events = indexer(index)
    on_device(events)
    offloaded(events)
    events.apply(BlockRemoved(HASHES, "GPU"))
    assert index.match(keys()) == {D0: 4}, "all four blocks are still on the engine"
    assert index.match_tiers(keys()) == ({D0: 4}, {D0: 4}), "on its host"
    events.apply(BlockRemoved(HASHES[2:], "CPU"))
    assert index.match_tiers(keys()) == ({D0: 2}, {D0: 2})
    events.apply(BlockRemoved(HASHES[:2], "CPU"))
    assert index.match(keys()) == {}


def test_a_host_eviction_leaves_the_hbm_copy() -> None:
    index = PrefixIndex(100)
    events = indexer(index)
    on_device(events)
    offloaded(events)
    events.apply(BlockRemoved(HASHES, "CPU"))
    assert index.match_tiers(keys()) == ({D0: 4}, {})


def test_a_self_describing_host_block_the_router_never_saw_in_hbm_is_placed_on_the_host() -> None:
    index = PrefixIndex(100)
    events = indexer(index)
    offloaded(events, self_describing=True)
    assert index.match_tiers(keys()) == ({D0: 4}, {D0: 4})
    placeholder = indexer(PrefixIndex(100))
    offloaded(placeholder)  # a placeholder of a block never seen: nothing to key it by
    assert placeholder.index.match(keys()) == {} and placeholder.skipped["unknown_block"] == 4


def test_a_prefix_split_between_hbm_and_host_counts_its_host_blocks() -> None:
    index = PrefixIndex(100)
    events = indexer(index)
    on_device(events)
    offloaded(events)
    events.apply(BlockRemoved(HASHES[1:], "GPU"))  # the first block stays in HBM, the rest only on the host
    assert index.match_tiers(keys()) == ({D0: 4}, {D0: 3})


def test_hbm_scores_above_host_above_a_miss() -> None:
    index = PrefixIndex(100)
    on_device(indexer(index, D0))
    host = indexer(index, D1)
    on_device(host)
    offloaded(host)
    host.apply(BlockRemoved(HASHES, "GPU"))
    held, on_host = index.match_tiers(keys())
    context = SchedulingContext("r", token_blocks(TOKENS, 32), prefix_matches=held, host_matches=on_host)
    pool = [Engine(D0, "decode"), Engine(D1, "decode"), Engine(D2, "decode")]
    scores = PrefixScorer().score(context, pool)
    assert scores[pool[0]] == 1.0 and scores[pool[1]] == HOST_HIT_WEIGHT and scores[pool[2]] == 0.0


def test_the_decider_counts_host_hits_as_cached_at_their_load_cost() -> None:
    """A 128-token prompt held whole on the decode engine's host: cached, so below a 64-token threshold it is served
    decode-only; its load cost is counted as uncached work (the decision's uncached tokens)."""
    index = PrefixIndex(100)
    events = indexer(index, D0)
    on_device(events)
    offloaded(events)
    events.apply(BlockRemoved(HASHES, "GPU"))
    held, on_host = index.match_tiers(keys())
    scheduler = Scheduler.from_config(RouterConfig(pd_threshold_tokens=64))
    context = SchedulingContext("r", token_blocks(TOKENS, 32), prefix_matches=held, host_matches=on_host)
    plan = scheduler.plan(context, [Engine("http://p0", "prefill"), Engine(D0, "decode")])
    assert plan.decision.decision == "decode_only" and plan.decision.reason == "few_uncached_tokens"
    assert plan.decision.uncached_tokens == round(128 * HOST_LOAD_COST)
