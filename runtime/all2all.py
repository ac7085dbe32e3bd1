"""The MoE all-to-all backends of the pinned vLLM, which of them an EFA fabric carries between nodes, and the NCCL
environment each needs there.

Facts, with their sources (read 2026-12-07):

- [VLLM-A2A] vLLM 0.32.0 ``vllm/config/parallel.py``: ``All2AllBackend`` lists ``naive``, ``pplx``,
  ``deepep_high_throughput``, ``deepep_low_latency``, ``deepep_v2``, ``mori_high_throughput``, ``mori_low_latency``,
  ``moonep``, ``nixl_ep``, ``allgather_reducescatter``, ``flashinfer_all2allv`` (an alias of
  ``flashinfer_nvlink_two_sided``), ``flashinfer_nvlink_two_sided``, ``flashinfer_nvlink_one_sided``, ``passthrough``;
  ``ParallelConfig.__post_init__`` warns that ``pplx``/``naive`` "have been removed" and falls back to
  ``allgather_reducescatter``; ``passthrough`` is "bound automatically ... not selectable from the CLI". The default is
  ``allgather_reducescatter``. tests/e2e/test_worker_argv_in_vllm.py checks this table against the pinned vLLM.
- [DEEPEP-IBGDA] DeepEP v1's internode kernels (``deepep_high_throughput``, ``deepep_low_latency``) issue RDMA from the
  GPU through NVSHMEM's IBGDA, which needs InfiniBand/RoCE verbs that EFA does not offer: awslabs/awsome-distributed-ai
  PR #1231 ("DeepEP's default transport is NVSHMEM/IBGDA, which EFA does not provide"); llm-d's wide-EP guide is
  validated on IB/RoCE only; uccl-project/uccl issue #734 (vLLM hangs in DeepEP low-latency mode over EFA on p5).
- [DEEPEP-V2] ``deepep_v2`` runs DeepEP v2's ElasticBuffer over NCCL's GPU-Initiated Networking (GIN), which
  aws-ofi-nccl implements on EFA: vllm-project/vllm PR #41183 (a 2 x p5.48xlarge run, DP=16 EP=16, with
  ``NCCL_GIN_ENABLE=1`` ``NCCL_GIN_TYPE=2`` and the aws-ofi-nccl GIN plugin; NCCL logged "Selected provider is efa");
  the CPU-proxy GIN environment of awslabs/awsome-distributed-ai PR #1230 (``recipe/serve.sh``: ``NCCL_GIN_ENABLE=1
  NCCL_GIN_TYPE=2 OFI_NCCL_GIN_GDAKI=0 NCCL_NVLS_ENABLE=0 DEEP_EP_BACKEND=nccl EP_REUSE_NCCL_COMM=0``); the GIN plugin
  ships in aws-ofi-nccl >= 1.21 and needs the EFA installer >= 1.50 (aws/deep-learning-containers PR #6730 moves the
  vLLM image to EFA 1.50.0 and NCCL 2.31.2 for it) and opens a gdrcopy handle, so the pod needs ``/dev/gdrdrv`` (awslabs
  PR #1234: "the launchers bind-mount /dev/gdrdrv, and the plugin's GIN initialization opens a gdr handle").
- [MORI] MoRI is AMD's ROCm expert-parallel library; every catalog instance has NVIDIA GPUs.
- [NVLINK] ``moonep`` and the ``flashinfer_nvlink_*`` kernels move tokens over NVLink (multi-node NVLink for the
  FlashInfer ones, GB200-class racks), which EC2 p4/p5/p6-b200 nodes do not share between nodes.
- [NIXL-EP] ``nixl_ep`` posts transfers from the GPU through NIXL's device API, which only the UCX GPU backend
  (GDAKI over InfiniBand/RoCE verbs) implements; whether a LIBFABRIC/EFA path is possible is an open question
  (deepseek-ai/DeepEP issue #659, 2026-06, on the NIXL EP path hard-wiring "UCX" and mlx5/ibverbs). No published run
  of it over EFA was found.
"""

from __future__ import annotations

from typing import Final

