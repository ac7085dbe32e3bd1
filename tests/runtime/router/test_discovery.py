"""Discovery: a static list, DNS A records, and Kubernetes EndpointSlices (list + watch, label selector, bearer
token, 410 Gone relist) against a local HTTP server that speaks the API server's shapes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from runtime.router.config import DnsDiscovery, KubernetesDiscovery, RouterConfig, StaticEngine
from runtime.router.discovery.dns_records import DnsRecordsDiscovery
from runtime.router.discovery.endpoint_slices import EndpointSliceDiscovery
from runtime.router.discovery.static_list import StaticDiscovery
from runtime.router.engines.engine import EngineSpec
from runtime.router.engines.registry import EngineRegistry
from runtime.router.router_metrics import RouterMetrics


def test_static_list() -> None:
    found: list[list[EngineSpec]] = []
    source = StaticDiscovery([StaticEngine(url="http://10.0.0.1:8000", role="decode", kv_events="tcp://x:1")])
    asyncio.run(source.run(found.append))
    assert found == [[EngineSpec("http://10.0.0.1:8000", "decode", "tcp://x:1")]]


def test_dns_a_records() -> None:
    source = DnsRecordsDiscovery(
        DnsDiscovery(decode="localhost"), {"prefill": 8000, "decode": 8200}, lambda ip, role: f"tcp://{ip}:5557"
    )
    assert asyncio.run(source.resolve()) == [EngineSpec("http://127.0.0.1:8200", "decode", "tcp://127.0.0.1:5557")]


class Heard:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def engine_added(self, engine) -> None:
        self.events.append(("added", engine.url))

    def engine_removed(self, engine) -> None:
        self.events.append(("removed", engine.url))

    def engine_reset(self, engine) -> None:
        self.events.append(("reset", engine.url))


def test_registry_keeps_state_of_engines_that_stay_and_tells_its_listeners() -> None:
    pool = EngineRegistry(RouterConfig(), RouterMetrics())
    heard = Heard()
    pool.listeners.append(heard)
    pool.replace([EngineSpec("http://a", "decode"), EngineSpec("http://b", "prefill")])
    engine = pool.get("http://a")
    assert engine is not None
    engine.in_flight = 3
    added, removed = pool.replace([EngineSpec("http://a", "decode"), EngineSpec("http://c", "decode")])
    assert [e.url for e in added] == ["http://c"] and [e.url for e in removed] == ["http://b"]
    assert pool.get("http://a") is engine and engine.in_flight == 3
    assert heard.events == [
        ("added", "http://a"),
        ("added", "http://b"),
        ("removed", "http://b"),
        ("added", "http://c"),
    ]


def endpoint_slice(name: str, role: str, addresses: list[tuple[str, bool]], version: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "addressType": "IPv4",
        "metadata": {
            "name": name,
            "namespace": "serving",
            "resourceVersion": version,
            "labels": {"llm-d.ai/role": role, "kubernetes.io/service-name": f"{role}-svc"},
        },
        "endpoints": [{"addresses": [ip], "conditions": {"ready": ready, "serving": ready}} for ip, ready in addresses],
        "ports": [{"name": "nixl", "port": 5600, "protocol": "TCP"}, {"name": "http", "port": 8000, "protocol": "TCP"}],
    }


class FakeApiServer:
    """Answers the EndpointSlice list, then one watch that streams events, then 410 Gone, then a relist."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], str | None]] = []
        self.lists = 0
        self.watches = 0
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((dict(request.query), request.headers.get("Authorization")))
        if request.query.get("watch") != "true":
            self.lists += 1
            items = [
                endpoint_slice("decode-a", "decode", [("10.0.0.1", True), ("10.0.0.2", False)]),
                endpoint_slice("prefill-a", "prefill", [("10.0.1.1", True)]),
            ]
            if self.lists > 1:
                items = items[:1]
            return web.json_response(
                {"kind": "EndpointSliceList", "metadata": {"resourceVersion": "10"}, "items": items}
            )
        self.watches += 1
        if self.watches > 1:
            return web.json_response({"kind": "Status", "code": 410}, status=410)
        out = web.StreamResponse(headers={"Content-Type": "application/json"})
        await out.prepare(request)
        events = [
            {"type": "BOOKMARK", "object": {"kind": "EndpointSlice", "metadata": {"resourceVersion": "11"}}},
            {
                "type": "MODIFIED",
                "object": endpoint_slice("decode-a", "decode", [("10.0.0.1", True), ("10.0.0.2", True)], "12"),
            },
            {"type": "DELETED", "object": endpoint_slice("prefill-a", "prefill", [], "13")},
        ]
        for event in events:
            await out.write(json.dumps(event).encode() + b"\n")
        await self.release.wait()
        await out.write(json.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 410}}).encode() + b"\n")
        await out.write_eof()
        return out


def test_endpoint_slices_list_watch_and_relist(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "namespace").write_text("serving")

    async def scenario() -> tuple[list[list[str]], FakeApiServer]:
        api = FakeApiServer()
        app = web.Application()
        app.router.add_get("/apis/discovery.k8s.io/v1/namespaces/serving/endpointslices", api.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        config = KubernetesDiscovery(api_server=f"http://127.0.0.1:{port}", service_account_dir=str(tmp_path))
        seen: list[list[str]] = []
        source = EndpointSliceDiscovery(config, lambda ip, role: None, retry_s=0.01)
        task = asyncio.create_task(source.run(lambda specs: seen.append([f"{s.role}:{s.url}" for s in specs])))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(seen) >= 3:
                break
        api.release.set()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if api.lists >= 2 and len(seen) >= 4:
                break
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()
        return seen, api

    seen, api = asyncio.run(scenario())
    assert seen[0] == ["decode:http://10.0.0.1:8000", "prefill:http://10.0.1.1:8000"]
    assert seen[1] == ["decode:http://10.0.0.1:8000", "decode:http://10.0.0.2:8000", "prefill:http://10.0.1.1:8000"]
    assert seen[2] == ["decode:http://10.0.0.1:8000", "decode:http://10.0.0.2:8000"]
    assert seen[3] == ["decode:http://10.0.0.1:8000"]  # relisted after 410 Gone
    query, authorization = api.requests[0]
    assert query["labelSelector"] == "llm-d.ai/role in (prefill,decode)" and authorization == "Bearer sa-token"
    watch_query = api.requests[1][0]
    assert watch_query["watch"] == "true" and watch_query["resourceVersion"] == "10"
