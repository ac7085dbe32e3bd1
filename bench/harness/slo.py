"""Service-level objectives per workload, in MODELLED milliseconds (the simulated H100's time; a run's wall
milliseconds are modelled x ``time_scale``), and the attainment of a run: the share of its requests that met both.

Goodput (DistServe, OSDI'24) is the highest request rate at which at least ``ATTAINMENT_GOAL`` of the requests meet
BOTH the TTFT and the TPOT objective. As DistServe does, each objective is a multiple of what the work costs an idle
engine (bench/fake_engine/timing.py: 6 ms per step for the weights, 0.032 ms per uncached prompt token, 0.005 ms per
pulled token over NIXL):

- TTFT: about 3x a cold request's time to first token with nothing queued: prefill of the whole (uncached) prompt,
  the KV pull and the first decode step. shared_prefix, bursty and kv_pressure send ~1.7k-token prompts
  (6 + 1700 x 0.032 + 8.5 + 6 ~ 75 ms cold): 250 ms. multi_turn's prompts grow to ~1.1k tokens (~52 ms): 150 ms.
  long_prompt's reach 3k tokens (~125 ms): 400 ms. decode_heavy's are under 100 tokens (~15 ms): 60 ms. agentic's
  contexts reach ~3.5k tokens but most of each is the session's cached history (its first call, ~1.2k tokens cold,
  ~50 ms): 300 ms (what an agent loop waits per tool call, several times per task).
- TPOT (time per output token after the first): 5x one decode step of a lone request (6 ms): 30 ms, for every
  workload. It binds when a decode engine also prefills (the decode-only path) or when a router cannot keep up with
  relaying the tokens.

A failed request meets neither objective.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.harness.load_generator import RequestResult

ATTAINMENT_GOAL = 0.9


@dataclass(frozen=True)
class Slo:
    ttft_ms: float
    tpot_ms: float = 30.0

    def met(self, result: RequestResult, time_scale: float) -> bool:
        return (
            result.ok
            and result.ttft_s * 1000.0 / time_scale <= self.ttft_ms
            and result.tpot_s * 1000.0 / time_scale <= self.tpot_ms
        )

    def attainment(self, results: list[RequestResult], time_scale: float) -> float:
        return sum(1 for r in results if self.met(r, time_scale)) / len(results) if results else 0.0


SLOS: dict[str, Slo] = {
    "shared_prefix": Slo(ttft_ms=250.0),
    "bursty": Slo(ttft_ms=250.0),
    "kv_pressure": Slo(ttft_ms=250.0),
    "multi_turn": Slo(ttft_ms=150.0),
    "long_prompt": Slo(ttft_ms=400.0),
    "decode_heavy": Slo(ttft_ms=60.0),
    "agentic": Slo(ttft_ms=300.0),
}
