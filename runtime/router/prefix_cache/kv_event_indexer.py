"""Applies one engine's KV events to the prefix index under the router's own keys.

A stored block's key is re-hashed from its token ids and its parent's key, so vLLM's hash algorithm and seed do not
matter; the engine's hash is kept only to find the parent and to remove the block later. A block whose parent the
router never saw (it subscribed late, or missed events) cannot be placed in a prefix and is skipped.
Only the device tier counts (medium GPU, or none given): offloaded copies are slower to reuse.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from runtime.router.prefix_cache.kv_event_decoding import AllBlocksCleared, BlockRemoved, BlockStored, KvEvent
from runtime.router.prefix_cache.prefix_index import PrefixIndex
from runtime.router.prefix_cache.prompt_blocks import ROOT_KEY, chain_keys

DEVICE_MEDIA = (None, "GPU", "gpu")


class KvEventIndexer:
    def __init__(self, engine: str, index: PrefixIndex, block_size: int, capacity: int) -> None:
        self.engine = engine
        self.index = index
        self.block_size = block_size
        self.capacity = capacity
        self._keys: OrderedDict[Hashable, int] = OrderedDict()
        self.skipped: dict[str, int] = {"unknown_parent": 0, "block_size_mismatch": 0, "other_medium": 0}

    def apply(self, event: KvEvent) -> str:
        """Apply the event; return its type name (for metrics)."""
        if isinstance(event, BlockStored):
            self._stored(event)
            return "BlockStored"
        if isinstance(event, BlockRemoved):
            if event.medium in DEVICE_MEDIA:
                keys = [key for key in (self._keys.pop(h, None) for h in event.block_hashes) if key is not None]
                self.index.remove(self.engine, keys)
            return "BlockRemoved"
        if isinstance(event, AllBlocksCleared):
            self.reset()
            return "AllBlocksCleared"
        return "unknown"

    def reset(self) -> int:
        """Forget everything of this engine (restart, sequence gap, cleared cache)."""
        self._keys.clear()
        return self.index.drop_engine(self.engine)

    def _stored(self, event: BlockStored) -> None:
        if event.medium not in DEVICE_MEDIA:
            self.skipped["other_medium"] += 1
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
        keys = chain_keys(event.token_ids, self.block_size, parent)
        for engine_hash, key in zip(event.block_hashes, keys, strict=False):
            self._keys[engine_hash] = key
            self._keys.move_to_end(engine_hash)
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        self.index.add(self.engine, keys[: len(event.block_hashes)])
