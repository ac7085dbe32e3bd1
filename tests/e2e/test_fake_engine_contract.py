"""Both fake engines against real vLLM (CPU): the bench's simulated engine (bench/fake_engine) and the tests'
fault-injecting engine (testbed/fault_engine.py) get the same requests as a real vLLM pair, and the parts routers
depend on must agree: response fields (completions and chat, whole and streamed, both P/D legs), the
``kv_transfer_params`` keys, the metric names and labels routers scrape, and (simulated engine) the KV event fields
on the wire. Only shapes are compared; the fakes' numbers are the bench's timing model, not the CPU's."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

from bench.fake_engine.engine import SimulatedEngine
from bench.fake_engine.kv_cache import KvCache
from bench.fake_engine.kv_event_publisher import KvEventPublisher
from bench.fake_engine.simulator import EngineSimulator
from bench.fake_engine.timing import EngineTiming
from bench.fake_engine.tokenizer import EngineTokenizer
from testbed.fault_engine import FaultEngine
from testbed.ports import free_ports
from tests.support.routed_pair import RoutedPair

pytestmark = pytest.mark.e2e

PROMPT = "".join(f"def handler_{i}(request):\n    return respond(request, status={200 + i})\n\n" for i in range(12))
ROUTER_METRICS = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:prefix_cache_queries",
    "vllm:prefix_cache_hits",
    "vllm:prompt_tokens_by_source",
    "vllm:cache_config_info",
)


@dataclass(frozen=True)
class Side:
    prefill: str
    decode: str
    prefill_events: str


def post(url: str, path: str, body: dict[str, Any], request_id: str) -> tuple[dict[str, Any] | None, list[Any]]:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "X-Request-Id": request_id},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        raw = response.read().decode()
    if not body.get("stream"):
        return json.loads(raw), []
    chunks = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]
    return None, chunks


def metric_labels(url: str) -> dict[str, set[str]]:
    with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
        text = response.read().decode()
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(family.name, set()).update(sample.labels)
    return found


class FakePairs:
    """A simulated prefill and decode with the tiny model's tokenizer, and a fault engine prefill and decode (no
    faults), in a background loop."""

    def __init__(self, tokenizer: Path, block_size: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.context: zmq.Context[Any] = zmq.Context()
        ports = free_ports(2)
        self.events = f"tcp://127.0.0.1:{ports[0]}"
        self.simulated: list[SimulatedEngine] = []
        for name, port in (("prefill", ports[0]), ("decode", ports[1])):
            publisher = KvEventPublisher(f"tcp://127.0.0.1:{port}", f"kv@fake@{name}", block_size, self.context)
            self.simulated.append(
                SimulatedEngine(
                    name=name,
                    model="tiny",
                    block_size=block_size,
                    tokenizer=EngineTokenizer(tokenizer),
                    publisher=publisher,
                    simulator=EngineSimulator(EngineTiming(), KvCache(4096, block_size, publisher)),
                )
            )
        self.faulty = [
            FaultEngine(name, model="tiny", block_size=block_size, record=False) for name in ("prefill", "decode")
        ]
        self.engines = [*self.simulated, *self.faulty]
        for engine in self.engines:
            asyncio.run_coroutine_threadsafe(engine.start(), self.loop).result(10)

    def close(self) -> None:
        for engine in self.engines:
            asyncio.run_coroutine_threadsafe(engine.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.context.term()


@pytest.fixture(scope="module")
def sides(routed: RoutedPair, tiny_model: Path) -> Iterator[dict[str, Side]]:
    """The real vLLM pair (the session's) and the two fake pairs, by name."""
    fake = FakePairs(tiny_model, 32)
    try:
        real = Side(routed.prefill.url, routed.decode.url, routed.prefill_kv_events)
        yield {
            "real": real,
            "simulated": Side(fake.simulated[0].url, fake.simulated[1].url, fake.events),
            "fault": Side(fake.faulty[0].url, fake.faulty[1].url, ""),
        }
    finally:
        fake.close()


def shape(document: Any) -> Any:
    """Keys all the way down (values dropped); lists by their first element."""
    if isinstance(document, dict):
        return {key: shape(value) for key, value in document.items()}
    if isinstance(document, list):
        return [shape(document[0])] if document else []
    return None


def keys_of(document: dict[str, Any]) -> set[str]:
    return set(document)


def prefill_leg(body: dict[str, Any]) -> dict[str, Any]:
    return {
        **body,
        "max_tokens": 1,
        "stream": False,
        "kv_transfer_params": {
            "do_remote_decode": True,
            "do_remote_prefill": False,
            "remote_engine_id": None,
            "remote_block_ids": None,
            "remote_host": None,
            "remote_port": None,
        },
    }


@pytest.mark.parametrize("engine", ["simulated", "fault"])
@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_both_pd_legs_answer_the_same_fields(sides: dict[str, Side], endpoint: str, engine: str) -> None:
    path = "/v1/completions" if endpoint == "completions" else "/v1/chat/completions"
    body: dict[str, Any] = {"model": "tiny", "max_tokens": 6, "temperature": 0}
    body.update(
        {"prompt": PROMPT} if endpoint == "completions" else {"messages": [{"role": "user", "content": PROMPT}]}
    )
    answers: dict[str, dict[str, Any]] = {}
    for label, side in (("real", sides["real"]), ("fake", sides[engine])):
        prefilled, _ = post(side.prefill, path, prefill_leg(body), f"contract-{endpoint}-{label}")
        assert prefilled is not None
        params = prefilled["kv_transfer_params"]
        whole, _ = post(side.decode, path, {**body, "kv_transfer_params": params}, f"contract-{endpoint}-{label}-d")
        prefilled2, _ = post(side.prefill, path, prefill_leg(body), f"contract-{endpoint}-{label}-2")
        assert prefilled2 is not None
        _, chunks = post(
            side.decode,
            path,
            {
                **body,
                "stream": True,
                "stream_options": {"include_usage": True},
                "kv_transfer_params": prefilled2["kv_transfer_params"],
            },
            f"contract-{endpoint}-{label}-s",
        )
        answers[label] = {"prefill": prefilled, "params": params, "decode": whole, "chunks": chunks}
    real, fake = answers["real"], answers["fake"]
    assert keys_of(fake["params"]) == keys_of(real["params"]), (sorted(real["params"]), sorted(fake["params"]))
    for leg in ("prefill", "decode"):
        assert keys_of(fake[leg]) == keys_of(real[leg]), (
            f"{leg}: real only {sorted(keys_of(real[leg]) - keys_of(fake[leg]))}, "
            f"fake only {sorted(keys_of(fake[leg]) - keys_of(real[leg]))}"
        )
        assert keys_of(fake[leg]["choices"][0]) == keys_of(real[leg]["choices"][0]), leg
        assert keys_of(fake[leg]["usage"]) == keys_of(real[leg]["usage"]), (
            f"{leg}: real {real[leg]['usage']}, fake {fake[leg]['usage']}"
        )
    assert keys_of(fake["chunks"][0]) == keys_of(real["chunks"][0]), (
        f"real {real['chunks'][0]}, fake {fake['chunks'][0]}"
    )
    first_real, first_fake = real["chunks"][0]["choices"][0], fake["chunks"][0]["choices"][0]
    assert keys_of(first_fake) == keys_of(first_real), f"real {first_real}, fake {first_fake}"
    assert keys_of(fake["chunks"][-1]) == keys_of(real["chunks"][-1]), (
        f"usage chunk: real {real['chunks'][-1]}, fake {fake['chunks'][-1]}"
    )
    assert real["chunks"][-1]["usage"] and fake["chunks"][-1]["usage"]


TOKENIZED: list[tuple[bool, dict[str, Any]]] = [
    (False, {"prompt": PROMPT}),
    (False, {"prompt": "  leading spaces, a tab\tand unicode: caf\u00e9 \u2014 \u4e2d\u6587\n"}),
    (True, {"messages": [{"role": "user", "content": PROMPT}]}),
    (
        True,
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "def f():"},
                {"role": "assistant", "content": "    return 1"},
                {"role": "user", "content": "and g?"},
            ]
        },
    ),
    (
        True,
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "first part"}, {"type": "text", "text": "second part"}],
                }
            ]
        },
    ),
    (True, {"messages": [{"role": "user", "content": "no generation prompt"}], "add_generation_prompt": False}),
]


