"""Stale P/D pairs (issue 20, item 3; vllm #49238, smg #2382): a decode that cannot pull from one prefill (a stale
NIXL handshake after that prefill restarted) while both pull from and serve their other peers. The router routes
around the pair after a few failed pulls, says so in a metric, and keeps serving everything."""

from __future__ import annotations

from tests.support.router_cluster import Cluster

LONG = "SELECT * FROM pairs WHERE prefill = 'stale';\n" * 30


def test_a_pair_that_keeps_failing_is_routed_around(make_cluster) -> None:
    cluster: Cluster = make_cluster(prefills=2, decodes=3, pd_threshold_tokens=0)
    stale_prefill = cluster.prefills[0]
    stale_decode = cluster.decodes[0]
    stale_decode.faults.stale_peers = {stale_prefill.name}
    statuses = [
        cluster.post("/v1/completions", {"model": "tiny", "prompt": f"{i} {LONG}", "max_tokens": 2})[0]
        for i in range(60)
    ]
    assert set(statuses) == {200}
    pair = {"prefill": stale_prefill.url[7:], "decode": stale_decode.url[7:]}
    assert cluster.metric("pdstack_router_pd_pair_pull_failures_total", **pair) == 3
    assert cluster.metric("pdstack_router_pd_pair_stale", **pair) == 1
    assert cluster.metric("pdstack_router_fallbacks_total", reason="decode_pull_failed") == 3
    # both engines keep serving their other peers
    assert stale_decode.pulled >= 5 and stale_prefill.received
    assert len(stale_prefill.received) >= 15
