"""The two scenarios: ``full`` (make bench, ~40 minutes on 2 cores) and ``quick`` (make bench-quick, ~2 minutes:
a smoke of the code paths, its numbers too few to compare).

Both run 4 prefill + 4 decode simulated engines (Llama-3.1-8B on H100, see bench/fake_engine/timing.py) with block
size 16 (vLLM's GPU default, and the size vllm-router's kv_aware policy hard-codes in P/D mode). KV capacity per
engine is scaled with the workloads as llm-d's benchmark is: the shared prefixes of ``shared_prefix`` overflow one
engine's cache (12 x 1536 tokens = 1152 blocks against 640) but fit in the four prefill engines together (2560);
``kv_pressure``'s (48 x 1536 tokens = 4608 blocks) overflow the whole cluster's.

Each workload's goodput sweep starts at the rate its requests offer as generated (``rate_rps`` for the Poisson ones;
for multi_turn and agentic, whose think and tool pauses count, their requests over their span), the same for every
system (times the scenario's ``start_scale`` for the workload), and the row's other columns are that first point's.
The requests per point are the workload's own count, one run per point, no repeats: a 40-minute budget holds no more
(the sweep's resolution is one bisection of a 1.5x ramp step, ~1.22x).

The start scales and decode_heavy's request count are set so that every system's sweep ends inside its ramp, not
at its top (a ``>=`` in the table says nothing about who is better): multi_turn and bursty start 5x higher, agentic
3x (the 2026-12-02 run at 1x left all three at the top for several systems). decode_heavy sends 480 requests:
about 180 of its 14-block requests fit in the four decode engines' KV at once, and with 120 every one fitted, so
no rate made any of them queue.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bench.fake_engine.timing import EngineTiming
from bench.harness.goodput import SweepPlan
from bench.workloads.generators import (
    Agentic,
    Bursty,
    DecodeHeavy,
    KvPressure,
    LongPrompt,
    MultiTurn,
    SharedPrefix,
    WorkloadSpec,
)


class ScalePlan(BaseModel):
    """shared_prefix on growing clusters (see bench.harness.run.scale_rows)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sizes: list[int] = Field(min_length=1, description="engines per role, the first one the base cluster")
    systems: list[str] = ["pdstack:precise", "vllm-router:cache_aware", "vllm-router:round_robin"]
    rate_rps: float = Field(default=12.0, gt=0, description="wall requests/s at every size")
    groups_per_engine: int = 3
    users: int = 2
    questions: int = 2


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    prefills: int = 4
    decodes: int = 4
    block_size: int = 16
    capacity_blocks: int = 640
    host_capacity_blocks: int = 0
    """Each engine's host KV tier in blocks (issue 24; 0: none): ``--host-tier`` sets it."""
    timing: EngineTiming = EngineTiming(time_scale=4.0)
    sweep: SweepPlan = SweepPlan()
    scale: ScalePlan | None = None
    systems: list[str] | None = None
    """name:policy of the systems to run (None: all of bench.harness.run.SYSTEMS)."""
    start_scale: dict[str, float] = {}
    """workload kind -> multiplier of its sweep's start rate (1 when absent)."""
    workloads: list[WorkloadSpec]

    @model_validator(mode="after")
    def _start_scales_name_workloads(self) -> Scenario:
        kinds = {workload.kind for workload in self.workloads}
        unknown = sorted(set(self.start_scale) - kinds)
        if unknown:
            raise ValueError(f"start_scale names {unknown}, not workloads of this scenario ({sorted(kinds)})")
        if any(scale <= 0 for scale in self.start_scale.values()):
            raise ValueError(f"start_scale must be positive: {self.start_scale}")
        return self


FULL = Scenario(
    name="full",
    sweep=SweepPlan(factor=1.5, ramp=4, down=2, bisections=1),
    scale=ScalePlan(sizes=[4, 16, 32], questions=1),
    start_scale={"multi_turn": 5.0, "bursty": 5.0, "agentic": 3.0},
    workloads=[
        SharedPrefix(rate_rps=16.0, questions=1),
        MultiTurn(rate_rps=20.0, conversations=12),
        LongPrompt(rate_rps=9.0, requests=48),
        DecodeHeavy(rate_rps=24.0, requests=480),
        Bursty(rate_rps=8.0, questions=1),
        KvPressure(rate_rps=10.0, requests=72),
        Agentic(rate_rps=10.0),
    ],
)

# A CI smoke of every code path in ~2 minutes: one sweep point per (workload, system), five systems, four workloads.
QUICK = Scenario(
    name="quick",
    sweep=SweepPlan(ramp=0, down=0, bisections=0),
    scale=ScalePlan(sizes=[2, 4], systems=["pdstack:precise"], rate_rps=8.0, groups_per_engine=2, users=1),
    systems=[
        "pdstack:precise",
        "pdstack:approximate",
        "baseline:round_robin",
        "vllm-router:cache_aware",
        "smg:cache_aware",
    ],
    workloads=[
        SharedPrefix(rate_rps=10.0, groups=8, users=3, questions=1),
        LongPrompt(rate_rps=8.0, requests=16),
        Bursty(rate_rps=10.0, groups=8, users=3, questions=1),
        Agentic(rate_rps=10.0, sessions=4, steps=3, tool_s=(0.2, 0.6)),
    ],
)

SCENARIOS = {"full": FULL, "quick": QUICK}
