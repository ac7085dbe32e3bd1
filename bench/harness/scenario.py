"""The two scenarios: ``full`` (make bench, ~10 minutes on 2 cores) and ``quick`` (make bench-quick, ~2 minutes).

Both run 4 prefill + 4 decode simulated engines (Llama-3.1-8B on H100, see bench/fake_engine/timing.py) with block
size 16 (vLLM's GPU default, and the size vllm-router's kv_aware policy hard-codes in P/D mode). KV capacity per
engine is scaled with the workloads as llm-d's benchmark is: the shared prefixes of ``shared_prefix`` overflow one
engine's cache (12 x 1536 tokens = 1152 blocks against 640) but fit in the four prefill engines together.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from bench.fake_engine.timing import EngineTiming
from bench.workloads.generators import DecodeHeavy, LongPrompt, MultiTurn, SharedPrefix, WorkloadSpec


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    prefills: int = 4
    decodes: int = 4
    block_size: int = 16
    capacity_blocks: int = 640
    timing: EngineTiming = EngineTiming(time_scale=4.0)
    repeats: int
    workloads: list[WorkloadSpec]


FULL = Scenario(name="full", repeats=2, workloads=[
    SharedPrefix(rate_rps=10.0),
    MultiTurn(rate_rps=10.0),
    LongPrompt(rate_rps=6.0, requests=48),
    DecodeHeavy(rate_rps=8.0, requests=48),
])

QUICK = Scenario(name="quick", repeats=1, workloads=[
    SharedPrefix(rate_rps=10.0, groups=8, users=3, questions=1),
    MultiTurn(rate_rps=10.0, conversations=6, turns=3, think_s=0.5),
    LongPrompt(rate_rps=8.0, requests=16),
    DecodeHeavy(rate_rps=10.0, requests=16, output_tokens=64),
])

SCENARIOS = {"full": FULL, "quick": QUICK}
