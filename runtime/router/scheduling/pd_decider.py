"""The P/D decider: disaggregate when the chosen decode engine would have to compute enough of the prompt, or when a
short prompt's decode engine is busy.

A decode engine that computes a prompt itself runs it inside the steps of its whole running batch (chunked prefill):
every running request's next token waits for it. While the engine is lightly loaded that costs little and saves the
second leg and the KV transfer (TTFT about halves on short prompts). Once it is busy (requests waiting, or its KV
cache nearly full: a large batch) the same prefill slows every request in the batch and the engine's throughput
falls, so requests queue; then a short prompt is prefilled on a prefill engine instead. Only short prompts (fewer
than the threshold in all) switch: the prefill engine's extra work is then bounded by the threshold, whatever it
holds cached (a long prompt whose few uncached tokens sit on the decode engine would cost a prefill engine the
whole prompt). Measured on the routing benchmark's decode_heavy workload: bench/README.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from runtime.router.engines.engine import Engine

Decision = Literal["pd", "decode_only"]


@dataclass(frozen=True)
class PdDecision:
    decision: Decision
    reason: str
    uncached_tokens: int


class PdDecider:
    def __init__(self, threshold_tokens: int, busy_kv_usage: float = 1.0) -> None:
        self.threshold_tokens = threshold_tokens
        self.busy_kv_usage = busy_kv_usage

    def busy(self, decode: Engine) -> bool:
        """The decode engine queues requests, or its KV cache is at least ``busy_kv_usage`` full (last scrape)."""
        return decode.waiting > 0 or decode.kv_usage >= self.busy_kv_usage

    def decide(
        self,
        prompt_tokens: int,
        cached_on_decode: int,
        prefill_available: bool,
        single_leg: str | None = None,
        decode_busy: bool = False,
    ) -> PdDecision:
        """``single_leg``: why the request cannot be split into two legs (see ``OpenAiRequest.single_leg_reason``);
        ``decode_busy``: :meth:`busy` of the chosen decode engine."""
        uncached = max(prompt_tokens - cached_on_decode, 0)
        if single_leg is not None:
            return PdDecision("decode_only", single_leg, uncached)
        if not prefill_available:
            return PdDecision("decode_only", "no_prefill_engine", uncached)
        if self.threshold_tokens == 0:
            return PdDecision("pd", "always", uncached)
        if uncached < self.threshold_tokens:
            if decode_busy and prompt_tokens < self.threshold_tokens:
                return PdDecision("pd", "decode_busy", uncached)
            return PdDecision("decode_only", "few_uncached_tokens", uncached)
        return PdDecision("pd", "many_uncached_tokens", uncached)
