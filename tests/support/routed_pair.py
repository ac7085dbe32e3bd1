"""The CPU test bed's pair with the router in front (prefill and decode through ``python -m runtime``, the router
through ``python -m runtime router``, KV events on, precise prefix mode), started once per test session
(tests/e2e/conftest.py) and shared by every end-to-end module whose engines need nothing else; the prompts and the
client calls those modules make."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
from prometheus_client.parser import text_string_to_metric_families

from testbed.cpu_pair import cpu_role, precise_router
from testbed.router_process import RouterProcess
from testbed.runtime_server import RuntimeServer

SHARED = "".join(f"def handler_{i}(request):\n    return respond(request, status={200 + i})\n\n" for i in range(24))
QUESTION = "class Router:\n    def __init__(self, engines):\n        self.engines = engines\n"


def routed_serving(model: Path, ports: list[int]) -> dict[str, Any]:
    """The serving section: prefill on ports[0:4] and core 0, decode on ports[4:8] and core 1 (both reporting prompt
    token details), the router on ports[8] discovering both statically with their KV events."""
    prefill_role, decode_role = cpu_role(ports[0:4], cpu=0), cpu_role(ports[4:8], cpu=1)
    for role in (prefill_role, decode_role):
        role["extra_args"] = [*role["extra_args"], "--enable-prompt-tokens-details"]
    return {
        "model": {"source": str(model), "served_name": "tiny", "block_size": 32, "max_model_len": 1024},
        "kv_transfer": {"backend": "UCX", "buffer_device": "cpu"},
        "prefill": prefill_role,
        "decode": decode_role,
        "router": precise_router(
            ports[8], [("prefill", ports[0], ports[2]), ("decode", ports[4], ports[6])], pd_threshold_tokens=0
        ),
    }


@dataclass(frozen=True)
class RoutedPair:
    prefill: RuntimeServer
    decode: RuntimeServer
    router: RouterProcess
    model: str
    prefill_kv_events: str  # the prefill's KV-event publisher (tcp://host:port)

    def client(self, url: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{url or self.router.url}/v1", api_key="none", max_retries=0, timeout=120)


@dataclass(frozen=True)
class PdPair:
    """The two engines alone, for a test that drives both P/D legs itself."""

    prefill: RuntimeServer
    decode: RuntimeServer
    model: str


def running(server: RuntimeServer | RouterProcess) -> bool:
    return server.group is not None and server.group.process.poll() is None


class RoutedBed:
    """The pair and its router for a whole session. A module that kills an engine (the fallback tests) leaves it
    dead for the rest of that module; ``revive`` restarts what is dead, and then the router too, so the next module
    starts from live engines and a router that never saw the kill, as a pair of its own would. ``starts`` counts the
    servers started (engines and router)."""

    def __init__(self, prefill: RuntimeServer, decode: RuntimeServer, router: RouterProcess, ports: list[int]) -> None:
        self.pair = RoutedPair(prefill, decode, router, "tiny", f"tcp://127.0.0.1:{ports[2]}")
        self.starts = 0
        BEDS.append(self)

    def start(self) -> None:
        for server in (self.pair.prefill, self.pair.decode, self.pair.router):
            server.start()
            self.starts += 1

    def revive(self) -> None:
        dead = [s for s in (self.pair.prefill, self.pair.decode) if not running(s)]
        if not dead and running(self.pair.router):
            return
        for server in (*dead, self.pair.router):
            server.stop()
        for server in (*dead, self.pair.router):
            server.start()
            self.starts += 1
        print(f"\nrevived {', '.join(s.name for s in dead) or 'nothing'} and restarted the router")

    def stop(self) -> None:
        """Every server stopped; ``revive`` starts them again."""
        for server in (self.pair.router, self.pair.decode, self.pair.prefill):
            server.stop()


BEDS: list[RoutedBed] = []  # the session's beds, so that a module with a pair of its own can stop them first


def stop_every_bed() -> None:
    """Stop the session's pair while a module runs a pair of its own (the two would share the same two cores); the
    next module that uses the session's pair gets it restarted."""
    for bed in BEDS:
        bed.stop()


def new_bed(
    python: Path, vllm_python: Path, config: Path, ports: list[int], env: dict[str, str], work: Path, repo: Path
) -> RoutedBed:
    """The bed's servers, not started yet (``start`` starts them)."""
    return RoutedBed(
        RuntimeServer("prefill", vllm_python, config, ports[0], env, work / "router-prefill.log", repo),
        RuntimeServer("decode", vllm_python, config, ports[4], env, work / "router-decode.log", repo),
        RouterProcess(python, config, ports[8], work / "router.log", repo),
        ports,
    )


def metric_sum(url: str, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def ask(client: openai.OpenAI, endpoint: str, stream: bool, prompt: str, **extra: Any) -> tuple[str, Any]:
    """Greedy answer text and usage, streamed or not."""
    common = {"model": "tiny", "max_tokens": 12, "temperature": 0.0, "seed": 0, **extra}
    if stream:
        common["stream_options"] = {"include_usage": True}
    if endpoint == "chat":
        result = client.chat.completions.create(messages=[{"role": "user", "content": prompt}], stream=stream, **common)
        if not stream:
            return result.choices[0].message.content or "", result.usage
        text, usage = "", None
        for chunk in result:
            usage = chunk.usage or usage
            text += "".join(choice.delta.content or "" for choice in chunk.choices)
        return text, usage
    completion = client.completions.create(prompt=prompt, stream=stream, **common)
    if not stream:
        return completion.choices[0].text, completion.usage
    text, usage = "", None
    for piece in completion:
        usage = piece.usage or usage
        text += "".join(choice.text for choice in piece.choices)
    return text, usage
