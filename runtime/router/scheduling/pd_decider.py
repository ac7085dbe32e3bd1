"""The P/D decider: disaggregate only when the chosen decode engine would have to compute enough of the prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Decision = Literal["pd", "decode_only"]


@dataclass(frozen=True)
class PdDecision:
    decision: Decision
    reason: str
    uncached_tokens: int


class PdDecider:
    def __init__(self, threshold_tokens: int) -> None:
        self.threshold_tokens = threshold_tokens

    def decide(self, prompt_tokens: int, cached_on_decode: int, prefill_available: bool,
               single_leg: str | None = None) -> PdDecision:
        """``single_leg``: why the request cannot be split into two legs (see ``OpenAiRequest.single_leg_reason``)."""
        uncached = max(prompt_tokens - cached_on_decode, 0)
        if single_leg is not None:
            return PdDecision("decode_only", single_leg, uncached)
        if not prefill_available:
            return PdDecision("decode_only", "no_prefill_engine", uncached)
        if self.threshold_tokens == 0:
            return PdDecision("pd", "always", uncached)
        if uncached < self.threshold_tokens:
            return PdDecision("decode_only", "few_uncached_tokens", uncached)
        return PdDecision("pd", "many_uncached_tokens", uncached)