VLLM_ALL2ALL_BACKENDS: Final = frozenset(
    {
        "naive",
        "pplx",
        "deepep_high_throughput",
        "deepep_low_latency",
        "deepep_v2",
        "mori_high_throughput",
        "mori_low_latency",
        "moonep",
        "nixl_ep",
        "allgather_reducescatter",
        "flashinfer_all2allv",
        "flashinfer_nvlink_two_sided",
        "flashinfer_nvlink_one_sided",
        "passthrough",
    }
)
"""Every value of the pinned vLLM's ``All2AllBackend`` [VLLM-A2A]."""

REMOVED: Final = {
    "pplx": "removed from vLLM (0.32 falls back to allgather_reducescatter with a warning)",
    "naive": "removed from vLLM (0.32 falls back to allgather_reducescatter with a warning)",
    "passthrough": "not selectable: vLLM binds it itself for MoE kernels that dispatch on their own",
}
"""Values the pinned vLLM lists but a deployment may not choose, and why."""

EFA_BACKENDS: Final = {
    "allgather_reducescatter": "NCCL all-gather and reduce-scatter, over EFA through the aws-ofi-nccl plugin",
    "deepep_v2": "DeepEP v2 over NCCL GIN, which aws-ofi-nccl >= 1.21 implements on EFA (EFA installer >= 1.50)",
}
"""The backends whose traffic between nodes EFA carries [DEEPEP-V2]."""

NOT_ON_EFA: Final = {
    "deepep_high_throughput": "DeepEP v1 needs NVSHMEM IBGDA (GPU-initiated InfiniBand/RoCE RDMA), which EFA lacks",
    "deepep_low_latency": "DeepEP v1 needs NVSHMEM IBGDA (GPU-initiated InfiniBand/RoCE RDMA), which EFA lacks",
    "nixl_ep": "NIXL EP needs GPU-initiated RDMA through UCX GDAKI over InfiniBand/RoCE; EFA offers none",
    "moonep": "MoonEP moves tokens over NVLink, which does not join EC2 nodes",
    "flashinfer_all2allv": "FlashInfer's all-to-all needs multi-node NVLink, which does not join EC2 nodes",
    "flashinfer_nvlink_two_sided": "FlashInfer's all-to-all needs multi-node NVLink, which does not join EC2 nodes",
    "flashinfer_nvlink_one_sided": "FlashInfer's all-to-all needs multi-node NVLink, which does not join EC2 nodes",
}
"""Backends that cannot cross EFA between nodes, and why [DEEPEP-IBGDA] [NVLINK] [NIXL-EP]."""

ROCM_ONLY: Final = {
    "mori_high_throughput": "MoRI is AMD's ROCm library; the catalog's GPUs are NVIDIA",
    "mori_low_latency": "MoRI is AMD's ROCm library; the catalog's GPUs are NVIDIA",
}
"""Backends for other GPUs than the catalog's [MORI]."""

GDRDRV_DEVICE: Final = "/dev/gdrdrv"

NEEDS_GDRCOPY: Final = frozenset({"deepep_v2"})
"""Backends whose pods need the host's ``/dev/gdrdrv`` (aws-ofi-nccl's GIN opens a gdrcopy handle) [DEEPEP-V2]."""


def backend_problem(backend: str, *, crosses_nodes: bool) -> str | None:
    """Why ``backend`` cannot be used on the catalog's EFA instances (``crosses_nodes``: the expert-parallel group
    spans nodes, so its all-to-all goes over EFA), or None when it can."""
    if backend not in VLLM_ALL2ALL_BACKENDS:
        return f"the pinned vLLM has no such backend; it offers {', '.join(selectable())}"
    if backend in REMOVED:
        return REMOVED[backend]
    if backend in ROCM_ONLY:
        return ROCM_ONLY[backend]
    if crosses_nodes and backend in NOT_ON_EFA:
        return f"{NOT_ON_EFA[backend]}; across EFA nodes use {' or '.join(sorted(EFA_BACKENDS))}"
    return None


def selectable() -> list[str]:
    """The backends a deployment may name on some instance, sorted."""
    return sorted(VLLM_ALL2ALL_BACKENDS - set(REMOVED) - set(ROCM_ONLY))
