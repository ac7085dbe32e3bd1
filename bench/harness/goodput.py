"""The goodput rate sweep of one (workload, system): a short geometric ramp from a start rate until the SLO
attainment drops below the goal (or, when the start rate already misses it, down), then bisection (geometric) between
the highest rate that met it and the lowest that did not. Every point is a fresh run (the caller's ``measure``) of the
same requests, arrivals scaled to the rate. Goodput is the highest rate that met the goal."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from bench.harness.slo import ATTAINMENT_GOAL


class SweepPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    factor: float = Field(default=1.5, gt=1.0, description="ramp step: each rate this many times the last")
    ramp: int = Field(default=4, ge=0, description="most ramp points above the start rate")
    down: int = Field(default=2, ge=0, description="most points below the start rate when it already misses")
    bisections: int = Field(default=2, ge=0)


@dataclass
class SweepResult:
    goodput_rps: float
    bound: str
    """"": measured between two points; "at_least": the ramp's top rate still met the goal; "below": even the lowest
    rate tried missed it (goodput_rps is 0)."""
    points: list[tuple[float, float]] = field(default_factory=list)
    """(rate, attainment) in the order measured."""


def sweep(measure: Callable[[float], float], start: float, plan: SweepPlan) -> SweepResult:
    """``measure(rate)`` runs one point and returns its SLO attainment."""
    points: list[tuple[float, float]] = []

    def meets(rate: float) -> bool:
        attainment = measure(rate)
        points.append((rate, attainment))
        return attainment >= ATTAINMENT_GOAL

    low: float | None = None
    high: float | None = None
    rate = start
    if meets(rate):
        low = rate
        for _ in range(plan.ramp):
            rate *= plan.factor
            if not meets(rate):
                high = rate
                break
            low = rate
    else:
        high = rate
        for _ in range(plan.down):
            rate /= plan.factor
            if meets(rate):
                low = rate
                break
            high = rate
    if low is None:
        return SweepResult(0.0, "below", points)
    if high is None:
        return SweepResult(low, "at_least", points)
    for _ in range(plan.bisections):
        middle = math.sqrt(low * high)
        if meets(middle):
            low = middle
        else:
            high = middle
    return SweepResult(low, "", points)
