"""Request shapes a real client sends (batched prompts, ``n > 1``, token-id prompts, ``min_tokens``, values vLLM
rejects), each held against what the engines receive over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.router_cluster import Cluster

LONG = "def route(request):\n    return engines[hash(request) % len(engines)]\n" * 30


@pytest.mark.parametrize(
    "prompt", [[LONG, LONG + "# two\n", LONG + "# three\n"], [[7] * 300, [8] * 300]], ids=["strings", "token-lists"]
)
def test_a_batch_of_prompts_is_served_decode_only(make_cluster, prompt: list[object]) -> None:
    """One prefill answer carries the KV of one prompt; decode given a batch would pull one prompt's blocks for
    every choice. The whole batch goes to decode, which computes each prompt itself, as a single vLLM would."""
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    status, _, payload = cluster.post("/v1/completions", {"model": "tiny", "prompt": prompt, "max_tokens": 3})
    assert status == 200, payload
    assert cluster.prefills[0].received == []
    assert cluster.decodes[0].received[0]["prompt"] == prompt
    assert "kv_transfer_params" not in cluster.decodes[0].received[0]
    assert cluster.metric("pdstack_router_decisions_total", decision="decode_only", reason="batched_prompt") == 1


@pytest.mark.parametrize("endpoint", ["/v1/completions", "/v1/chat/completions"])
def test_several_choices_are_served_decode_only(make_cluster, endpoint: str) -> None:
    """``n > 1``: each of decode's child requests would pull blocks the prefill frees after the first pull."""
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    body = {"model": "tiny", "max_tokens": 3, "n": 2}
    body.update(
        {"prompt": LONG} if endpoint == "/v1/completions" else {"messages": [{"role": "user", "content": LONG}]}
    )
    status, _, payload = cluster.post(endpoint, body)
    assert status == 200, payload
    assert cluster.prefills[0].received == []
    assert cluster.decodes[0].received[0]["n"] == 2 and "kv_transfer_params" not in cluster.decodes[0].received[0]
    assert cluster.metric("pdstack_router_decisions_total", decision="decode_only", reason="several_choices") == 1


PROMPT_LOGPROBS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/completions", {"prompt_logprobs": 1}),
    ("/v1/completions", {"prompt_logprobs": 0}),
    ("/v1/completions", {"echo": True, "logprobs": 0}),
    ("/v1/chat/completions", {"prompt_logprobs": 2}),
    ("/v1/chat/completions", {"echo": True}),
    ("/v1/chat/completions", {"echo": True, "logprobs": True, "top_logprobs": 2}),
]


@pytest.mark.parametrize(
    ("endpoint", "fields"),
    PROMPT_LOGPROBS,
    ids=[f"{'chat' if 'chat' in path else 'completions'}-{'-'.join(fields)}" for path, fields in PROMPT_LOGPROBS],
)
def test_prompt_logprobs_are_served_where_the_prompt_is_computed(
    make_cluster,
    endpoint: str,
    fields: dict[str, object],
) -> None:
    """A decode that pulled the KV has no prompt logits: its prompt logprobs would be wrong, and vLLM without
    vllm #50792 crashes. vLLM 0.32 computes prompt logprobs for ``prompt_logprobs``, and for ``echo`` with
    ``logprobs`` (completions) or with ``top_logprobs``, which defaults to 0 (chat; ``to_sampling_params`` in
    vllm/entrypoints/openai/{completion,chat_completion}/protocol.py): decode serves them alone."""
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    body = {"model": "tiny", "max_tokens": 2, **fields}
    body.update(
        {"prompt": LONG} if endpoint == "/v1/completions" else {"messages": [{"role": "user", "content": LONG}]}
    )
    status, _, payload = cluster.post(endpoint, body)
    assert status == 200, payload
    assert cluster.prefills[0].received == []
    assert "kv_transfer_params" not in cluster.decodes[0].received[0]
    assert cluster.metric("pdstack_router_decisions_total", decision="decode_only", reason="prompt_logprobs") == 1


