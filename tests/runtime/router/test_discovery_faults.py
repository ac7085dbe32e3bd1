"""Discovery and KV events that misbehave (issue 20, items 2, 5 and 14), seen from outside the router process: a
mock Kubernetes API and a mock KV-event publisher on loopback, requests over HTTP, SIGTERM and the exit code."""

from __future__ import annotations

import socket
from collections.abc import Callable
from functools import partial
from pathlib import Path

import msgpack
import zmq

from runtime.router.discovery import dns_records
from testbed.fault_engine import FaultEngine
from testbed.ports import free_ports
from tests.runtime.router.fake_kube_api import FakeKubeApi, engine_slice
from tests.runtime.router.router_process_cluster import ProcessCluster, router_process  # noqa: F401 - fixture

BODY = {"model": "tiny", "prompt": "SELECT 1;\n" * 20, "max_tokens": 2}


def kube_router(
    router_process: Callable[..., ProcessCluster],  # noqa: F811 - the fixture's value, passed on by each test
    tmp_path: Path,
    decodes: int = 2,
    **router: object,
) -> tuple[ProcessCluster, FakeKubeApi]:
    loop = router_process.loop  # type: ignore[attr-defined]
    api = FakeKubeApi(tmp_path / "serviceaccount")
    loop.run(api.start())
    router_process.closers.append(api.stop)  # type: ignore[attr-defined]
    engines = router_process.engines(*(f"decode-{i}" for i in range(decodes)))  # type: ignore[attr-defined]
    for engine in engines:
        api.slices[engine.name] = engine_slice(engine, "decode")
    cluster = router_process({"discovery": api.discovery(), **router}, engines)
    cluster.api = api  # type: ignore[attr-defined]
    return cluster, api


def on_loop(cluster: ProcessCluster, action: Callable[[], None]) -> None:
    async def run() -> None:
        action()

    cluster.loop.run(run())


def test_an_engine_that_left_discovery_drops_its_series(router_process, tmp_path: Path) -> None:  # noqa: F811
    """A decode engine goes down, then its pod leaves the EndpointSlice: the router stops reporting it (its
    healthy=0 series would keep PdstackEngineDown firing until the router restarts)."""
    cluster, api = kube_router(router_process, tmp_path)
    gone, stays = cluster.engines
    name = gone.url[7:]
    cluster.wait_for(lambda: cluster.metric("pdstack_router_engine_healthy", engine=name) == 1)
    cluster.loop.run(gone.stop())
    cluster.wait_for(
        lambda: (
            cluster.metric("pdstack_router_engine_healthy", engine=name) == 0
            and f'engine="{name}"' in cluster.metrics_text()
        )
    )
    on_loop(cluster, lambda: api.put(engine_slice(gone, "decode"), "DELETED"))
    cluster.wait_for(lambda: cluster.metric("pdstack_router_discovery_changes_total", change="removed") == 1)
    text = cluster.metrics_text()
    for family in (
        "pdstack_router_engine_healthy",
        "pdstack_router_engine_breaker_state",
        "pdstack_router_engine_in_flight",
    ):
        assert not [line for line in text.splitlines() if line.startswith(family) and f'engine="{name}"' in line]
    assert cluster.metric("pdstack_router_engine_healthy", engine=stays.url[7:]) == 1
    assert cluster.post("/v1/completions", BODY)[0] == 200


def test_undecodable_watch_lines_are_skipped_and_counted(router_process, tmp_path: Path) -> None:  # noqa: F811
    """A non-object line, a line that is no JSON and an object that is no EndpointSlice on the watch: each is
    skipped and counted, and the next good event is applied (discovery goes on)."""
    cluster, api = kube_router(router_process, tmp_path, decodes=1)
    cluster.wait_for(lambda: bool(api.watches))
    (newcomer,) = router_process.engines("decode-new")
    for line in (b"[1, 2, 3]", b"{not json", b'{"type": "MODIFIED", "object": {"metadata": 7}}'):
        on_loop(cluster, partial(api.send_line, line))
    on_loop(cluster, lambda: api.put(engine_slice(newcomer, "decode"), "ADDED"))
    cluster.wait_for(lambda: cluster.metric("pdstack_router_engine_healthy", engine=newcomer.url[7:]) == 1)
    assert (
        cluster.metric("pdstack_router_discovery_failures_total", source="endpointslices", reason="bad_watch_line") == 3
    )
    assert cluster.metric("pdstack_router_discovery_changes_total", change="added") == 2


def test_a_discovery_task_that_dies_is_restarted_and_logged(router_process, tmp_path: Path) -> None:  # noqa: F811
    """The API server's first list has a shape nobody handles (``items`` is a number): the discovery task dies of
    it, is logged with its traceback, counted, and restarted; the next list finds the engine."""
    loop = router_process.loop
    api = FakeKubeApi(tmp_path / "serviceaccount")
    api.odd_lists = 1
    loop.run(api.start())
    router_process.closers.append(api.stop)
    (decode,) = router_process.engines("decode-0")
    api.slices[decode.name] = engine_slice(decode, "decode")
    cluster = router_process({"discovery": api.discovery()}, [decode])
    assert cluster.post("/v1/completions", BODY)[0] == 200
    assert cluster.metric("pdstack_router_task_restarts_total", task="discovery") == 1
    (died,) = cluster.log_events("task_died")
    assert died["task"] == "discovery" and "TypeError" in died["exception"]


