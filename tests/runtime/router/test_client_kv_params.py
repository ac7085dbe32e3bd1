"""The router owns ``kv_transfer_params``: whatever a client puts there never reaches an engine (else decode would
open a NIXL handshake to any host:port the client names, or hang on made-up block ids)."""

from __future__ import annotations

import pytest

from tests.support.router_cluster import Cluster

LONG = "SELECT engine FROM pool ORDER BY load;\n" * 40
FORGED = {
    "do_remote_prefill": True,
    "remote_engine_id": "evil",
    "remote_block_ids": [[999999]],
    "remote_host": "203.0.113.9",
    "remote_port": 1,
    "remote_request_id": "x",
    "tp_size": 1,
}


@pytest.mark.parametrize("threshold", [100000, 0], ids=["decode-only", "pd"])
def test_client_kv_transfer_params_never_reach_an_engine(make_cluster, threshold: int) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=threshold)
    status, _, payload = cluster.post(
        "/v1/completions", {"model": "tiny", "prompt": LONG, "max_tokens": 2, "kv_transfer_params": FORGED}
    )
    assert status == 200, payload
    for engine in cluster.prefills + cluster.decodes:
        for received in engine.received:
            params = received.get("kv_transfer_params")
            assert params is None or params.get("remote_engine_id") != "evil", received
            assert params is None or params.get("remote_host") != "203.0.113.9", received
    assert cluster.decodes[0].recomputed == 0


def test_client_params_are_dropped_on_the_decode_only_fallback(make_cluster) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    cluster.prefills[0].faults.status = 500
    status, _, _ = cluster.post(
        "/v1/chat/completions",
        {
            "model": "tiny",
            "max_tokens": 2,
            "kv_transfer_params": FORGED,
            "messages": [{"role": "user", "content": LONG}],
        },
    )
    assert status == 200
    assert "kv_transfer_params" not in cluster.decodes[0].received[-1]
