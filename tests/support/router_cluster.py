"""The router's unit-test harness: fake engines and a router in one background event loop, driven from plain
(synchronous) tests with real HTTP on loopback, the way a client sees it (the fixtures that build it,
``make_cluster`` and ``make_cluster_from``, are in tests/runtime/router/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from runtime.config import Serving
from runtime.router.server import RouterServer
from testbed.fault_engine import FaultEngine
from testbed.ports import free_ports
from testbed.scrape import sample_total

T = TypeVar("T")

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class Cluster:
    loop: LoopThread
    router: RouterServer
    prefills: list[FaultEngine]
    decodes: list[FaultEngine]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.router.config.port}"

    @property
    def metrics_url(self) -> str:
        """Where /metrics is served: its own port (serving.router.metrics_port), else the API's."""
        return f"http://127.0.0.1:{self.router.config.metrics_port or self.router.config.port}"

    def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        data = raw if raw is not None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
        )
        return _send(request)

    def get(self, path: str, base: str | None = None) -> tuple[int, dict[str, str], bytes]:
        return _send(urllib.request.Request((base or self.url) + path))

    def metric(self, name: str, **labels: str) -> float:
        return sample_total(self.metrics_url, name, **labels)

    def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.02)
        raise AssertionError("condition not met in time")


def _send(request: urllib.request.Request) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def serving_for(
    engines: list[tuple[FaultEngine, str]], model_source: Path, roles: dict[str, Any] | None = None, **router: Any
) -> Serving:
    static = [{"url": engine.url, "role": role} for engine, role in engines]
    port, metrics_port = free_ports(2)
    router_config = {
        "host": "127.0.0.1",
        "port": port,
        "metrics_port": metrics_port,
        "discovery": {"static": static},
        "health_interval_s": 0.2,
        "metrics_interval_s": 0.2,
        "retries": {"attempts": 3, "backoff_s": 0.01},
        "timeouts": {"connect_s": 1.0, "first_byte_s": 5.0, "idle_stream_s": 5.0},
        "shutdown_grace_s": 2.0,
        "prefix_mode": "approximate",
        **router,
    }
    return Serving.model_validate(
        {
            "model": {"source": str(model_source), "served_name": "tiny", "block_size": 32},
            "router": router_config,
            **(roles or {}),
        }
    )


async def start_router(serving: Serving) -> RouterServer:
    server = RouterServer(serving)
    await server.start()
    return server


@contextmanager
def raw_socket(cluster: Cluster) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", cluster.router.config.port), timeout=10)
    try:
        yield sock
    finally:
        sock.close()


def read_all(sock: socket.socket) -> bytes:
    """Everything the router sends until it closes the connection (the 10 s socket timeout fails the test)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
