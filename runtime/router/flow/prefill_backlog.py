"""The prefill scaling signal: seconds of prompt work this router has handed out that has not produced a first token.

Each request counts its uncached prompt tokens (its prompt minus what the chosen decode engine already holds: the
work a prefill replica would do) from the routing decision until its prompt is computed: the end of the prefill leg
on the P/D path (a decode engine that is slow to take the pulled KV is decode's signal, not prefill's), the first
byte on the decode-only path (so the signal still rises when prefill has scaled to zero and decode prefills). Divided by
one prefill replica's calibrated throughput, it reads "seconds one replica needs to clear the backlog"; summed across
router replicas and divided by the autoscaler's target (the TTFT budget), it is the prefill replica count (README).
"""

from __future__ import annotations

from prometheus_client import Gauge


class PrefillBacklog:
    def __init__(self, tokens_per_s: float, gauge: Gauge) -> None:
        self.tokens_per_s = tokens_per_s
        self._tokens: dict[object, int] = {}
        gauge.set_function(lambda: self.seconds)

    @property
    def seconds(self) -> float:
        return sum(self._tokens.values()) / self.tokens_per_s

    def enter(self, request: object, uncached_tokens: int) -> None:
        self._tokens[request] = max(0, uncached_tokens)

    def leave(self, request: object) -> None:
        """When the prompt is computed, or when the request ends without that: once per request (the flow's
        ``on_prompt_computed``)."""
        self._tokens.pop(request, None)
