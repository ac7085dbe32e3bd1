"""Which engine holds which KV block: block key -> engines, bounded by an LRU cap.

Scores are the longest unbroken run of a prompt's leading blocks an engine holds (a block is only reusable when
every block before it is). Lookups refresh what they touch, so hot prefixes stay and cold ones are evicted first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

from runtime.router.engines.engine import Engine


class PrefixIndex:
    def __init__(self, capacity_blocks: int) -> None:
        if capacity_blocks < 1:
            raise ValueError(f"capacity_blocks={capacity_blocks} must be at least 1")
        self.capacity = capacity_blocks
        self._holders: OrderedDict[int, set[str]] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._holders)

    def add(self, engine: str, keys: Iterable[int]) -> None:
        holders = self._holders
        for key in keys:
            engines = holders.get(key)
            if engines is None:
                holders[key] = {engine}
            else:
                engines.add(engine)
                holders.move_to_end(key)
        while len(holders) > self.capacity:
            holders.popitem(last=False)
            self.evictions += 1

    def remove(self, engine: str, keys: Iterable[int]) -> None:
        holders = self._holders
        for key in keys:
            engines = holders.get(key)
            if engines is None:
                continue
            engines.discard(engine)
            if not engines:
                del holders[key]

    def drop_engine(self, engine: str) -> int:
        """Forget everything ``engine`` holds (it restarted, missed events or left); return how many blocks."""
        dropped = 0
        for key in list(self._holders):
            engines = self._holders[key]
            if engine in engines:
                dropped += 1
                engines.discard(engine)
                if not engines:
                    del self._holders[key]
        return dropped

    # the registry's listener: an engine that leaves or restarts holds nothing the index knows of
    def engine_added(self, engine: Engine) -> None:
        pass

    def engine_removed(self, engine: Engine) -> None:
        self.drop_engine(engine.url)

    def engine_reset(self, engine: Engine) -> None:
        self.drop_engine(engine.url)

    def match(self, keys: Sequence[int]) -> dict[str, int]:
        """For every engine holding the first block: how many leading blocks it holds in an unbroken run."""
        holders = self._holders
        matched: dict[str, int] = {}
        alive: set[str] | None = None
        for depth, key in enumerate(keys, start=1):
            engines = holders.get(key)
            if not engines:
                break
            alive = set(engines) if alive is None else alive & engines
            if not alive:
                break
            holders.move_to_end(key)
            for engine in alive:
                matched[engine] = depth
        return matched
