"""The fake engine's KV cache: a fixed number of blocks, prefix caching by chained block hashes, LRU eviction.

As in vLLM's V1 block pool: a block is in use while a running request references it; a full prompt block that was
computed (or pulled) stays cached after its request ends and can be hit by a later prompt with the same prefix; free
space is taken first from never-used blocks, then by evicting the least recently used cached block nobody references.
Only full prompt blocks are cached; the partial last block and the output blocks are private to their request.
Every block stored and every block evicted is reported to ``listener`` (the KV event publisher).

With a host tier (``host_capacity`` blocks, vLLM's native offloading: issue 24) every full prompt block computed is
also copied to host memory (vLLM offloads prompt blocks as they are stored), kept there LRU, and reported with
``medium="CPU"``; a prompt's leading blocks found on the host after those in HBM are reloaded instead of recomputed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

HASH_MASK = (1 << 63) - 1


class KvCacheListener(Protocol):
    def stored(self, hashes: list[int], parent: int | None, token_ids: list[int], medium: str = "GPU") -> None: ...

    def removed(self, hashes: list[int], medium: str = "GPU") -> None: ...


def block_hashes(tokens: Sequence[int], block_size: int) -> list[int]:
    """The engine's own chain hash of every full block (64-bit ints, like VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES)."""
    hashes: list[int] = []
    parent = 0
    for start in range(0, len(tokens) - block_size + 1, block_size):
        parent = hash(("fake-engine", parent, tuple(tokens[start : start + block_size]))) & HASH_MASK
        hashes.append(parent)
    return hashes


@dataclass
class Allocation:
    """The blocks one request holds."""

    cached: list[int] = field(default_factory=list)
    private: int = 0


class KvCache:
    def __init__(
        self,
        capacity_blocks: int,
        block_size: int,
        listener: KvCacheListener | None = None,
        host_capacity: int = 0,
    ) -> None:
        self.capacity = capacity_blocks
        self.host_capacity = host_capacity
        self._host: OrderedDict[int, None] = OrderedDict()
        self.block_size = block_size
        self.listener = listener
        self._refs: dict[int, int] = {}
        self._evictable: OrderedDict[int, None] = OrderedDict()
        self._private = 0
        self.evictions = 0

    @property
    def used(self) -> int:
        """Blocks referenced by running requests (what vllm:kv_cache_usage_perc reports)."""
        return self._private + len(self._refs) - len(self._evictable)

    def usage(self) -> float:
        return self.used / self.capacity

    def holds(self, block: int) -> bool:
        """Whether block hash ``block`` is in HBM (in use or evictable, either way a prefix hit)."""
        return block in self._refs

    def hit_blocks(self, hashes: Sequence[int]) -> int:
        """Leading blocks of the prompt already cached."""
        count = 0
        for block in hashes:
            if block not in self._refs:
                break
            count += 1
        return count

    def host_hit_blocks(self, hashes: Sequence[int], device_hit: int) -> int:
        """Leading blocks after the ``device_hit`` in HBM that the host tier holds (reloaded, not recomputed)."""
        count = 0
        for block in hashes[device_hit:]:
            if block not in self._host:
                break
            self._host.move_to_end(block)
            count += 1
        return count

    def can_allocate(self, new_blocks: int) -> bool:
        return self.used + new_blocks <= self.capacity

    def allocate(self, hashes: Sequence[int], hit: int, new_blocks: int) -> Allocation:
        """Pin the ``hit`` leading cached blocks and take ``new_blocks`` fresh ones (evicting LRU as needed)."""
        allocation = Allocation(cached=list(hashes[:hit]))
        for block in allocation.cached:
            self._pin(block)
        self._make_room(new_blocks)
        self._private += new_blocks
        allocation.private = new_blocks
        return allocation

    def store(self, allocation: Allocation, hashes: Sequence[int], tokens: Sequence[int]) -> None:
        """The prompt's full blocks after ``len(allocation.cached)`` were computed: turn private blocks into cached."""
        start = len(allocation.cached)
        fresh: list[int] = []
        for block in hashes[start:]:
            if allocation.private == 0:
                break
            allocation.private -= 1
            self._private -= 1
            if block in self._refs:  # computed again meanwhile by another request: share it
                self._pin(block)
            else:
                self._refs[block] = 1
                fresh.append(block)
            allocation.cached.append(block)
        if fresh and self.listener is not None:
            begin = start * self.block_size
            parent = hashes[start - 1] if start > 0 else None
            self.listener.stored(fresh, parent, list(tokens[begin : begin + len(fresh) * self.block_size]))
        if fresh and self.host_capacity:
            self._offload(fresh, hashes, tokens)

    def _offload(self, fresh: list[int], hashes: Sequence[int], tokens: Sequence[int]) -> None:
        """Copy the newly stored blocks to the host tier (LRU), reporting stores and host evictions as CPU events."""
        new = [block for block in fresh if block not in self._host]
        for block in fresh:
            self._host[block] = None
            self._host.move_to_end(block)
        dropped: list[int] = []
        while len(self._host) > self.host_capacity:
            block, _ = self._host.popitem(last=False)
            dropped.append(block)
        if self.listener is None:
            return
        index = {block: i for i, block in enumerate(hashes)}
        for block in new:
            if block in dropped:
                continue
            i = index[block]
            parent = hashes[i - 1] if i > 0 else None
            self.listener.stored([block], parent, list(tokens[i * self.block_size : (i + 1) * self.block_size]), "CPU")
        if dropped:
            self.listener.removed(dropped, "CPU")

    def release(self, allocation: Allocation) -> None:
        for block in allocation.cached:
            refs = self._refs[block] - 1
            self._refs[block] = refs
            if refs == 0:
                self._evictable[block] = None
                self._evictable.move_to_end(block)
        self._private -= allocation.private
        allocation.cached, allocation.private = [], 0

    def _pin(self, block: int) -> None:
        refs = self._refs[block]
        if refs == 0:
            del self._evictable[block]
        self._refs[block] = refs + 1

    def _make_room(self, new_blocks: int) -> None:
        evicted: list[int] = []
        while len(self._refs) + self._private + new_blocks > self.capacity and self._evictable:
            block, _ = self._evictable.popitem(last=False)
            del self._refs[block]
            evicted.append(block)
        if evicted:
            self.evictions += len(evicted)
            if self.listener is not None:
                self.listener.removed(evicted)
