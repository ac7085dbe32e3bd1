"""The router on real vLLM (CPU): a prefill and a decode started through ``python -m runtime``, the router through
``python -m runtime router``, driven with the official ``openai`` client. Answers must equal a single server's greedy
answers, the decode must pull the KV (its own metrics say so), shared prefixes must show as predicted hits in the
router and as prefix-cache hits in the engines, and killing prefill must leave requests served decode-only. The pair
and the router are the session's (tests/e2e/conftest.py ``routed``)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.support.routed_pair import QUESTION, SHARED, RoutedPair, ask, metric_sum

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_openai_client_through_the_router_matches_a_single_server(
    routed: RoutedPair, endpoint: str, stream: bool
) -> None:
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
    common: dict[str, Any] = {"model": "tiny", "max_tokens": 8, "temperature": 0.0}
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
        common: dict[str, Any] = {
            "model": "tiny",
            "max_tokens": 8,
            "n": 2,
            "temperature": 1.0,
            "extra_body": {"top_k": 1},
        }
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
    print(
        f"\npredicted prefix-hit tokens {predicted}, prefill prefix-cache hit tokens {engine_hits}, "
        f"index blocks {metric_sum(router, 'pdstack_router_prefix_index_blocks')}"
    )
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
