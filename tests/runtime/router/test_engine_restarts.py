"""An engine that restarts, or comes back after being ejected, holds an empty KV cache: the prefix index must not
predict hits on it (approximate mode here: no KV events tell the router)."""

from __future__ import annotations

from tests.support.router_cluster import Cluster

LONG = "def handler(request):\n    return respond(request, status=200)\n" * 30
BODY = {"model": "tiny", "prompt": LONG, "max_tokens": 2}


def predicted(cluster: Cluster) -> float:
    return cluster.metric("pdstack_router_predicted_prefix_hit_tokens_total", role="decode")


def test_a_restarted_decode_is_not_predicted_cached(make_cluster) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=100000)
    assert cluster.post("/v1/completions", BODY)[0] == 200
    assert cluster.metric("pdstack_router_prefix_index_blocks") > 0
    cluster.decodes[0].started_at += 100.0  # its process_start_time_seconds moved: a new process, an empty cache
    cluster.wait_for(lambda: cluster.metric("pdstack_router_prefix_index_blocks") == 0)
    before = predicted(cluster)
    assert cluster.post("/v1/completions", BODY)[0] == 200
    assert predicted(cluster) == before


def test_a_decode_back_from_failed_health_checks_is_not_predicted_cached(make_cluster) -> None:
    cluster: Cluster = make_cluster(decodes=2, pd_threshold_tokens=100000)
    assert cluster.post("/v1/completions", BODY)[0] == 200
    served = next(decode for decode in cluster.decodes if decode.received)
    name = served.url[7:]
    served.healthy = False
    cluster.wait_for(lambda: cluster.metric("pdstack_router_engine_ejections_total", engine=name) == 1)
    served.healthy = True
    cluster.wait_for(lambda: cluster.metric("pdstack_router_engine_restorations_total", engine=name) == 1)
    assert cluster.metric("pdstack_router_prefix_index_blocks") == 0
