"""A two-node data-parallel decode replica on real vLLM (CPU), started as a LeaderWorkerSet starts one (issue 23): two
``python -m runtime decode`` processes with the LeaderWorkerSet variables, leader (index 0) and worker (index 1), two
engine cores each in hybrid load balancing, the router in front (testbed/dp_group.py says how one machine stands in
for two pods). Every rank's KV events reach the router's index under that rank, and a prompt whose prefix a rank
holds is sent to that rank, which vLLM's own per-rank metrics show as a request and a prefix-cache hit there.

The rank a prefix sits on is chosen by sending the prompt straight to a node with ``X-data-parallel-rank`` (the
router has no say in it); then the router must find it. Each prompt goes through the router twice in a row: with
nothing to tell the nodes or the ranks apart, the router's picker and vLLM's own balancing both alternate, so a
router that did not see a rank, or did not name it, sends one of the two elsewhere.

vLLM 0.32 facts this relies on, each read in the pinned source:
- the engines' metrics carry the *global* rank as ``engine`` (``vllm/v1/engine/core_client.py``:
  ``engine_ranks_managed`` is ``range(start rank, start rank + data_parallel_size_local)`` in hybrid load balancing);
- ``X-data-parallel-rank`` is a *local* index on each node: anything outside ``[0, data_parallel_size_local)`` is a
  400 (``vllm/v1/engine/input_processor.py``, ``local_engines_only``);
- the node serves ``data_parallel_size_local`` API servers in hybrid mode (``vllm/entrypoints/cli/serve.py``:
  "Defaulting api_server_count to data_parallel_size_local"), which is also how the log shows the mode is on;
- hybrid mode needs two local ranks or more (testbed/dp_group.py, ``LOCAL_RANKS``).

Cost: both cores and about 14 GB of resident memory (four engine cores with 1 GiB of KV each, four API servers, a DP
coordinator, the router). Measured on the 2-core, 24 GiB machine: the group ready in 130-180 s, the tests 15 s, the
stop 15-35 s; 2.5-4 min for the module. What only GPUs over EFA confirm is in the README's "First deploy of a wide-EP
replica" (expert-parallel forward passes across ranks, the all2all backends, NCCL over aws-ofi-nccl, NIXL on EFA).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from runtime.router.prefix_cache.dp_ranks import RANK_HEADER
from testbed.cpu_pair import REPO, WORK
from testbed.dp_group import LOCAL_RANKS, RANKS, DpGroup
from testbed.scrape import sample_total

pytestmark = pytest.mark.e2e

BLOCK = 32


def prompt_for(rank: int) -> str:
    """A prompt of a dozen blocks nothing else shares, not even its first block."""
    return "".join(
        f"def rank{rank}_handler_{i}(request):\n    return respond(request, status={200 + i})\n\n" for i in range(12)
    )


@pytest.fixture(scope="module")
def group(vllm_python: Path, tiny_model: Path, cores_to_itself: None) -> Iterator[DpGroup]:
    group = DpGroup(vllm_python, tiny_model, WORK / "dp-group", REPO)
    try:
        group.start()
        print(f"\ngroup start: nodes ready in {[round(n.started_in_s or 0, 1) for n in group.nodes]} s")
        yield group
    finally:
        group.stop()


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=120)


def complete(url: str, prompt: str, rank: int | None = None) -> int:
    """Greedy, four tokens; ``rank``: the local rank the node must serve it on. Returns the prompt's tokens."""
    headers = {} if rank is None else {RANK_HEADER: str(rank)}
    answer = client(url).completions.create(
        model="tiny", prompt=prompt, max_tokens=4, temperature=0.0, extra_headers=headers
    )
    return answer.usage.prompt_tokens


def served(group: DpGroup) -> list[float]:
    """Requests each global rank finished, from vLLM's own metrics on the node that hosts it."""
    return [sample_total(group.node_of(r).url, "vllm:request_success_total", engine=str(r)) for r in range(RANKS)]


def hits(group: DpGroup) -> list[float]:
    """Prompt tokens each global rank found in its prefix cache."""
    return [sample_total(group.node_of(r).url, "vllm:prefix_cache_hits_total", engine=str(r)) for r in range(RANKS)]


def rank_label(group: DpGroup, rank: int) -> str:
    """The router's name for a global rank: its pod (node) and its local index there (prefix_cache/dp_ranks.py)."""
    node = group.node_of(rank)
    return f"127.0.0.1:{node.port}#dp{rank % LOCAL_RANKS}"