def test_failing_lists_and_dropped_watches_keep_the_engines(router_process, tmp_path: Path) -> None:  # noqa: F811
    """The API server fails lists with 500 and drops the watch: the router keeps the engines it knew, serves every
    request, and says so in a metric and the log."""
    cluster, api = kube_router(router_process, tmp_path)
    cluster.wait_for(lambda: bool(api.watches))
    api.fail_lists = 3
    on_loop(cluster, api.drop_watches)
    statuses = []
    while api.fail_lists:
        statuses.append(cluster.post("/v1/completions", BODY)[0])
    cluster.wait_for(lambda: bool(api.watches))
    statuses.append(cluster.post("/v1/completions", BODY)[0])
    assert set(statuses) == {200}
    assert cluster.metric("pdstack_router_discovery_failures_total", source="endpointslices", reason="list") == 3
    assert cluster.metric("pdstack_router_discovery_changes_total", change="removed") == 0
    assert len(cluster.log_events("endpointslice_discovery_failed")) >= 3


def test_a_malformed_kv_event_is_skipped_counted_and_sigterm_exits_0(router_process) -> None:  # noqa: F811
    """An engine publishes a KV event the index cannot apply (a parent hash that is a map): it is skipped and
    counted, the events after it are indexed, and SIGTERM still exits 0."""
    context = zmq.Context()
    publisher = context.socket(zmq.PUB)
    port = publisher.bind_to_random_port("tcp://127.0.0.1")
    try:
        (decode,) = router_process.engines("decode-0")
        static = [{"url": decode.url, "role": "decode", "kv_events": f"tcp://127.0.0.1:{port}"}]
        cluster = router_process({"discovery": {"static": static}, "prefix_mode": "precise"}, [decode], kv_events=True)
        tokens = list(range(1000, 1032))
        bad = {
            "type": "BlockStored",
            "block_hashes": [1],
            "parent_block_hash": {"not": "hashable"},
            "token_ids": tokens,
            "block_size": 32,
            "medium": "GPU",
        }
        good = {
            "type": "BlockStored",
            "block_hashes": [2],
            "parent_block_hash": None,
            "token_ids": tokens,
            "block_size": 32,
            "medium": "GPU",
        }
        sequence = 0

        def publish_until_indexed() -> bool:
            nonlocal sequence
            for event in (bad, good):
                payload = msgpack.packb([1.0, [event], 0])
                publisher.send_multipart([b"kv@decode@tiny", sequence.to_bytes(8, "big", signed=True), payload])
                sequence += 1
            return (
                cluster.metric("pdstack_router_kv_events_total", type="BlockStored") >= 1
                and cluster.metric("pdstack_router_kv_events_skipped_total", reason="malformed") >= 1
            )

        cluster.wait_for(publish_until_indexed)
        assert cluster.metric("pdstack_router_prefix_index_blocks") == 1
        assert cluster.log_events("kv_event_malformed")
        assert cluster.post("/v1/completions", BODY)[0] == 200
        assert cluster.terminate() == 0
    finally:
        publisher.close(0)
        context.term()


class DnsView:
    """The resolver as the router sees it: the test says what a name resolves to, or that lookups fail."""

    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records
        self.failing = False
        self.lookups = 0

    async def __call__(self, name: str) -> list[str]:
        self.lookups += 1
        if self.failing:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return list(self.records.get(name, []))


def test_a_failed_dns_lookup_keeps_the_last_good_answer(make_cluster_from, monkeypatch) -> None:
    """The resolver fails for a while (a blip of EAI_AGAIN): the router keeps the engines of its last good answer
    (no 503, the same engines), logs it and counts it."""
    port = free_ports(1)[0]
    view = DnsView({"decode-engines.test": ["127.0.0.2", "127.0.0.3"]})
    monkeypatch.setattr(dns_records, "resolve_a_records", view)
    cluster = make_cluster_from(
        engines=[FaultEngine(f"decode-{i}", host=f"127.0.0.{i + 2}", port=port) for i in range(2)],
        router={"discovery": {"dns": {"decode": "decode-engines.test", "interval_s": 0.05}}},
        roles={"decode": {"ports": {"http": port}}},
    )
    assert {cluster.post("/v1/completions", BODY)[0] for _ in range(4)} == {200}
    view.failing = True
    seen = view.lookups
    statuses = []
    while view.lookups < seen + 10:  # about half a second of failing lookups
        statuses.append(cluster.post("/v1/completions", BODY)[0])
    assert set(statuses) == {200}
    assert cluster.metric("pdstack_router_discovery_failures_total", source="dns", reason="lookup") >= 10
    assert cluster.metric("pdstack_router_discovery_changes_total", change="removed") == 0
    view.failing = False
    view.records["decode-engines.test"] = ["127.0.0.2"]  # a good answer still replaces the set
    cluster.wait_for(lambda: cluster.metric("pdstack_router_discovery_changes_total", change="removed") == 1)
