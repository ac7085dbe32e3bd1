"""Stale prefill/decode pairs: KV pulls that keep failing between one prefill and one decode while both serve their
other peers.

The field's most reported P/D failure (vllm-project/vllm issue #49238, smg-project/smg issue #2382): after a prefill
or decode restarts, a surviving peer can keep a stale NIXL handshake with it, and every transfer between the two
fails while every pod reports Ready. No engine is broken, so neither health checks nor breakers see it; only the
pair is. The router keeps each pair's pull outcomes: ``failures`` consecutive failed pulls in a pair whose prefill
has lately been pulled from by another decode and whose decode has lately pulled from another prefill make the pair
stale, and the scheduler stops pairing the two for ``quarantine_s`` (the request takes another prefill, or decode
serves it alone). After that one request may try the pair again: a pull that works clears it, one more failure
quarantines it again. An engine that restarts or leaves takes its pairs with it (a new process, a new handshake).

Metrics: ``pdstack_router_pd_pair_pull_failures_total{prefill, decode}`` and ``pdstack_router_pd_pair_stale``
(1 while routed around; the PdstackStalePdPair alert); the README's runbook says how to heal a pair.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from runtime.json_log import EventLog
from runtime.router.engines.engine import Engine
from runtime.router.router_metrics import RouterMetrics

log = EventLog("runtime.router.pairs")
FAILURES = 3
"""Consecutive failed pulls that make a pair stale (when both engines serve other peers)."""
QUARANTINE_S = 60.0
PEER_WINDOW_S = 300.0
"""A good pull with another peer this recent shows an engine serves its other peers."""


@dataclass
class _Pair:
    failures: int = 0
    stale_until: float | None = None


class PairHealth:
    def __init__(
        self,
        metrics: RouterMetrics,
        failures: int = FAILURES,
        quarantine_s: float = QUARANTINE_S,
        peer_window_s: float = PEER_WINDOW_S,
    ) -> None:
        self.metrics = metrics
        self.failures = failures
        self.quarantine_s = quarantine_s
        self.peer_window_s = peer_window_s
        self._pairs: dict[tuple[Engine, Engine], _Pair] = {}
        self._good: dict[tuple[Engine, Engine], float] = {}
        """(prefill, decode) -> when a pull between them last worked."""

    def stale(self, prefill: Engine, decode: Engine, now: float | None = None) -> bool:
        """Routed around now (a quarantine that has run out lets one request try the pair again)."""
        pair = self._pairs.get((prefill, decode))
        if pair is None or pair.stale_until is None:
            return False
        now = time.monotonic() if now is None else now
        if now < pair.stale_until:
            return True
        pair.stale_until = None  # the trial: its outcome decides (one more failure quarantines it again)
        return False

    def pulled(self, prefill: Engine, decode: Engine) -> None:
        self._good[(prefill, decode)] = time.monotonic()
        pair = self._pairs.pop((prefill, decode), None)
        if pair is not None and pair.failures >= self.failures:
            log.info("pd_pair_healed", prefill=prefill.name, decode=decode.name)
            self._publish(prefill, decode, False)

    def pull_failed(self, prefill: Engine, decode: Engine) -> None:
        if not prefill.probes_pass or not decode.probes_pass:
            return  # draining or down (a draining vLLM answers 500 "cannot schedule new futures after shutdown")
        self.metrics.pd_pair_pull_failures.labels(prefill.name, decode.name).inc()
        pair = self._pairs.setdefault((prefill, decode), _Pair())
        pair.failures += 1
        if pair.failures < self.failures or pair.stale_until is not None:
            return
        now = time.monotonic()
        if not (self._serves_others(prefill, decode, now) and self._serves_others(decode, prefill, now)):
            return  # the engine itself fails, not the pair: its breaker and health checks handle it
        pair.stale_until = now + self.quarantine_s
        self._publish(prefill, decode, True)
        log.warning(
            "pd_pair_stale",
            prefill=prefill.name,
            decode=decode.name,
            failed_pulls=pair.failures,
            routed_around_s=self.quarantine_s,
            fix="restart the engine of the two that did not restart last (it holds a stale NIXL handshake); "
            "see the README's runbook",
        )

    def _serves_others(self, engine: Engine, peer: Engine, now: float) -> bool:
        for (prefill, decode), when in self._good.items():
            other = decode if prefill is engine else prefill if decode is engine else None
            if other is not None and other is not peer and now - when <= self.peer_window_s:
                return True
        return False

    def _publish(self, prefill: Engine, decode: Engine, stale: bool) -> None:
        if stale:
            self.metrics.pd_pair_stale.labels(prefill.name, decode.name).set(1)
        else:
            try:
                self.metrics.pd_pair_stale.remove(prefill.name, decode.name)
            except KeyError:
                pass

    def forget(self, engine: Engine, counters: bool) -> None:
        """The engine's pairs start over; ``counters``: drop its failure counts too (it left: no series stays)."""
        for key in [key for key in (*self._pairs, *self._good) if engine in key]:
            self._pairs.pop(key, None)
            self._good.pop(key, None)
            self._publish(*key, False)
            if counters:
                try:
                    self.metrics.pd_pair_pull_failures.remove(key[0].name, key[1].name)
                except KeyError:
                    pass

    # the registry's listener: a restarted engine's pairs start over (its counts stay: the same series); a departed
    # engine's series go with it
    def engine_added(self, engine: Engine) -> None:
        pass

    def engine_removed(self, engine: Engine) -> None:
        self.forget(engine, counters=True)

    def engine_reset(self, engine: Engine) -> None:
        self.forget(engine, counters=False)