def indexed(group: DpGroup, rank: int) -> float:
    return sample_total(group.router.url, "pdstack_router_kv_events_total", engine=rank_label(group, rank))


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not seen within {timeout_s} s: {what}"
        time.sleep(0.2)


def place(group: DpGroup, rank: int, prompt: str) -> int:
    """Serve ``prompt`` on global rank ``rank`` by asking its node for it (the router plays no part), and wait until
    vLLM counts it there, on that rank alone. Returns the prompt's tokens."""
    before = served(group)
    tokens = complete(group.node_of(rank).url, prompt, rank % LOCAL_RANKS)
    wait_until(lambda: served(group)[rank] > before[rank], f"rank {rank} counting its request")
    assert [a - b for a, b in zip(served(group), before, strict=True)] == [int(r == rank) for r in range(RANKS)]
    return tokens


@dataclass(frozen=True)
class Placed:
    prompts: list[str]
    """The prompt each global rank holds."""
    tokens: list[int]


@pytest.fixture(scope="module")
def placed(group: DpGroup) -> Placed:
    """One prompt held by each rank, every rank's events indexed by the router. A ZMQ subscriber only receives what
    is published after it joined, so each rank first serves throw-away prompts until the router has counted one of
    its events; then its own prompt, whose blocks the router must index."""
    for rank in range(RANKS):
        attempt = 0
        while indexed(group, rank) == 0:
            assert attempt < 20, f"the router never received rank {rank}'s KV events"
            place(group, rank, f"# warm-up {rank}.{attempt}\n" + prompt_for(100 + rank))
            attempt += 1
            time.sleep(0.5)
    prompts, tokens = [prompt_for(rank) for rank in range(RANKS)], []
    for rank, prompt in enumerate(prompts):
        before = indexed(group, rank)
        tokens.append(place(group, rank, prompt))
        wait_until(lambda: indexed(group, rank) > before, f"the router indexing rank {rank}'s prompt")  # noqa: B023
    return Placed(prompts, tokens)


def test_every_rank_of_both_nodes_is_indexed_from_its_own_kv_events(group: DpGroup, placed: Placed) -> None:
    """Four publishers (vLLM binds rank r at the node's base port + r), four subscriptions that received events, each
    crediting the rank whose port it came on; nothing refused (a batch stamped with another rank, an unknown parent)."""
    for rank in range(RANKS):
        assert indexed(group, rank) > 0, f"no KV event of rank {rank} applied"
    skipped = sample_total(group.router.url, "pdstack_router_kv_events_skipped_total")
    assert skipped == 0
    blocks = sample_total(group.router.url, "pdstack_router_prefix_index_blocks")
    assert blocks >= sum(tokens // BLOCK for tokens in placed.tokens)


def test_a_prefix_held_by_a_rank_is_served_by_that_rank_from_its_cache(group: DpGroup, placed: Placed) -> None:
    predicted = "pdstack_router_predicted_prefix_hit_tokens_total"
    for rank in (3, 0, 2, 1):  # each node's local ranks, in neither order
        for _ in range(2):
            before_served, before_hits = served(group), hits(group)
            before_predicted = sample_total(group.router.url, predicted, role="decode")
            complete(group.router.url, placed.prompts[rank])
            wait_until(lambda: sum(served(group)) > sum(before_served), "the routed request counted")  # noqa: B023
            landed = [a - b for a, b in zip(served(group), before_served, strict=True)]
            assert landed == [int(r == rank) for r in range(RANKS)], f"rank {rank}'s prefix went to {landed}"
            gained = [a - b for a, b in zip(hits(group), before_hits, strict=True)]
            whole_blocks = (placed.tokens[rank] - 1) // BLOCK * BLOCK  # vLLM computes the last token itself
            assert gained == [whole_blocks * (r == rank) for r in range(RANKS)], f"rank {rank}'s prefix hits"
            assert sample_total(group.router.url, predicted, role="decode") - before_predicted >= whole_blocks


def test_each_node_serves_its_own_ranks_by_local_index(group: DpGroup) -> None:
    """The worker node (global ranks 2 and 3) refuses a global rank in the header: the router must send the local
    index (it does, above). Both nodes run hybrid load balancing, one API server per local rank."""
    with pytest.raises(openai.BadRequestError, match=rf"out of range \[0, {LOCAL_RANKS}\)"):
        complete(group.nodes[1].url, "a prompt", rank=LOCAL_RANKS)
    for node in group.nodes:
        log = node.log.read_text(errors="replace")
        assert f"Defaulting api_server_count to data_parallel_size_local ({LOCAL_RANKS}) for hybrid LB mode" in log
        assert "autoswitch to data_parallel_external_lb" not in log
