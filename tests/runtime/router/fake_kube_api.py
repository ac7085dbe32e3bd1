"""A Kubernetes API server's EndpointSlice list and watch on loopback, scripted by the test: the slices it lists,
the watch events (or raw lines) it streams, lists that fail, watches that drop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from testbed.fault_engine import FaultEngine

NAMESPACE = "serving"


def engine_slice(engine: FaultEngine, role: str, ready: bool = True) -> dict[str, Any]:
    """One EndpointSlice per engine (each fake engine has its own port on 127.0.0.1)."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "addressType": "IPv4",
        "metadata": {"name": engine.name, "namespace": NAMESPACE, "labels": {"llm-d.ai/role": role}},
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready}}],
        "ports": [{"name": "http", "port": engine.port, "protocol": "TCP"}],
    }


class FakeKubeApi:
    def __init__(self, account_dir: Path) -> None:
        self.slices: dict[str, dict[str, Any]] = {}
        self.version = 1
        self.fail_lists = 0
        """Answer this many lists with 500."""
        self.lists = 0
        self.odd_lists = 0
        """Answer this many lists with a 200 whose ``items`` is not a list (a shape nobody handles)."""
        self.watches: list[asyncio.Queue[bytes | None]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        account_dir.mkdir(parents=True, exist_ok=True)
        (account_dir / "token").write_text("sa-token\n")
        (account_dir / "namespace").write_text(NAMESPACE)
        self.account_dir = account_dir

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def discovery(self) -> dict[str, Any]:
        """The router's serving.router.discovery section for this API."""
        return {"kubernetes": {"api_server": self.url, "service_account_dir": str(self.account_dir)}}

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for queue in self.watches:
            queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()

    # -- what the test does (call on the loop the API runs on)

    def put(self, item: dict[str, Any], kind: str = "MODIFIED") -> None:
        """Change a slice and tell every open watch."""
        self.version += 1
        item = json.loads(json.dumps(item))
        item["metadata"]["resourceVersion"] = str(self.version)
        if kind == "DELETED":
            self.slices.pop(item["metadata"]["name"], None)
        else:
            self.slices[item["metadata"]["name"]] = item
        self.send_line(json.dumps({"type": kind, "object": item}).encode())

    def send_line(self, line: bytes) -> None:
        for queue in self.watches:
            queue.put_nowait(line)

    def drop_watches(self) -> None:
        for queue in self.watches:
            queue.put_nowait(None)

    # -- the API

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            self.lists += 1
            if self.fail_lists > 0:
                self.fail_lists -= 1
                return web.json_response({"kind": "Status", "code": 500, "message": "etcd is away"}, status=500)
            items: Any = list(self.slices.values())
            if self.odd_lists > 0:
                self.odd_lists -= 1
                items = 5
            return web.json_response(
                {"kind": "EndpointSliceList", "metadata": {"resourceVersion": str(self.version)}, "items": items}
            )
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.watches.append(queue)
        out = web.StreamResponse(headers={"Content-Type": "application/json"})
        await out.prepare(request)
        try:
            while (line := await queue.get()) is not None:
                await out.write(line + b"\n")
        finally:
            self.watches.remove(queue)
        request.transport.close()  # the watch drops
        return out
