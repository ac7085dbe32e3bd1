"""The router on real vLLM (CPU): a prefill and a decode started through ``python -m runtime``, the router through
``python -m runtime router``, driven with the official ``openai`` client. Answers must equal a single server's greedy
answers, the decode must pull the KV (its own metrics say so), shared prefixes must show as predicted hits in the
router and as prefix-cache hits in the engines, and killing prefill must leave requests served decode-only."""

from __future__ import annotations

import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from testbed.cpu_pair import REPO, WORK, cpu_role, server_environment
from testbed.ports import free_ports
from testbed.router_process import RouterProcess
from testbed.runtime_server import RuntimeServer

pytestmark = pytest.mark.e2e

SHARED = "".join(f"def handler_{i}(request):\n    return respond(request, status={200 + i})\n\n" for i in range(24))
QUESTION = "class Router:\n    def __init__(self, engines):\n        self.engines = engines\n"


@dataclass(frozen=True)
class RoutedPair:
    prefill: RuntimeServer
    decode: RuntimeServer
    router: RouterProcess
    model: str

    def client(self, url: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{url or self.router.url}/v1", api_key="none", max_retries=0, timeout=120)


def metric_sum(url: str, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


@pytest.fixture(scope="module")
def routed(vllm_python: Path, tiny_model: Path) -> Iterator[RoutedPair]:
    ports = free_ports(9)
    prefill_role, decode_role = cpu_role(ports[0:4], cpu=0), cpu_role(ports[4:8], cpu=1)
    for role in (prefill_role, decode_role):
        role["extra_args"] = [*role["extra_args"], "--enable-prompt-tokens-details"]  # type: ignore[list-item]
    serving = {
        "model": {"source": str(tiny_model), "served_name": "tiny", "block_size": 32, "max_model_len": 1024},
        "kv_transfer": {"backend": "UCX", "buffer_device": "cpu"},
        "prefill": prefill_role,
        "decode": decode_role,
        "router": {
            "host": "127.0.0.1", "port": ports[8],
            "metrics_port": None, "pd_threshold_tokens": 0, "prefix_mode": "precise",
            "health_interval_s": 1.0, "metrics_interval_s": 1.0,
            "timeouts": {"connect_s": 2.0, "first_byte_s": 120.0, "idle_stream_s": 60.0},
            "discovery": {"static": [
                {"url": f"http://127.0.0.1:{ports[0]}", "role": "prefill", "kv_events": f"tcp://127.0.0.1:{ports[2]}"},
                {"url": f"http://127.0.0.1:{ports[4]}", "role": "decode", "kv_events": f"tcp://127.0.0.1:{ports[6]}"},
            ]},
        },
    }
    WORK.mkdir(parents=True, exist_ok=True)
    config = WORK / "router-deployment.yaml"
    config.write_text(yaml.safe_dump({"name": "cpu-router", "serving": serving}))
    env = server_environment(vllm_python)
    with ExitStack() as stack:
        prefill = stack.enter_context(
            RuntimeServer("prefill", vllm_python, config, ports[0], env, WORK / "router-prefill.log", REPO))
        decode = stack.enter_context(
            RuntimeServer("decode", vllm_python, config, ports[4], env, WORK / "router-decode.log", REPO))
        router = stack.enter_context(RouterProcess(Path(sys.executable), config, ports[8], WORK / "router.log", REPO))
        yield RoutedPair(prefill=prefill, decode=decode, router=router, model="tiny")


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
    result = client.completions.create(prompt=prompt, stream=stream, **common)
    if not stream:
        return result.choices[0].text, result.usage
    text, usage = "", None
    for chunk in result:
        usage = chunk.usage or usage
        text += "".join(choice.text for choice in chunk.choices)
    return text, usage


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_openai_client_through_the_router_matches_a_single_server(routed: RoutedPair, endpoint: str,
                                                                  stream: bool) -> None:
    prompt = f"{QUESTION}# {endpoint} {stream}\n"
    single_text, single_usage = ask(routed.client(routed.prefill.url), endpoint, False, prompt)
    external_before = metric_sum(routed.decode.url, "vllm:prompt_tokens_by_source_total", source="external_kv_transfer")
    pd_before = metric_sum(routed.router.url, "pdstack_router_decisions_total", decision="pd")

    text, usage = ask(routed.client(), endpoint, stream, prompt)

    assert text == single_text
    assert usage.prompt_tokens == single_usage.prompt_tokens
    assert usage.completion_tokens == single_usage.completion_tokens == 12
    assert metric_sum(routed.router.url, "pdstack_router_decisions_total", decision="pd") == pd_before + 1
    pulled = metric_sum(routed.decode.url, "vllm:prompt_tokens_by_source_total", source="external_kv_transfer")
    assert pulled > external_before, "decode computed the prompt itself instead of pulling it"
    print(f"\n{endpoint} stream={stream}: usage {usage}")


def test_a_batch_of_prompts_matches_a_single_server(routed: RoutedPair) -> None:
    """Served decode-only (one prefill answer carries one prompt's KV): every choice, its index and the usage equal
    what one vLLM server answers for the same batch, greedy."""
    prompts = [f"{QUESTION}# batch {i}\n" * (i + 1) for i in range(3)]
    common = {"model": "tiny", "max_tokens": 8, "temperature": 0.0}
    single = routed.client(routed.prefill.url).completions.create(prompt=prompts, **common)
    routed_answer = routed.client().completions.create(prompt=prompts, **common)
    assert [(c.index, c.text) for c in routed_answer.choices] == [(c.index, c.text) for c in single.choices]
    assert routed_answer.usage.prompt_tokens == single.usage.prompt_tokens
    assert routed_answer.usage.completion_tokens == single.usage.completion_tokens


def test_two_choices_match_a_single_servers_greedy_answer(routed: RoutedPair) -> None:
    """``n=2``: vLLM refuses n > 1 with temperature 0, so each choice samples with top_k=1 (greedy by construction);
    both must equal the single server's greedy answer."""
    prompt = f"{QUESTION}# two choices\n"
    greedy = ask(routed.client(routed.prefill.url), "completions", False, prompt, max_tokens=8)[0]
    for endpoint in ("completions", "chat"):
        client = routed.client()
        common = {"model": "tiny", "max_tokens": 8, "n": 2, "temperature": 1.0, "extra_body": {"top_k": 1}}
        if endpoint == "chat":
            chat_greedy = ask(routed.client(routed.prefill.url), "chat", False, prompt, max_tokens=8)[0]
            answer = client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **common)
            assert sorted(c.index for c in answer.choices) == [0, 1]
            assert [c.message.content for c in answer.choices] == [chat_greedy, chat_greedy]
        else:
            answer = client.completions.create(prompt=prompt, **common)
            assert sorted(c.index for c in answer.choices) == [0, 1]
            assert [c.text for c in answer.choices] == [greedy, greedy]
    assert metric_sum(routed.router.url, "pdstack_router_decisions_total", reason="several_choices") >= 2


def test_decode_pulls_and_the_router_sees_no_recompute(routed: RoutedPair) -> None:
    local_before = metric_sum(routed.decode.url, "vllm:prompt_tokens_by_source_total", source="local_compute")
    transfers_before = metric_sum(routed.decode.url, "vllm:nixl_xfer_time_seconds_count")
    for i in range(3):
        ask(routed.client(), "completions", False, f"{QUESTION}# pull {i}\n" * 3)
    assert metric_sum(routed.decode.url, "vllm:nixl_xfer_time_seconds_count") > transfers_before
    assert metric_sum(routed.decode.url, "vllm:nixl_num_failed_transfers_total") == 0
    assert metric_sum(routed.decode.url, "vllm:prompt_tokens_by_source_total", source="local_compute") == local_before
    assert metric_sum(routed.router.url, "pdstack_router_decode_recomputes_total") == 0


def test_shared_prefix_is_predicted_and_hits_the_engines_cache(routed: RoutedPair) -> None:
    router, client = routed.router.url, routed.client()
    ask(client, "completions", False, SHARED + "# first\n")
    deadline = time.monotonic() + 30
    while metric_sum(router, "pdstack_router_kv_events_total", type="BlockStored") == 0:
        assert time.monotonic() < deadline, "no KV event reached the router"
        time.sleep(0.2)
    time.sleep(1.0)  # let the decode's events for the pulled blocks land too
    predicted_before = metric_sum(router, "pdstack_router_predicted_prefix_hit_tokens_total")
    engine_hits_before = metric_sum(routed.prefill.url, "vllm:prefix_cache_hits_total")
    for i in range(3):
        ask(client, "completions", False, SHARED + f"# follow-up {i}\n")
    predicted = metric_sum(router, "pdstack_router_predicted_prefix_hit_tokens_total") - predicted_before
    engine_hits = metric_sum(routed.prefill.url, "vllm:prefix_cache_hits_total") - engine_hits_before
    print(f"\npredicted prefix-hit tokens {predicted}, prefill prefix-cache hit tokens {engine_hits}, "
          f"index blocks {metric_sum(router, 'pdstack_router_prefix_index_blocks')}")
    assert predicted >= 3 * 32 * 10
    assert engine_hits > 0


def test_killed_prefill_falls_back_to_decode_only(routed: RoutedPair) -> None:
    """Last in the module: it stops the prefill server."""
    client = routed.client()
    fallbacks_before = metric_sum(routed.router.url, "pdstack_router_fallbacks_total")
    results: list[str] = []
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            results.append(ask(client, "chat", i % 2 == 0, f"{QUESTION}# during the kill {i}\n")[0])
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    routed.prefill.stop()
    for thread in threads:
        thread.join(180)
    assert not any(thread.is_alive() for thread in threads), "a request hung through the prefill kill"
    after = [ask(client, "completions", i % 2 == 1, f"{QUESTION}# after the kill {i}\n")[0] for i in range(3)]
    # Every request sent after the kill is served decode-only. A request caught mid-pull when the prefill died is
    # restarted decode-only: the stream commits only at decode's first chunk, and a failed pull shows before it
    # (vLLM's kv_load_failure_policy=fail answers 500, or opens the stream with an error event; a stalled pull sends
    # nothing within timeouts.first_token_s). No client sees an error.
    assert len(after) == 3 and all(after)
    assert not errors, errors
    assert len(results) == 4 and all(results)
    assert metric_sum(routed.router.url, "pdstack_router_fallbacks_total") > fallbacks_before
    assert metric_sum(routed.router.url, "pdstack_router_decisions_total", decision="decode_only") >= 3
