"""The router's unit-test harness: fake engines and a router in one background event loop, driven from plain
(synchronous) tests with real HTTP on loopback, the way a client sees it."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

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


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small byte-level BPE tokenizer with a chat template, trained here in a blink (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    out = tmp_path_factory.mktemp("tokenizer")
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = [Path(__file__).read_text(), Path(json.__file__).read_text()]
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "chat_template": CHAT_TEMPLATE}))
    return out


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

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None,
             raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        data = raw if raw is not None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method="POST",
                                         headers={"Content-Type": "application/json", **(headers or {})})
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


def serving_for(engines: list[FaultEngine], model_source: Path, roles: dict[str, Any] | None = None,
                **router: Any) -> Serving:
    static = [{"url": engine.url, "role": role} for engine, role in engines]  # type: ignore[misc]
    port, metrics_port = free_ports(2)
    router_config = {"host": "127.0.0.1", "port": port, "metrics_port": metrics_port, "discovery": {"static": static},
                     "health_interval_s": 0.2, "metrics_interval_s": 0.2,
                     "retries": {"attempts": 3, "backoff_s": 0.01},
                     "timeouts": {"connect_s": 1.0, "first_byte_s": 5.0, "idle_stream_s": 5.0},
                     "shutdown_grace_s": 2.0, "prefix_mode": "approximate", **router}
    return Serving.model_validate({
        "model": {"source": str(model_source), "served_name": "tiny", "block_size": 32},
        "router": router_config, **(roles or {}),
    })


@pytest.fixture
def make_cluster(tokenizer_dir: Path) -> Iterator[Callable[..., Cluster]]:
    loop = LoopThread()
    started: list[Cluster] = []

    def make(prefills: int = 1, decodes: int = 1, tokenizer: bool = True, **router: Any) -> Cluster:
        prefill_engines = [FaultEngine(f"prefill-{i}") for i in range(prefills)]
        decode_engines = [FaultEngine(f"decode-{i}") for i in range(decodes)]
        for engine in prefill_engines + decode_engines:
            loop.run(engine.start())
        pairs = [(e, "prefill") for e in prefill_engines] + [(e, "decode") for e in decode_engines]
        source = tokenizer_dir if tokenizer else tokenizer_dir.parent / "no-tokenizer-here"
        serving = serving_for(pairs, source, **router)  # type: ignore[arg-type]
        server = loop.run(_start_router(serving))
        cluster = Cluster(loop, server, prefill_engines, decode_engines)
        started.append(cluster)
        cluster.wait_for(lambda: cluster.get("/ready")[0] == 200)
        return cluster

    def make_from(engines: list[FaultEngine], router: dict[str, Any], roles: dict[str, Any] | None = None,
                  ready: bool = True) -> Cluster:
        """Engines whose names start with their role, a router configured with ``router`` (its discovery too)
        and the serving roles' ``roles`` section (ports)."""
        for engine in engines:
            loop.run(engine.start(engine.port))
        pairs = [(engine, "prefill" if engine.name.startswith("prefill") else "decode") for engine in engines]
        server = loop.run(_start_router(serving_for(pairs, tokenizer_dir, roles, **router)))  # type: ignore[arg-type]
        cluster = Cluster(loop, server, [e for e, role in pairs if role == "prefill"],
                          [e for e, role in pairs if role == "decode"])
        started.append(cluster)
        if ready:
            cluster.wait_for(lambda: cluster.get("/ready")[0] == 200)
        return cluster

    make.make_from = make_from  # type: ignore[attr-defined]
    yield make
    for cluster in started:
        loop.run(cluster.router.stop())
        for engine in cluster.prefills + cluster.decodes:
            loop.run(engine.stop())
    loop.close()


async def _start_router(serving: Serving) -> RouterServer:
    server = RouterServer(serving)
    await server.start()
    return server


@pytest.fixture
def make_cluster_from(make_cluster: Callable[..., Cluster]) -> Callable[..., Cluster]:
    """``make_cluster_from(engines, router, roles)``: a cluster of engines made by the test (hosts, ports)."""
    return make_cluster.make_from  # type: ignore[attr-defined, no-any-return]
