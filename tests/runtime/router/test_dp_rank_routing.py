"""Engines of several data-parallel ranks (issue 23, defect 4): vLLM publishes each rank's KV events on the base port
plus the rank, and serves a request on the local rank the ``X-data-parallel-rank`` header names
(runtime/router/prefix_cache/dp_ranks.py has the sources). Real ZMQ publishers on loopback, one per rank, a router
and fake engines: a prefix a rank holds routes to that rank's engine with that rank in the header; a prefix nobody
holds names no rank; an engine of one rank is left as it was (its one port, no header)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import msgpack
import pytest
import zmq

from runtime.router.engines.engine import Engine
from runtime.router.prefix_cache.dp_ranks import RANK_HEADER, RankEndpoint, by_engine, holder, rank_endpoints
from runtime.router.prefix_cache.prefix_index import PrefixIndex
from testbed.fault_engine import FaultEngine
from testbed.ports import free_ports
from tests.support.router_cluster import Cluster

PROMPT_A = list(range(1000, 1064))  # two blocks of 32
PROMPT_B = list(range(2000, 2064))
PROMPT_C = list(range(3000, 3064))


class RankPublishers:
    """One ZMQ PUB per data-parallel rank, on consecutive ports from a base, as vLLM binds them."""

    def __init__(self, ranks: int) -> None:
        self.context = zmq.Context()
        self.sockets: list[zmq.Socket] = []
        self.sequences = [itertools.count() for _ in range(ranks)]
        for _ in range(50):  # a free base whose next ports are free too
            (base,) = free_ports(1)
            sockets = []
            try:
                for rank in range(ranks):
                    socket = self.context.socket(zmq.PUB)
                    sockets.append(socket)
                    socket.bind(f"tcp://127.0.0.1:{base + rank}")
            except zmq.ZMQError:
                for socket in sockets:
                    socket.close(0)
                continue
            self.base, self.sockets = base, sockets
            return
        raise RuntimeError("no run of free ports")

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.base}"

    def store(self, rank: int, tokens: list[int], first_hash: int, stamp: int | None = None) -> None:
        """Rank ``rank`` stored ``tokens`` (whole blocks of 32), stamped with its rank as vLLM stamps a batch (or with
        ``stamp``)."""
        event = {
            "type": "BlockStored",
            "block_hashes": [first_hash + i for i in range(len(tokens) // 32)],
            "parent_block_hash": None,
            "token_ids": tokens,
            "block_size": 32,
            "lora_id": None,
            "medium": "GPU",
        }
        sequence = next(self.sequences[rank]).to_bytes(8, "big", signed=True)
        self.sockets[rank].send_multipart(
            [b"kv@decode@tiny", sequence, msgpack.packb([1.0, [event], rank if stamp is None else stamp])]
        )

    def close(self) -> None:
        for socket in self.sockets:
            socket.close(0)
        self.context.term()


@pytest.fixture
def publishers() -> Iterator[Callable[[int], RankPublishers]]:
    made: list[RankPublishers] = []

    def make(ranks: int) -> RankPublishers:
        made.append(RankPublishers(ranks))
        return made[-1]

    yield make
    for publisher in made:
        publisher.close()


def publish_until_indexed(cluster: Cluster, publish: Callable[[], None], blocks: int) -> None:
    """PUB drops what it sends before the SUB joined: publish (the same blocks, in sequence) until indexed."""

    def indexed() -> bool:
        publish()
        return cluster.metric("pdstack_router_prefix_index_blocks") >= blocks

    cluster.wait_for(indexed, timeout=10)


def complete(cluster: Cluster, prompt: list[int]) -> tuple[str, str | None]:
    """Which engine served the prompt, and the rank header it got."""
    before = {engine.name: len(engine.headers) for engine in cluster.decodes}
    assert cluster.post("/v1/completions", {"model": "tiny", "prompt": prompt, "max_tokens": 2})[0] == 200
    (served,) = [engine for engine in cluster.decodes if len(engine.headers) > before[engine.name]]
    return served.name, served.headers[-1].get(RANK_HEADER)


def engines(*names: str) -> list[FaultEngine]:
    out = []
    for name, port in zip(names, free_ports(len(names)), strict=True):
        engine = FaultEngine(name)
        engine.port = port
        out.append(engine)
    return out


def test_a_prefix_held_on_a_rank_routes_to_that_rank(make_cluster_from, publishers) -> None:
    ranks = publishers(2)
    decode0, decode1 = engines("decode-0", "decode-1")
    static = [
        {"url": decode0.url, "role": "decode"},
        {"url": decode1.url, "role": "decode", "kv_events": ranks.endpoint},
    ]
    cluster = make_cluster_from(
        [decode0, decode1],
        {"discovery": {"static": static}, "prefix_mode": "precise"},
        {"decode": {"data_parallel": 2, "data_parallel_local": 2, "ports": {"kv_events": ranks.base}}},
    )

    def publish() -> None:
        ranks.store(0, PROMPT_A, 100)
        ranks.store(1, PROMPT_B, 200)

    publish_until_indexed(cluster, publish, blocks=4)
    for _ in range(3):  # not the load scorer's tie-break: every time
        assert complete(cluster, PROMPT_A) == ("decode-1", "0")
        assert complete(cluster, PROMPT_B) == ("decode-1", "1")
    assert complete(cluster, PROMPT_C)[1] is None  # held nowhere: vLLM balances over the ranks


def test_an_engine_of_one_rank_gets_no_rank_header(make_cluster_from, publishers) -> None:
    one = publishers(1)
    decode0, decode1 = engines("decode-0", "decode-1")
    static = [{"url": decode0.url, "role": "decode"}, {"url": decode1.url, "role": "decode", "kv_events": one.endpoint}]
    cluster = make_cluster_from(
        [decode0, decode1], {"discovery": {"static": static}, "prefix_mode": "precise"}, {"decode": {}}
    )
    publish_until_indexed(cluster, lambda: one.store(0, PROMPT_A, 100), blocks=2)
    for _ in range(3):
        assert complete(cluster, PROMPT_A) == ("decode-1", None)


def test_rank_endpoints_are_the_replicas_ports_at_their_local_index() -> None:
    assert rank_endpoints("tcp://10.0.0.7:5557", 1, 1) == [RankEndpoint("tcp://10.0.0.7:5557", None, None)]
    # two nodes of two ranks: node 1 hosts global ranks 2 and 3, local 0 and 1 on its pod (runtime/worker.py)
    assert rank_endpoints("tcp://[fd00::7]:5557", 4, 2) == [
        RankEndpoint("tcp://[fd00::7]:5557", 0, 0),
        RankEndpoint("tcp://[fd00::7]:5558", 1, 1),
        RankEndpoint("tcp://[fd00::7]:5559", 2, 0),
        RankEndpoint("tcp://[fd00::7]:5560", 3, 1),
    ]


def test_an_engine_is_credited_with_its_best_rank() -> None:
    url = "http://10.0.0.7:8000"
    matches = by_engine({holder(url, 0): 2, holder(url, 1): 5, "http://d1": 3}, {holder(url, 1): 1})
    assert matches.held == {url: 5, "http://d1": 3}
    assert matches.host == {url: 1}
    assert matches.ranks == {url: 1}


def test_an_engine_leaving_or_restarting_takes_every_rank_with_it() -> None:
    index = PrefixIndex(100)
    url, other = "http://10.0.0.7:8000", "http://10.0.0.70:8000"
    index.add(holder(url, 0), [1, 2])
    index.add(holder(url, 1), [1, 3])
    index.add(other, [1])
    index.engine_reset(Engine(url=url, role="decode"))
    assert index.match([1]) == {other: 1}
    index.add(holder(other, 1), [4])
    index.engine_removed(Engine(url=other, role="decode"))
    assert len(index) == 0


def test_the_prefill_leg_names_the_prefill_rank_and_decode_of_one_rank_none(make_cluster_from, publishers) -> None:
    ranks = publishers(2)
    prefill0, prefill1, decode = engines("prefill-0", "prefill-1", "decode-0")
    static = [
        {"url": prefill0.url, "role": "prefill"},
        {"url": prefill1.url, "role": "prefill", "kv_events": ranks.endpoint},
        {"url": decode.url, "role": "decode"},
    ]
    cluster = make_cluster_from(
        [prefill0, prefill1, decode],
        {"discovery": {"static": static}, "prefix_mode": "precise", "pd_threshold_tokens": 0},
        {"prefill": {"data_parallel": 2, "data_parallel_local": 2, "ports": {"kv_events": ranks.base}}},
    )
    publish_until_indexed(cluster, lambda: ranks.store(1, PROMPT_B, 200), blocks=2)
    for _ in range(3):
        assert cluster.post("/v1/completions", {"model": "tiny", "prompt": PROMPT_B, "max_tokens": 2})[0] == 200
        assert prefill1.headers[-1].get(RANK_HEADER) == "1"
        assert decode.headers[-1].get(RANK_HEADER) is None
    assert not prefill0.headers and len(prefill1.headers) == 3


def test_a_batch_stamped_with_another_rank_than_its_port_is_not_credited(make_cluster_from, publishers) -> None:
    ranks = publishers(2)
    (decode,) = engines("decode-0")
    static = [{"url": decode.url, "role": "decode", "kv_events": ranks.endpoint}]
    cluster = make_cluster_from(
        [decode],
        {"discovery": {"static": static}, "prefix_mode": "precise"},
        {"decode": {"data_parallel": 2, "data_parallel_local": 2, "ports": {"kv_events": ranks.base}}},
    )

    def publish() -> None:
        ranks.store(0, PROMPT_A, 100)
        ranks.store(1, PROMPT_B, 200, stamp=0)  # on rank 1's port, stamped rank 0: not what vLLM 0.32 does

    def refused() -> bool:
        publish()
        return cluster.metric("pdstack_router_kv_events_skipped_total", reason="rank_mismatch") > 0

    publish_until_indexed(cluster, publish, blocks=2)
    cluster.wait_for(refused)
    assert cluster.metric("pdstack_router_prefix_index_blocks") == 2
    assert complete(cluster, PROMPT_B) == ("decode-0", None)
    assert complete(cluster, PROMPT_A) == ("decode-0", "0")
