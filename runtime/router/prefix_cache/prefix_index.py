"""Which engine holds which KV block, and in which tier: block key -> {engine: tier bits}, bounded by an LRU cap.
An engine of several data-parallel ranks is one holder per rank (prefix_cache/dp_ranks.py).

Scores are the longest unbroken run of a prompt's leading blocks an engine holds in any tier (a block is only
reusable when every block before it is; a host-tier block is copied back into HBM first, see tiers.py). Lookups
refresh what they touch, so hot prefixes stay and cold ones are evicted first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

from runtime.router.engines.engine import Engine
from runtime.router.prefix_cache.dp_ranks import holds_for
from runtime.router.prefix_cache.tiers import DEVICE


class PrefixIndex:
    def __init__(self, capacity_blocks: int) -> None:
        if capacity_blocks < 1:
            raise ValueError(f"capacity_blocks={capacity_blocks} must be at least 1")
        self.capacity = capacity_blocks
        self._holders: OrderedDict[int, dict[str, int]] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._holders)

    def add(self, engine: str, keys: Iterable[int], tier: int = DEVICE) -> None:
        holders = self._holders
        for key in keys:
            engines = holders.get(key)
            if engines is None:
                holders[key] = {engine: tier}
            else:
                engines[engine] = engines.get(engine, 0) | tier
                holders.move_to_end(key)
        while len(holders) > self.capacity:
            holders.popitem(last=False)
            self.evictions += 1

    def remove(self, engine: str, keys: Iterable[int], tier: int = DEVICE) -> None:
        """``engine`` no longer holds ``keys`` in ``tier``; a block it holds in no tier is no longer its."""
        holders = self._holders
        for key in keys:
            engines = holders.get(key)
            if engines is None or engine not in engines:
                continue
            left = engines[engine] & ~tier
            if left:
                engines[engine] = left
                continue
            del engines[engine]
            if not engines:
                del holders[key]

    def drop_engine(self, engine: str) -> int:
        """Forget everything ``engine`` (an engine, or one data-parallel rank of one: dp_ranks.holder) holds (it
        restarted, missed events or left); return how many blocks."""
        dropped = 0
        for key in list(self._holders):
            engines = self._holders[key]
            if engines.pop(engine, None) is not None:
                dropped += 1
                if not engines:
                    del self._holders[key]
        return dropped

    def _drop_with_ranks(self, url: str) -> None:
        """Forget the engine at ``url`` and every data-parallel rank of it."""
        for key in list(self._holders):
            engines = self._holders[key]
            for name in [name for name in engines if holds_for(name, url)]:
                del engines[name]
            if not engines:
                del self._holders[key]

    # the registry's listener: an engine that leaves or restarts holds nothing the index knows of, on any rank
    def engine_added(self, engine: Engine) -> None:
        pass

    def engine_removed(self, engine: Engine) -> None:
        self._drop_with_ranks(engine.url)

    def engine_reset(self, engine: Engine) -> None:
        self._drop_with_ranks(engine.url)

    def match(self, keys: Sequence[int]) -> dict[str, int]:
        """For every engine holding the first block: how many leading blocks it holds in an unbroken run."""
        return self.match_tiers(keys)[0]

    def match_tiers(self, keys: Sequence[int]) -> tuple[dict[str, int], dict[str, int]]:
        """:meth:`match`, and for every engine whose run has blocks outside HBM: how many of the run's blocks it
        holds only in a lower tier."""
        holders = self._holders
        matched: dict[str, int] = {}
        lower: dict[str, int] = {}
        alive: set[str] | None = None
        for depth, key in enumerate(keys, start=1):
            engines = holders.get(key)
            if not engines:
                break
            alive = set(engines) if alive is None else alive & engines.keys()
            if not alive:
                break
            holders.move_to_end(key)
            for engine in alive:
                matched[engine] = depth
                if not engines[engine] & DEVICE:
                    lower[engine] = lower.get(engine, 0) + 1
        return matched, lower
