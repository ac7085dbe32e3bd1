"""The prefill scaling signal the router exports: uncached prompt tokens of requests whose prompt is not computed yet
(P/D: until the prefill leg answers; decode-only: until the first token), over one prefill replica's configured
throughput; on the P/D path and on the decode-only path (prefill at zero)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.router_cluster import Cluster

BACKLOG = "pdstack_router_prefill_backlog_seconds"
TOKENS_PER_S = 100.0
PROMPT = "the quick brown fox jumps over the lazy dog " * 20


@pytest.mark.parametrize("prefills", [1, 0], ids=["pd", "prefill_scaled_to_zero"])
def test_backlog_is_prompt_work_until_first_token(make_cluster, prefills: int) -> None:
    cluster: Cluster = make_cluster(
        prefills=prefills, pd_threshold_tokens=0, signals={"prefill_tokens_per_s": TOKENS_PER_S}
    )
    slow = cluster.prefills[0] if prefills else cluster.decodes[0]
    slow.faults.delay_s = 1.0  # the prompt is being prefilled for a second
    assert cluster.metric(BACKLOG) == 0
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(cluster.post, "/v1/completions", {"model": "tiny", "prompt": PROMPT, "max_tokens": 2})
        cluster.wait_for(lambda: cluster.metric(BACKLOG) > 0)
        tokens = cluster.metric("pdstack_router_prompt_tokens_total", role="decode")
        assert tokens > 100
        assert cluster.metric(BACKLOG) == pytest.approx(tokens / TOKENS_PER_S)
        assert answer.result()[0] == 200
    assert cluster.metric(BACKLOG) == 0
    assert cluster.metric("pdstack_router_decisions_total", decision="pd" if prefills else "decode_only") == 1


def test_a_slow_decode_is_not_prefill_backlog(make_cluster) -> None:
    """P/D: once the prefill leg has answered, the prompt is computed; a decode engine slow to answer must not keep
    it in the prefill signal (that would scale prefill for decode's shortage)."""
    cluster: Cluster = make_cluster(prefills=1, pd_threshold_tokens=0, signals={"prefill_tokens_per_s": TOKENS_PER_S})
    cluster.decodes[0].faults.delay_s = 1.0
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(cluster.post, "/v1/completions", {"model": "tiny", "prompt": PROMPT, "max_tokens": 2})
        cluster.wait_for(lambda: bool(cluster.decodes[0].received))  # prefill done, decode holding the request
        assert cluster.metric(BACKLOG) == 0
        assert answer.result()[0] == 200
    assert cluster.metric("pdstack_router_decisions_total", decision="pd") == 1