@pytest.mark.parametrize("case", range(len(TOKENIZED)))
def test_the_simulated_engine_tokenizes_as_vllm(sides: dict[str, Side], tiny_model: Path, case: int) -> None:
    """The simulated engine's own tokenizer (bench/fake_engine/tokenizer.py) gives vLLM's /tokenize ids, and the
    simulated engine counts the prompt tokens vLLM counts."""
    chat, body = TOKENIZED[case]
    real_ids, _ = post(sides["real"].prefill, "/tokenize", {"model": "tiny", **body}, f"contract-tokenize-{case}")
    assert real_ids is not None
    assert EngineTokenizer(tiny_model).tokens(chat, body) == real_ids["tokens"]
    path = "/v1/chat/completions" if chat else "/v1/completions"
    counted = {}
    for label in ("real", "simulated"):
        answer, _ = post(
            sides[label].prefill, path, {"model": "tiny", "max_tokens": 1, **body}, f"contract-count-{case}-{label}"
        )
        assert answer is not None
        counted[label] = answer["usage"]["prompt_tokens"]
    assert counted["simulated"] == counted["real"] == real_ids["count"]


def test_metrics_routers_read_have_vllms_names_and_labels(sides: dict[str, Side]) -> None:
    real, fake = sides["real"], sides["simulated"]
    for real_url, fake_url in ((real.prefill, fake.prefill), (real.decode, fake.decode)):
        real_labels, fake_labels = metric_labels(real_url), metric_labels(fake_url)
        for name in ROUTER_METRICS:
            assert name in real_labels, f"real vLLM has no {name}: the fake's list is stale"
            assert name in fake_labels, f"the fake has no {name}"
            assert fake_labels[name] <= real_labels[name] | {"enable_prefix_caching", "num_gpu_blocks"}, (
                name,
                real_labels[name],
                fake_labels[name],
            )
        assert {"local_compute", "local_cache_hit", "external_kv_transfer"} <= _sources(real_url)
        assert _sources(fake_url) <= _sources(real_url)
        # the router's restart detection (runtime/router/engines/load_metrics.py) reads this process-collector gauge
        with urllib.request.urlopen(real_url + "/metrics", timeout=30) as response:
            assert b"\nprocess_start_time_seconds " in response.read()


