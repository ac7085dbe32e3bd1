"""The planner's traffic: a trace window (the replay's, bench/replay/workload.py) or one of the bench's completion
workloads at a rate, as planned requests."""

from __future__ import annotations

from bench.plan.simulate import PlannedRequest
from bench.replay.prompts import LazyPrompt
from bench.replay.workload import TraceWorkload
from bench.workloads.generators import Bursty, DecodeHeavy, KvPressure, LongPrompt, SharedPrefix, generate

WORKLOADS = {
    "shared_prefix": SharedPrefix,
    "long_prompt": LongPrompt,
    "decode_heavy": DecodeHeavy,
    "bursty": Bursty,
    "kv_pressure": KvPressure,
}


def trace_requests(workload: TraceWorkload) -> list[PlannedRequest]:
    """The replay's window (its skip rules, bench/replay/workload.py) as planned requests, in trace seconds divided
    by the speedup; each prompt's tokens are derived from its hash ids when the simulation reads them."""
    return [
        PlannedRequest(at, LazyPrompt(workload.prompts, workload.trace_request(position)), output)
        for position, (at, output) in enumerate(zip(workload.arrivals_s, workload.output_lengths, strict=True))
    ]


def workload_requests(kind: str, rate: float) -> list[PlannedRequest]:
    """A bench workload's prompts (bench vocabulary words, one token each) at ``rate``."""
    return [
        PlannedRequest(r.at_s, [int(w[1:]) for w in r.body["prompt"].split()], int(r.body["max_tokens"]))
        for r in generate(WORKLOADS[kind](rate_rps=rate))
    ]