@pytest.mark.parametrize(
    "fields", [{"logprobs": 2}, {"echo": True}, {"echo": False, "logprobs": 1}, {"prompt_logprobs": None}]
)
def test_logprobs_of_the_answer_alone_still_disaggregate(make_cluster, fields: dict[str, object]) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    assert cluster.post("/v1/completions", {"model": "tiny", "prompt": LONG, "max_tokens": 2, **fields})[0] == 200
    assert len(cluster.prefills[0].received) == 1 and cluster.decodes[0].pulled == 1


def test_n_of_one_still_disaggregates(make_cluster) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    assert cluster.post("/v1/completions", {"model": "tiny", "prompt": [LONG], "n": 1, "max_tokens": 2})[0] == 200
    assert len(cluster.prefills[0].received) == 1 and cluster.decodes[0].pulled == 1


def test_a_token_id_prompt_is_one_prompt_of_that_many_tokens(make_cluster) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=256)
    tokens = list(range(10, 310))
    status, _, payload = cluster.post("/v1/completions", {"model": "tiny", "prompt": tokens, "max_tokens": 2})
    assert status == 200, payload
    assert cluster.metric("pdstack_router_prompt_tokens_total", role="decode") == 300
    assert len(cluster.prefills[0].received) == 1, "a 300-token prompt over the 256 threshold is disaggregated"
    assert cluster.prefills[0].received[0]["prompt"] == tokens
    # the repeat gets prefix credit for its 9 full 32-token blocks
    assert cluster.post("/v1/completions", {"model": "tiny", "prompt": tokens, "max_tokens": 2})[0] == 200
    assert cluster.metric("pdstack_router_predicted_prefix_hit_tokens_total", role="decode") == 9 * 32


def test_min_tokens_stay_off_the_prefill_leg(make_cluster) -> None:
    """The prefill leg forces max_tokens=1; a client's min_tokens there makes vLLM answer 400 (vLLM's own P/D proxy
    drops both fields on that leg and keeps them for decode)."""
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    body = {"model": "tiny", "prompt": LONG, "max_tokens": 5, "min_tokens": 3, "min_completion_tokens": 3}
    status, _, payload = cluster.post("/v1/completions", body)
    assert status == 200, payload
    prefill_leg, decode_leg = cluster.prefills[0].received[0], cluster.decodes[0].received[0]
    assert "min_tokens" not in prefill_leg and "min_completion_tokens" not in prefill_leg
    assert decode_leg["min_tokens"] == 3 and decode_leg["min_completion_tokens"] == 3
    assert cluster.decodes[0].pulled == 1


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_tokens": "x"}, "max_tokens"),
        ({"max_tokens": 5000}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"n": 0}, "n"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
    ],
    ids=["zero", "negative", "string", "beyond-the-model", "max-completion-zero", "n-zero", "stream-options"],
)
def test_certainly_invalid_requests_cost_no_leg(make_cluster, extra: dict[str, object], param: str) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=0)
    cluster.wait_for(lambda: "max_model_len" in json.loads(cluster.get("/v1/models")[2])["data"][0])
    status, _, payload = cluster.post("/v1/completions", {"model": "tiny", "prompt": LONG, **extra})
    assert status == 400, payload
    error = json.loads(payload)["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert cluster.prefills[0].received == [] and cluster.decodes[0].received == []


@pytest.mark.parametrize("threshold", [0, 100000], ids=["rejected-by-prefill", "rejected-by-decode"])
def test_an_engine_rejection_has_one_shape_whichever_leg(make_cluster, threshold: int) -> None:
    cluster: Cluster = make_cluster(pd_threshold_tokens=threshold)
    status, _, payload = cluster.post("/v1/completions", {"model": "tiny", "prompt": LONG, "temperature": -1})
    assert status == 400
    assert json.loads(payload)["error"] == {
        "message": "temperature must be non-negative, got -1.0.",
        "type": "invalid_request_error",
        "param": "temperature",
        "code": "engine_rejected",
    }
    assert len(cluster.prefills[0].received + cluster.decodes[0].received) == 1
