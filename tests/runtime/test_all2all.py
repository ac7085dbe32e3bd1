"""Which all-to-all backends the catalog's EFA nodes can carry, and why the others are refused."""

from __future__ import annotations

import pytest

from runtime.all2all import EFA_BACKENDS, VLLM_ALL2ALL_BACKENDS, backend_problem, selectable


@pytest.mark.parametrize("backend", sorted(EFA_BACKENDS))
def test_the_efa_backends_pass_across_nodes(backend: str) -> None:
    assert backend_problem(backend, crosses_nodes=True) is None


@pytest.mark.parametrize(
    ("backend", "why"),
    [
        ("deepep_low_latency", "NVSHMEM IBGDA"),
        ("deepep_high_throughput", "NVSHMEM IBGDA"),
        ("nixl_ep", "GDAKI"),
        ("flashinfer_nvlink_one_sided", "multi-node NVLink"),
        ("moonep", "NVLink"),
    ],
)
def test_ibgda_and_nvlink_backends_are_refused_across_efa_with_the_reason(backend: str, why: str) -> None:
    problem = backend_problem(backend, crosses_nodes=True)
    assert problem is not None and why in problem and "allgather_reducescatter or deepep_v2" in problem
    assert backend_problem(backend, crosses_nodes=False) is None


@pytest.mark.parametrize(
    ("backend", "why"),
    [
        ("pplx", "removed from vLLM"),
        ("naive", "removed from vLLM"),
        ("passthrough", "not selectable"),
        ("mori_low_latency", "ROCm"),
        ("deepep", "no such backend"),
    ],
)
def test_gone_foreign_and_unknown_backends_are_refused_everywhere(backend: str, why: str) -> None:
    assert why in (backend_problem(backend, crosses_nodes=False) or "")


def test_what_a_deployment_may_name_is_a_subset_of_the_pinned_list() -> None:
    assert set(selectable()) < VLLM_ALL2ALL_BACKENDS
    assert {"pplx", "naive", "passthrough"}.isdisjoint(selectable())
