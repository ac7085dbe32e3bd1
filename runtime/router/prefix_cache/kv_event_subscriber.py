"""Subscribes to one engine's KV events (ZMQ SUB, multipart ``[topic, 8-byte big-endian sequence, payload]``).

The sequence must grow by one. A gap (events lost) or a step back (the engine restarted) means the index no longer
knows what the engine holds: that engine's entries are dropped and rebuilt from the events that follow.

Nothing an engine publishes stops the indexing: a batch that cannot be decoded resyncs, an event that cannot be
applied is skipped and counted (``reason="malformed"``), and should the subscriber still die it is restarted and
logged (engines.registry.supervised). Stopping it never raises, so SIGTERM still exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib

import zmq
import zmq.asyncio

from runtime.json_log import EventLog
from runtime.router.engines.registry import supervised
from runtime.router.prefix_cache.kv_event_decoding import decode_batch
from runtime.router.prefix_cache.kv_event_indexer import KvEventIndexer
from runtime.router.router_metrics import RouterMetrics

log = EventLog("runtime.router.kv_events")

RECONNECT_IVL_MAX_MS = 5_000
"""The longest a subscriber waits between two attempts to reach a publisher that is not there. The router subscribes
to every rank's port of a data-parallel replica on every pod, and most of those ports are never bound (the ranks live
on the other pods: prefix_cache/dp_ranks.py); libzmq's default retries each of them every 100 ms for ever. With a
maximum, libzmq (4.3.5, bundled by the pinned pyzmq 27.3.0) doubles the interval from ZMQ_RECONNECT_IVL (100 ms) on
each attempt up to it (libzmq doc/zmq_setsockopt.adoc, ZMQ_RECONNECT_IVL_MAX: "Default value means that the reconnect
interval is based exclusively on ZMQ_RECONNECT_IVL and no exponential backoff is performed"; a maximum below
ZMQ_RECONNECT_IVL is ignored). An engine that (re)starts is found within this after it binds its publisher (when its
scheduler starts, before it serves HTTP); what it publishes before the subscriber is back is lost, as when the router
subscribes late (those blocks get no prefix credit)."""
SKIP_WHY = {
    "unknown_parent": "a block whose parent the router never saw (it subscribed late or missed events)",
    "block_size_mismatch": "the engine's --block-size differs from serving.model.block_size",
    "unknown_block": "an offloaded copy (an event with only its hash) of a block the router never saw on the device",
    "other_medium": "a copy in a tier the router does not route on (STORAGE)",
    "malformed": "an event whose fields are not what vLLM sends (skipped; indexing goes on)",
    "rank_mismatch": "a batch stamped with another data-parallel rank than the one whose port it came on (vLLM binds "
    "rank r at the base port + r): the router would credit the wrong rank (prefix_cache/dp_ranks.py)",
}


class KvEventSubscriber:
    def __init__(
        self,
        engine_name: str,
        endpoint: str,
        indexer: KvEventIndexer,
        metrics: RouterMetrics,
        context: zmq.asyncio.Context,
        rank: int | None = None,
    ) -> None:
        """``rank``: the data-parallel rank whose publisher binds ``endpoint`` (None: the engine has one)."""
        self.engine_name = engine_name
        self.rank = rank
        self.endpoint = endpoint
        self.indexer = indexer
        self.metrics = metrics
        self.context = context
        self.last_sequence: int | None = None
        self._skip_logged: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(supervised("kv_events", self.run, self.metrics, engine=self.engine_name))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def run(self) -> None:
        socket = self.context.socket(zmq.SUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.connect(self.endpoint)
        log.info("kv_events_subscribed", engine=self.engine_name, endpoint=self.endpoint)
        try:
            while True:
                self.handle(await socket.recv_multipart())
        finally:
            socket.close(linger=0)

    def handle(self, frames: list[bytes]) -> None:
        if len(frames) != 3 or len(frames[1]) != 8:
            self._resync("bad_frame")
            return
        sequence = int.from_bytes(frames[1], "big", signed=True)
        if self.last_sequence is not None and sequence != self.last_sequence + 1:
            self._resync("restart" if sequence <= self.last_sequence else "gap")
        self.last_sequence = sequence
        try:
            batch = decode_batch(frames[2])
        except Exception as error:
            log.warning("kv_event_batch_invalid", engine=self.engine_name, reason=repr(error)[:300])
            self._resync("bad_batch")
            return
        before = dict(self.indexer.skipped)
        mismatch = self.rank is not None and batch.data_parallel_rank not in (None, self.rank)
        if mismatch:
            self.indexer.skipped["rank_mismatch"] = self.indexer.skipped.get("rank_mismatch", 0) + len(batch.events)
        for event in [] if mismatch else batch.events:
            try:
                kind = self.indexer.apply(event)
            except Exception as error:
                if not self.indexer.skipped.get("malformed"):
                    log.warning("kv_event_malformed", engine=self.engine_name, reason=repr(error)[:300])
                self.indexer.skipped["malformed"] = self.indexer.skipped.get("malformed", 0) + 1
                continue
            self.metrics.kv_events.labels(self.engine_name, kind).inc()
        for reason, total in self.indexer.skipped.items():
            if total > before.get(reason, 0):
                self.metrics.kv_events_skipped.labels(self.engine_name, reason).inc(total - before.get(reason, 0))
                if reason not in self._skip_logged:  # once per reason: a misconfiguration repeats on every batch
                    self._skip_logged.add(reason)
                    log.warning(
                        "kv_events_skipped",
                        engine=self.engine_name,
                        reason=reason,
                        effect="those blocks get no prefix credit",
                        why=SKIP_WHY.get(reason, ""),
                    )

    def _resync(self, reason: str) -> None:
        dropped = self.indexer.reset()
        self.metrics.kv_event_resyncs.labels(self.engine_name, reason).inc()
        log.warning("kv_events_resync", engine=self.engine_name, reason=reason, dropped_blocks=dropped)


class RankSubscribers:
    """One engine's subscription when it has several data-parallel ranks: a subscriber per rank's publisher, each
    with its own sequence and its own indexer (a gap on one rank resyncs that rank alone); see dp_ranks.py."""

    def __init__(self, subscribers: list[KvEventSubscriber]) -> None:
        self.subscribers = subscribers

    def start(self) -> None:
        for subscriber in self.subscribers:
            subscriber.start()

    async def stop(self) -> None:
        for subscriber in self.subscribers:
            await subscriber.stop()
