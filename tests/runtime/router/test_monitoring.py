"""Monitoring that tells the truth (issue 20, items 13 and 15-17): what the router counts and logs when it fails,
when a client goes away, and when a request is not even HTTP."""

from __future__ import annotations

import json
import logging

import pytest

from runtime.json_log import JsonLineFormatter
from tests.runtime.router.conftest import Cluster


def body(**fields: object) -> dict[str, object]:
    return {"model": "tiny", "prompt": "hello", "max_tokens": 3, **fields}


def test_a_router_bug_is_a_500_counted_as_error_and_logged_with_its_traceback(
        make_cluster, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    cluster: Cluster = make_cluster(pd_threshold_tokens=100000)

    async def broken(*args: object) -> None:
        raise RuntimeError("a bug in the flow")

    cluster.router.flow.serve = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="runtime"):
        status, _, payload = cluster.post("/v1/completions", body())
    assert status == 500 and json.loads(payload)["error"]["code"] == "internal_error"
    assert cluster.metric("pdstack_router_requests_total", outcome="error") == 1
    assert cluster.metric("pdstack_router_requests_total", outcome="ok") == 0
    record = next(record for record in caplog.records if record.getMessage() == "unhandled")
    line = json.loads(JsonLineFormatter().format(record))
    assert "exc_info" not in line
    assert "Traceback" in line["exception"] and "RuntimeError: a bug in the flow" in line["exception"]
