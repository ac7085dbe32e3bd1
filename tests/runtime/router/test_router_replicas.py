"""Two router replicas over the same engines, as the cluster runs them: a session lands on the same decode from
either (no shared state between replicas)."""

from __future__ import annotations

import json
import urllib.request

from runtime.router.server import RouterServer
from testbed.ports import free_ports
from tests.support.router_cluster import Cluster


def test_a_session_lands_on_the_same_decode_from_either_replica(make_cluster) -> None:
    first: Cluster = make_cluster(prefills=0, decodes=3, pd_threshold_tokens=100000)
    port, metrics_port = free_ports(2)
    config = first.router.serving.model_copy(
        update={"router": first.router.config.model_copy(update={"port": port, "metrics_port": metrics_port})}
    )

    async def start() -> RouterServer:
        server = RouterServer(config)
        await server.start()
        return server

    second = first.loop.run(start())
    try:

        def decode_for(port: int, session: str) -> str:
            body = json.dumps({"model": "tiny", "prompt": f"turn of {session}", "max_tokens": 1}).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/completions",
                data=body,
                headers={"Content-Type": "application/json", "x-session-id": session},
            )
            before = [len(engine.received) for engine in first.decodes]
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
            (served,) = [
                engine.name for engine, count in zip(first.decodes, before, strict=True) if len(engine.received) > count
            ]
            return served

        sessions = [f"chat-{i}" for i in range(12)]
        on_first = {s: decode_for(first.router.config.port, s) for s in sessions}
        on_second = {s: decode_for(second.config.port, s) for s in sessions}
        assert on_first == on_second
        assert len(set(on_first.values())) > 1  # sessions spread over the decodes
    finally:
        first.loop.run(second.stop())
