"""vLLM's utility endpoints through the router, as vLLM's benchmark client calls them."""

from __future__ import annotations

import json

from tests.runtime.router.conftest import Cluster


def test_tokenize_detokenize_and_version_reach_an_engine(make_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster: Cluster = make_cluster()
    status, headers, payload = cluster.post("/tokenize", {"model": "tiny", "prompt": "hi"},
                                            headers={"X-Request-Id": "tok-1"})
    assert status == 200 and json.loads(payload)["tokens"] == [104, 105] and headers["X-Request-Id"] == "tok-1"
    status, _, payload = cluster.post("/detokenize", {"model": "tiny", "tokens": [104, 105]})
    assert status == 200 and json.loads(payload)["prompt"] == "hi"
    status, _, payload = cluster.get("/version")
    assert status == 200 and json.loads(payload)["version"] == "0.32.0+fake"


def test_utility_endpoints_without_an_engine_are_503(make_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster: Cluster = make_cluster(prefills=0)
    cluster.decodes[0].healthy = False
    cluster.wait_for(lambda: cluster.get("/ready")[0] == 503)
    status, _, payload = cluster.post("/tokenize", {"model": "tiny", "prompt": "hi"})
    assert status == 503 and json.loads(payload)["error"]["code"] == "no_engine_available"
