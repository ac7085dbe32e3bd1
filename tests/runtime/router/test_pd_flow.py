"""The P/D flow against fake engines: both legs exactly per the protocol, decode-only when the decider says so."""

from __future__ import annotations

import json

from tests.support.router_cluster import Cluster

LONG = "def schedule(workers):\n    return sorted(workers, key=len)\n" * 40


def test_disaggregates_per_the_protocol(make_cluster) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    body = {
        "model": "tiny",
        "prompt": LONG,
        "max_tokens": 5,
        "stream": False,
        "stream_options": None,
        "max_completion_tokens": 5,
    }
    status, headers, payload = cluster.post("/v1/completions", body, headers={"X-Request-Id": "req-42"})
    assert status == 200, payload
    assert headers["X-Request-Id"] == "req-42"
    prefill_leg = cluster.prefills[0].received[0]
    assert prefill_leg["max_tokens"] == 1 and prefill_leg["max_completion_tokens"] == 1
    assert prefill_leg["stream"] is False and prefill_leg["n"] == 1 and prefill_leg["stream_options"] is None
    assert prefill_leg["kv_transfer_params"] == {
        "do_remote_decode": True,
        "do_remote_prefill": False,
        "remote_engine_id": None,
        "remote_block_ids": None,
        "remote_host": None,
        "remote_port": None,
    }
    decode_leg = cluster.decodes[0].received[0]
    assert decode_leg["max_tokens"] == 5 and decode_leg["prompt"] == LONG
    assert decode_leg["kv_transfer_params"]["remote_engine_id"] == "prefill-0"
    assert decode_leg["kv_transfer_params"]["remote_request_id"] == "req-42"
    assert cluster.prefills[0].headers[0]["X-Request-Id"] == cluster.decodes[0].headers[0]["X-Request-Id"] == "req-42"
    assert cluster.decodes[0].pulled == 1
    answer = json.loads(payload)
    assert answer["choices"][0]["text"] == "t0 t1 t2 t3 t4"
    assert answer["usage"]["completion_tokens"] == 5
    assert cluster.metric("pdstack_router_decisions_total", decision="pd") == 1


def test_streams_the_decode_leg_with_usage(make_cluster) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": LONG}],
        "max_tokens": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    status, headers, payload = cluster.post("/v1/chat/completions", body)
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["X-Request-Id"].startswith("pdstack-")
    events = [line[6:] for line in payload.decode().split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    usage = json.loads(events[-2])["usage"]
    assert usage["completion_tokens"] == 3
    assert cluster.prefills[0].received[0]["stream"] is False
    assert cluster.decodes[0].received[0]["stream_options"] == {"include_usage": True}


def test_short_prompt_goes_decode_only(make_cluster) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=256)
    status, _, _ = cluster.post("/v1/completions", {"model": "tiny", "prompt": "hi", "max_tokens": 2})
    assert status == 200
    assert cluster.prefills[0].received == []
    assert "kv_transfer_params" not in cluster.decodes[0].received[0]
    assert cluster.metric("pdstack_router_decisions_total", decision="decode_only", reason="few_uncached_tokens") == 1


def test_short_prompt_is_prefilled_elsewhere_while_its_decode_engine_is_busy(make_cluster) -> None:
    """The decode engine reports requests waiting (vllm:num_requests_waiting): a short prompt no longer joins its
    queue to be prefilled there but goes to the prefill engine; once the queue is gone, decode serves alone again."""
    cluster: Cluster = make_cluster(pd_threshold_tokens=256)
    decode = cluster.decodes[0]
    decode.waiting = 3
    routed = cluster.router.registry.get(decode.url)
    assert routed is not None
    cluster.wait_for(lambda: routed.waiting == 3)  # the router's next scrape of the engine's /metrics
    status, _, _ = cluster.post("/v1/completions", {"model": "tiny", "prompt": "hi", "max_tokens": 2})
    assert status == 200
    assert len(cluster.prefills[0].received) == 1 and decode.received[0]["kv_transfer_params"]["do_remote_prefill"]
    assert cluster.metric("pdstack_router_decisions_total", decision="pd", reason="decode_busy") == 1
    decode.waiting = 0
    cluster.wait_for(lambda: routed.waiting == 0)
    assert cluster.post("/v1/completions", {"model": "tiny", "prompt": "hi", "max_tokens": 2})[0] == 200
    assert len(cluster.prefills[0].received) == 1 and "kv_transfer_params" not in decode.received[1]


def test_cached_prefix_on_decode_skips_prefill(make_cluster) -> None:
    """Approximate mode learns the first request's blocks; the repeat is mostly cached on decode, so no P/D."""
    cluster: Cluster = make_cluster(pd_threshold_tokens=64)
    body = {"model": "tiny", "prompt": LONG, "max_tokens": 2}
    assert cluster.post("/v1/completions", body)[0] == 200
    assert cluster.post("/v1/completions", body)[0] == 200
    assert len(cluster.prefills[0].received) == 1
    assert cluster.metric("pdstack_router_predicted_prefix_hit_tokens_total", role="decode") > 0
    assert cluster.metric("pdstack_router_prefix_index_blocks") > 0


def test_incomplete_params_are_reported_as_recompute(make_cluster) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    cluster.prefills[0].faults.incomplete_params = True
    assert cluster.post("/v1/completions", {"model": "tiny", "prompt": LONG, "max_tokens": 2})[0] == 200
    assert cluster.decodes[0].recomputed == 1
    assert cluster.metric("pdstack_router_decode_recomputes_total", reason="invalid_params") == 1


def test_a_completion_stream_after_a_prefill_commits_at_its_first_token(make_cluster) -> None:
    """A completions chunk carries its token as ``text`` (no chat ``delta``): after the prefill leg it is the first
    token, and the router must relay it then, not read on to the end of the answer as if it were chat's role-only
    opening chunk. Decode goes silent after its first chunk: the client still gets that token from the ONE decode leg
    (the stream then breaks at the idle timeout), where reading on would time out before committing and restart."""
    cluster: Cluster = make_cluster(
        pd_threshold_tokens=0, timeouts={"connect_s": 1.0, "first_byte_s": 5.0, "idle_stream_s": 0.3}
    )
    cluster.decodes[0].faults.hang_after_chunks = 1
    status, _, payload = cluster.post(
        "/v1/completions", {"model": "tiny", "prompt": LONG, "max_tokens": 6, "stream": True}
    )
    events = [line for line in payload.decode().split("\n\n") if line]
    assert status == 200 and json.loads(events[0][6:])["choices"][0]["text"]
    assert len(cluster.decodes[0].received) == 1 and len(cluster.prefills[0].received) == 1
