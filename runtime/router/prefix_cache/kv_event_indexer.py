"""Applies one engine's KV events to the prefix index under the router's own keys, in the tier each names.

A stored block's key is re-hashed from its token ids and its parent's key, so vLLM's hash algorithm and seed do not
matter; the engine's hash is kept only to find the parent and to remove the block later. A block whose parent the
router never saw (it subscribed late, or missed events) cannot be placed in a prefix and is skipped.

Tiers (runtime/router/prefix_cache/tiers.py): the device's events (medium GPU, or none given) and the host offload
tier's (medium CPU) are tracked apart, per engine hash: an offloaded copy of a block the router knows is placed by that
hash alone (the connector's placeholder events carry no tokens), and a block leaves the engine only when no tier holds
it. A medium the router does not route on (STORAGE) is skipped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from runtime.router.prefix_cache.kv_event_decoding import AllBlocksCleared, BlockRemoved, BlockStored, KvEvent
from runtime.router.prefix_cache.prefix_index import PrefixIndex
from runtime.router.prefix_cache.prompt_blocks import ROOT_KEY, chain_keys
from runtime.router.prefix_cache.tiers import tier_of


class KvEventIndexer:
    def __init__(self, engine: str, index: PrefixIndex, block_size: int, capacity: int) -> None:
        self.engine = engine
        self.index = index
        self.block_size = block_size
        self.capacity = capacity
        self._keys: OrderedDict[Hashable, int] = OrderedDict()
        """Engine hash -> the router's key of the block."""
        self._tiers: dict[Hashable, int] = {}
        """Engine hash -> the tier bits holding it (a hash leaves ``_keys`` when none does)."""
        self.skipped: dict[str, int] = {
            "unknown_parent": 0,
            "unknown_block": 0,
            "block_size_mismatch": 0,
            "other_medium": 0,
        }

    def apply(self, event: KvEvent) -> str:
        """Apply the event; return its type name (for metrics)."""
        if isinstance(event, BlockStored):
            self._stored(event)
            return "BlockStored"
        if isinstance(event, BlockRemoved):
            self._removed(event)
            return "BlockRemoved"
        if isinstance(event, AllBlocksCleared):
            self.reset()
            return "AllBlocksCleared"
        return "unknown"

    def reset(self) -> int:
        """Forget everything of this engine (restart, sequence gap, cleared cache)."""
        self._keys.clear()
        self._tiers.clear()
        return self.index.drop_engine(self.engine)

    def _removed(self, event: BlockRemoved) -> None:
        tier = tier_of(event.medium)
        if tier is None:
            return
        gone = []
        for engine_hash in event.block_hashes:
            key = self._keys.get(engine_hash)
            if key is None:
                continue
            gone.append(key)
            left = self._tiers.get(engine_hash, 0) & ~tier
            if left:
                self._tiers[engine_hash] = left
            else:
                del self._keys[engine_hash]
                self._tiers.pop(engine_hash, None)
        self.index.remove(self.engine, gone, tier)

    def _stored(self, event: BlockStored) -> None:
        tier = tier_of(event.medium)
        if tier is None:
            self.skipped["other_medium"] += 1
            return
        if not event.token_ids and event.block_size == 0:
            self._stored_by_hash(event.block_hashes, tier)
            return
        if event.block_size != self.block_size:
            self.skipped["block_size_mismatch"] += 1
            return
        if event.parent_block_hash is None:
            parent = ROOT_KEY
        else:
            known = self._keys.get(event.parent_block_hash)
            if known is None:
                self.skipped["unknown_parent"] += 1
                return
            parent = known
        keys = chain_keys(event.token_ids, self.block_size, parent)[: len(event.block_hashes)]
        for engine_hash, key in zip(event.block_hashes, keys, strict=False):
            self._remember(engine_hash, key, tier)
        self.index.add(self.engine, keys, tier)

    def _stored_by_hash(self, hashes: list[Hashable], tier: int) -> None:
        """The offloading connector's placeholder: only the hash, of a block the engine held on its device first."""
        keys = []
        for engine_hash in hashes:
            key = self._keys.get(engine_hash)
            if key is None:
                self.skipped["unknown_block"] += 1
                continue
            self._remember(engine_hash, key, tier)
            keys.append(key)
        self.index.add(self.engine, keys, tier)

    def _remember(self, engine_hash: Hashable, key: int, tier: int) -> None:
        self._keys[engine_hash] = key
        self._keys.move_to_end(engine_hash)
        self._tiers[engine_hash] = self._tiers.get(engine_hash, 0) | tier
        while len(self._keys) > self.capacity:
            old, _ = self._keys.popitem(last=False)
            self._tiers.pop(old, None)
