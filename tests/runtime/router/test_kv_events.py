"""KV events: both wire layouts, re-hashing token ids into the router's own keys, removal and clearing, sequence
gaps and restarts, and a real ZMQ PUB -> SUB round trip."""

from __future__ import annotations

import asyncio

import msgpack
import pytest
import zmq
import zmq.asyncio

from runtime.router.prefix_cache.kv_event_decoding import AllBlocksCleared, BlockRemoved, BlockStored, decode_batch
from runtime.router.prefix_cache.kv_event_indexer import KvEventIndexer
from runtime.router.prefix_cache.kv_event_subscriber import RECONNECT_IVL_MAX_MS, KvEventSubscriber
from runtime.router.prefix_cache.prefix_index import PrefixIndex
from runtime.router.prefix_cache.prompt_blocks import chain_keys
from runtime.router.router_metrics import RouterMetrics
from testbed.ports import free_ports

TOKENS = list(range(1000, 1096))  # three blocks of 32


def map_batch(*events: dict) -> bytes:
    return msgpack.packb([1.5, list(events), 0])


def stored_map(hashes: list[int], parent: int | None, tokens: list[int], block_size: int = 32) -> dict:
    return {
        "type": "BlockStored",
        "block_hashes": hashes,
        "parent_block_hash": parent,
        "token_ids": tokens,
        "block_size": block_size,
        "lora_id": None,
        "medium": "GPU",
        "lora_name": None,
    }


def test_map_layout_decodes() -> None:
    batch = decode_batch(
        map_batch(
            stored_map([11, 12], None, TOKENS[:64]),
            {"type": "BlockRemoved", "block_hashes": [12], "medium": "GPU"},
            {"type": "AllBlocksCleared"},
            {"type": "SomethingNew", "x": 1},
        )
    )
    assert batch.data_parallel_rank == 0
    assert batch.events == [
        BlockStored([11, 12], None, TOKENS[:64], 32, "GPU"),
        BlockRemoved([12], "GPU"),
        AllBlocksCleared(),
    ]


def test_array_layout_decodes() -> None:
    payload = msgpack.packb(
        [
            2.0,
            [
                ["BlockStored", [11], None, TOKENS[:32], 32, None, "GPU"],
                ["BlockRemoved", [11], "GPU"],
                ["AllBlocksCleared"],
            ],
        ]
    )
    batch = decode_batch(payload)
    assert batch.events == [
        BlockStored([11], None, TOKENS[:32], 32, "GPU"),
        BlockRemoved([11], "GPU"),
        AllBlocksCleared(),
    ]
    assert batch.data_parallel_rank is None


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc1",
        msgpack.packb({"a": 1}),
        msgpack.packb([1.0, [42]]),
        msgpack.packb([1.0, [{"type": "BlockStored", "block_hashes": 3}]]),
    ],
)
def test_malformed_batches_raise_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError):
        decode_batch(payload)


def test_indexer_rehashes_token_ids_into_prompt_keys() -> None:
    index = PrefixIndex(100)
    indexer = KvEventIndexer("http://d0", index, 32, 100)
    indexer.apply(BlockStored([0xAAA, 0xBBB], None, TOKENS[:64], 32))
    indexer.apply(BlockStored([0xCCC], 0xBBB, TOKENS[64:96], 32))  # a child block, chained by the engine's hash
    assert index.match(chain_keys(TOKENS, 32)) == {"http://d0": 3}
    indexer.apply(BlockRemoved([0xBBB], "GPU"))
    assert index.match(chain_keys(TOKENS, 32)) == {"http://d0": 1}
    indexer.apply(AllBlocksCleared())
    assert len(index) == 0


def test_indexer_skips_what_it_cannot_place() -> None:
    index = PrefixIndex(100)
    indexer = KvEventIndexer("http://d0", index, 32, 100)
    indexer.apply(BlockStored([1], 0xDEAD, TOKENS[:32], 32))  # parent never seen
    indexer.apply(BlockStored([2], None, TOKENS[:16], 16))  # another block size
    indexer.apply(BlockStored([3], None, TOKENS[:32], 32, "STORAGE"))  # a tier the router does not route on
    indexer.apply(BlockStored([4], None, [], 0, "CPU"))  # an offloaded copy of a block never seen on the device
    assert len(index) == 0
    assert indexer.skipped == {"unknown_parent": 1, "unknown_block": 1, "block_size_mismatch": 1, "other_medium": 1}


def subscriber(index: PrefixIndex, metrics: RouterMetrics) -> KvEventSubscriber:
    indexer = KvEventIndexer("http://d0", index, 32, 100)
    return KvEventSubscriber("d0", "tcp://127.0.0.1:1", indexer, metrics, context=None)  # type: ignore[arg-type]


def frames(sequence: int, payload: bytes) -> list[bytes]:
    return [b"kv@127.0.0.1:8000@tiny", sequence.to_bytes(8, "big", signed=True), payload]