def _sources(url: str) -> set[str]:
    with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
        text = response.read().decode()
    return {
        sample.labels["source"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if family.name == "vllm:prompt_tokens_by_source" and "source" in sample.labels
    }


def test_the_fault_engines_metrics_are_vllms_names_and_labels(sides: dict[str, Side]) -> None:
    real, fake = sides["real"], sides["fault"]
    for real_url, fake_url in ((real.prefill, fake.prefill), (real.decode, fake.decode)):
        real_labels, fake_labels = metric_labels(real_url), metric_labels(fake_url)
        assert fake_labels, "the fault engine serves no metrics"
        for name, labels in fake_labels.items():
            assert name in real_labels, f"real vLLM has no {name}"
            assert labels <= real_labels[name], (name, real_labels[name], labels)


def test_kv_events_carry_the_same_fields(sides: dict[str, Side]) -> None:
    stored: dict[str, dict[str, Any]] = {}
    context: zmq.Context[Any] = zmq.Context()
    try:
        for label, side in (("real", sides["real"]), ("fake", sides["simulated"])):
            socket = context.socket(zmq.SUB)
            socket.setsockopt(zmq.SUBSCRIBE, b"")
            socket.setsockopt(zmq.LINGER, 0)
            socket.connect(side.prefill_events)
            found = None
            for attempt in range(20):  # the subscription needs a moment (ZMQ slow joiner): resend until events come
                prompt = f"attempt {attempt} of {label}: " + PROMPT
                post(
                    side.prefill,
                    "/v1/completions",
                    {"model": "tiny", "prompt": prompt, "max_tokens": 1},
                    f"contract-events-{label}-{attempt}",
                )
                while socket.poll(1000):
                    frames = socket.recv_multipart()
                    assert len(frames) == 3 and len(frames[1]) == 8, frames[:2]
                    batch = msgpack.unpackb(frames[2], raw=False, strict_map_key=False)
                    assert isinstance(batch, list) and isinstance(batch[1], list)
                    for event in batch[1]:
                        kind = event.get("type") if isinstance(event, dict) else event[0]
                        if kind == "BlockStored":
                            found = event
                if found is not None:
                    break
            socket.close()
            assert found is not None, f"no BlockStored from the {label} engine"
            stored[label] = found
    finally:
        context.term()
    real, fake = stored["real"], stored["fake"]
    if isinstance(real, dict):
        assert set(fake) <= set(real), (sorted(real), sorted(fake))
        for field in ("block_hashes", "parent_block_hash", "token_ids", "block_size", "medium"):
            assert field in real and field in fake, field
        assert type(real["block_hashes"][0]) is type(fake["block_hashes"][0])
    else:
        pytest.fail(f"real vLLM sent a positional BlockStored {real!r}; the fake sends maps")
