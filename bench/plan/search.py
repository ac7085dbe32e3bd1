"""The planner's search: for each candidate (instance type, prefill TP, decode TP), the prefill and decode engine
counts on the frontier of layouts that meet the SLOs, each simulated (bench/plan/simulate.py), and their cost.

A layout meets the SLOs when at least ``ATTAINMENT_GOAL`` of all requests AND of the requests that arrived in the
trace's busiest ``BURST_WINDOW_S`` meet both TTFT and TPOT (DistServe's goodput criterion, held at the bursts too).
More engines of a role never hurt in this model, so the frontier is found by bisection: the fewest prefill engines
that meet with the most decode engines allowed, then for each prefill count from there the fewest decode engines
that meet (never more than the count before), until one decode engine is enough. Nodes: the layout's GPUs packed on
whole nodes (prefill and decode pods may share a node, as the fit check in infra/config/deployment.py counts
them)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.fake_engine.hardware import EngineSize, size_engine
from bench.harness.slo import ATTAINMENT_GOAL
from bench.plan.prices import InstancePrice
from bench.plan.simulate import PlannedRequest, SimulationResult, simulate
from bench.replay.workload import BURST_WINDOW_S
from testbed.percentile import percentile


@dataclass(frozen=True)
class Objectives:
    ttft_ms: float
    tpot_ms: float

    def met(self, ttft_ms: float, tpot_ms: float) -> bool:
        return ttft_ms <= self.ttft_ms and tpot_ms <= self.tpot_ms


@dataclass(frozen=True)
class Candidate:
    prefill: EngineSize
    decode: EngineSize

    @property
    def label(self) -> str:
        return f"{self.prefill.instance} TP{self.prefill.tp}/TP{self.decode.tp}"


@dataclass
class Layout:
    candidate: Candidate
    prefills: int
    decodes: int
    gpus_per_node: int
    attainment: float = 0.0
    burst_attainment: float = 0.0
    ttft_p50_ms: float = 0.0
    ttft_p90_ms: float = 0.0
    tpot_p90_ms: float = 0.0
    hit_rate: float = 0.0
    goodput_rps: float = 0.0
    """Requests that met both SLOs per second of the trace."""
    meets: bool = False
    headroom: float | None = None
    """The highest arrival speedup tried that still met (1 = only the trace's own rate)."""

    @property
    def gpus(self) -> int:
        return self.prefills * self.candidate.prefill.tp + self.decodes * self.candidate.decode.tp

    @property
    def nodes(self) -> int:
        return math.ceil(self.gpus / self.gpus_per_node)

    def hourly(self, price: InstancePrice, basis: str) -> float | None:
        rate = getattr(price, basis)
        return None if rate is None else self.nodes * rate


def burst_members(arrivals_s: Sequence[float], window_s: float = BURST_WINDOW_S) -> range:
    """Indexes of the requests in the busiest ``window_s`` of the (sorted) arrivals."""
    best = (0, 0)
    start = 0
    for end, at in enumerate(arrivals_s):
        while at - arrivals_s[start] >= window_s:
            start += 1
        if end - start + 1 > best[1] - best[0]:
            best = (start, end + 1)
    return range(*best)


def judge(layout: Layout, result: SimulationResult, objectives: Objectives, span_s: float) -> Layout:
    met = [objectives.met(o.ttft_ms, o.tpot_ms) for o in result.outcomes]
    burst = burst_members([o.at_s for o in result.outcomes])
    layout.attainment = sum(met) / len(met) if met else 0.0
    layout.burst_attainment = sum(met[i] for i in burst) / len(burst) if len(burst) else layout.attainment
    ttft = [o.ttft_ms for o in result.outcomes]
    layout.ttft_p50_ms, layout.ttft_p90_ms = percentile(ttft, 0.5), percentile(ttft, 0.9)
    layout.tpot_p90_ms = percentile([o.tpot_ms for o in result.outcomes], 0.9)
    layout.hit_rate = result.hit_rate
    layout.goodput_rps = sum(met) / span_s if span_s > 0 else 0.0
    layout.meets = layout.attainment >= ATTAINMENT_GOAL and layout.burst_attainment >= ATTAINMENT_GOAL
    return layout


@dataclass
class Search:
    requests: Sequence[PlannedRequest]
    objectives: Objectives
    span_s: float
    block_size: int
    gpus_per_node: Callable[[str], int]
    max_prefills: int = 16
    max_decodes: int = 16
    tried: list[Layout] = field(default_factory=list)
    progress: Callable[[Layout], None] | None = None

    def evaluate(self, candidate: Candidate, prefills: int, decodes: int, speedup: float = 1.0) -> Layout:
        requests = (
            self.requests
            if speedup == 1.0
            else [PlannedRequest(r.at_s / speedup, r.tokens, r.output_tokens) for r in self.requests]
        )
        result = simulate(
            requests,
            prefills,
            decodes,
            candidate.prefill.timing,
            candidate.prefill.capacity_blocks(self.block_size),
            self.block_size,
            candidate.decode.timing,
            candidate.decode.capacity_blocks(self.block_size),
        )
        layout = judge(
            Layout(candidate, prefills, decodes, self.gpus_per_node(candidate.prefill.instance)),
            result,
            self.objectives,
            self.span_s / speedup,
        )
        if speedup == 1.0:
            self.tried.append(layout)
            if self.progress is not None:
                self.progress(layout)
        return layout

    def frontier(self, candidate: Candidate) -> list[Layout]:
        """The layouts of ``candidate`` that meet the SLOs with no engine to spare: per prefill count, the fewest
        decode engines."""
        cache: dict[tuple[int, int], Layout] = {}

        def meets(p: int, d: int) -> bool:
            if (p, d) not in cache:
                cache[(p, d)] = self.evaluate(candidate, p, d)
            return cache[(p, d)].meets

        if not meets(self.max_prefills, self.max_decodes):
            return []
        low, high = 1, self.max_prefills  # the fewest prefill engines that meet with every decode engine
        while low < high:
            middle = (low + high) // 2
            if meets(middle, self.max_decodes):
                high = middle
            else:
                low = middle + 1
        found: list[Layout] = []
        ceiling = self.max_decodes
        for p in range(low, self.max_prefills + 1):  # per prefill count, the fewest decode engines that meet
            if not meets(p, ceiling):
                continue
            d_low, d_high = 1, ceiling
            while d_low < d_high:
                middle = (d_low + d_high) // 2
                if meets(p, middle):
                    d_high = middle
                else:
                    d_low = middle + 1
            found.append(cache[(p, d_low)])
            ceiling = d_low
            if ceiling == 1:
                break
        return found

    def headroom(self, layout: Layout, speedups: Sequence[float] = (1.25, 1.5, 2.0, 3.0)) -> float:
        best = 1.0
        for speedup in speedups:
            if not self.evaluate(layout.candidate, layout.prefills, layout.decodes, speedup).meets:
                break
            best = speedup
        layout.headroom = best
        return best


BASES = ("capacity_block", "on_demand")


def candidates(instances: list[str], model: str, tps: list[int] | None) -> tuple[list[Candidate], list[str]]:
    """(prefill TP <= decode TP: vLLM's NixlConnector refuses a larger prefill TP, runtime/config.py)."""
    found: list[Candidate] = []
    notes: list[str] = []
    for instance in instances:
        sizes: dict[int, EngineSize] = {}
        for tp in tps or [1, 2, 4, 8]:
            try:
                sizes[tp] = size_engine(model, instance, tp)
            except ValueError as error:
                notes.append(f"{instance} TP{tp}: {error}")
        if not sizes:
            continue
        chosen = sorted(sizes) if tps else sorted(sizes)[:2]
        found += [Candidate(sizes[p], sizes[d]) for p in chosen for d in chosen if p <= d]
    return found, notes


def cheapest(tried: list[Layout], prices: dict[str, InstancePrice], basis: str) -> dict[str, Layout]:
    """Per instance type, the layout that meets the SLOs at the lowest hourly cost on ``basis`` (then the other
    basis, then GPUs, when no price is known); among equal costs the widest margin, then the fewest GPUs."""

    def key(layout: Layout) -> tuple[float, float, float, int]:
        price = prices.get(layout.candidate.prefill.instance, InstancePrice())
        order = (basis, *[b for b in BASES if b != basis])
        for rank, name in enumerate(order):
            hourly = layout.hourly(price, name)
            if hourly is not None:
                return (rank, hourly, -min(layout.attainment, layout.burst_attainment), layout.gpus)
        return (len(order), float(layout.gpus), -min(layout.attainment, layout.burst_attainment), layout.gpus)

    best: dict[str, Layout] = {}
    for layout in sorted((t for t in tried if t.meets), key=key):
        best.setdefault(layout.candidate.prefill.instance, layout)
    return best