def test_sequence_gap_and_restart_drop_the_engines_entries() -> None:
    index, metrics = PrefixIndex(100), RouterMetrics()
    sub = subscriber(index, metrics)
    sub.handle(frames(0, map_batch(stored_map([1], None, TOKENS[:32]))))
    sub.handle(frames(1, map_batch(stored_map([2], 1, TOKENS[32:64]))))
    assert index.match(chain_keys(TOKENS, 32)) == {"http://d0": 2}
    sub.handle(frames(5, map_batch()))  # events 2-4 lost
    assert len(index) == 0
    sub.handle(frames(6, map_batch(stored_map([1], None, TOKENS[:32]))))
    assert len(index) == 1
    sub.handle(frames(0, map_batch()))  # the engine restarted
    assert len(index) == 0
    sub.handle(frames(1, b"\xc1garbage"))
    resyncs = {
        s.labels["reason"]: s.value
        for s in next(iter(metrics.kv_event_resyncs.collect())).samples
        if s.name.endswith("_total")
    }
    assert resyncs == {"gap": 1.0, "restart": 1.0, "bad_batch": 1.0}


def test_zmq_round_trip() -> None:
    async def scenario() -> int:
        context = zmq.asyncio.Context()
        publisher = context.socket(zmq.PUB)
        port = publisher.bind_to_random_port("tcp://127.0.0.1")
        index, metrics = PrefixIndex(100), RouterMetrics()
        indexer = KvEventIndexer("http://d0", index, 32, 100)
        sub = KvEventSubscriber("d0", f"tcp://127.0.0.1:{port}", indexer, metrics, context)
        sub.start()
        try:
            for sequence in range(200):  # PUB drops until the SUB joined: keep publishing until it lands
                await publisher.send_multipart(frames(sequence, map_batch(stored_map([1], None, TOKENS[:32]))))
                await asyncio.sleep(0.01)
                if len(index):
                    break
            return len(index)
        finally:
            await sub.stop()
            publisher.close(0)
            context.term()

    assert asyncio.run(scenario()) == 1


class RecordingContext:
    """A ZMQ context (the one method a subscriber calls) that keeps the socket it made, for a test to read."""

    def __init__(self) -> None:
        self.context = zmq.asyncio.Context()
        self.made = asyncio.Event()
        self.socket_made: zmq.asyncio.Socket | None = None

    def socket(self, kind: int) -> zmq.asyncio.Socket:
        self.socket_made = self.context.socket(kind)
        self.made.set()
        return self.socket_made


def test_a_subscriber_to_an_absent_publisher_backs_off_its_reconnects() -> None:
    """A rank's port nobody binds (the rank lives on another pod) is retried with a growing interval, up to the cap,
    not every 100 ms for ever (libzmq's default: no maximum, no back-off)."""

    async def scenario() -> tuple[object, object]:
        recording = RecordingContext()
        indexer = KvEventIndexer("http://d0", PrefixIndex(100), 32, 100)
        (port,) = free_ports(1)
        endpoint = f"tcp://127.0.0.1:{port}"
        sub = KvEventSubscriber("d0#dp1", endpoint, indexer, RouterMetrics(), recording, rank=1)  # type: ignore[arg-type]
        sub.start()
        try:
            await asyncio.wait_for(recording.made.wait(), timeout=10)
            socket = recording.socket_made
            return socket.getsockopt(zmq.RECONNECT_IVL), socket.getsockopt(zmq.RECONNECT_IVL_MAX)
        finally:
            await sub.stop()
            recording.context.term()

    initial, cap = asyncio.run(scenario())
    assert cap == RECONNECT_IVL_MAX_MS
    assert isinstance(initial, int) and initial < RECONNECT_IVL_MAX_MS  # libzmq ignores a maximum below it


def test_skipped_events_are_counted_and_logged_once_per_reason(caplog) -> None:
    index, metrics = PrefixIndex(100), RouterMetrics()
    sub = KvEventSubscriber("d0", "tcp://unused:1", KvEventIndexer("http://d0", index, 32, 100), metrics, None)  # type: ignore[arg-type]
    sub.handle(frames(0, map_batch(stored_map([5], 999, TOKENS[:32]), stored_map([6], None, TOKENS[:16], 16))))
    sub.handle(frames(1, map_batch(stored_map([7], 998, TOKENS[:32]))))
    skipped = {
        s.labels["reason"]: s.value
        for s in next(iter(metrics.kv_events_skipped.collect())).samples
        if s.name.endswith("_total")
    }
    assert skipped == {"unknown_parent": 2.0, "block_size_mismatch": 1.0}
    logged = [
        getattr(r, "pdstack_fields", {}).get("reason") for r in caplog.records if r.getMessage() == "kv_events_skipped"
    ]
    assert sorted(logged, key=str) == ["block_size_mismatch", "unknown_parent"]
