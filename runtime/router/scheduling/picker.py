"""The picker: the highest total score; among equal scores the least loaded engine; then any of them."""

from __future__ import annotations

import random

from runtime.router.engine import Engine

TIE = 1e-9


def load_of(engine: Engine) -> float:
    return engine.in_flight + engine.waiting


class MaxScorePicker:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, totals: dict[Engine, float]) -> Engine:
        if not totals:
            raise ValueError("no engine to pick from")
        best = max(totals.values())
        top = [engine for engine, total in totals.items() if total >= best - TIE]
        lightest = min(load_of(engine) for engine in top)
        least_loaded = [engine for engine in top if load_of(engine) == lightest]
        return least_loaded[0] if len(least_loaded) == 1 else self._rng.choice(least_loaded)
