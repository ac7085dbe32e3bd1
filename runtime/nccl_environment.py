"""The NCCL environment of a replica whose collectives cross nodes over EFA (a LeaderWorkerSet group): the aws-ofi-nccl
plugin NCCL must load instead of falling back to TCP sockets, and what the chosen all-to-all backend needs on top.

Sources (read 2026-12-07):
- [OFI-DIRS] The EFA installer puts aws-ofi-nccl under ``/opt/amazon/ofi-nccl``: ``lib/x86_64-linux-gnu`` in an Ubuntu
  container (awslabs/ai-on-eks, the slinky-slurm training blueprint, lists ``libnccl-net.so libnccl-ofi-tuner.so``
  there; the DLC line pdstack pins is Ubuntu 24.04), ``lib`` on the AWS Deep Learning AMI (a public nccl-tests
  ``mpirun`` puts ``/opt/amazon/ofi-nccl/lib`` on ``LD_LIBRARY_PATH``). Older plugin builds are named
  ``libnccl-net-ofi.so``. Not read inside the pinned image itself: the worker looks, and preflight checks NCCL's choice.
- [NET-PLUGIN] NCCL loads ``libnccl-net.so`` from the library path, or what ``NCCL_NET_PLUGIN`` names; a full path is
  taken as is (awslabs/awsome-distributed-ai PR #1230 ``recipe/serve.sh``: ``NCCL_NET_PLUGIN=/opt/aws-ofi-nccl/lib/
  libnccl-net-ofi.so`` with NCCL 2.31). When no plugin loads NCCL silently uses sockets (NVIDIA/nccl issue #229;
  uccl-project/uccl issue #734 measured vLLM EP on p5 over sockets that way): preflight reads NCCL's choice
  (runtime/nccl_network.py).
- [NVLS] ``NCCL_NVLS_ENABLE=0`` (NVLink SHARP off): set in the AWS vLLM LeaderWorkerSet sample's environment on p5
  (awslabs PR #1230's env contract, "identical to the measured runs"); pdstack follows it without a measurement of
  its own.
- [GIN] ``deepep_v2`` over EFA, CPU-proxy GIN: ``NCCL_GIN_ENABLE=1 NCCL_GIN_TYPE=2 OFI_NCCL_GIN_GDAKI=0``,
  ``DEEP_EP_BACKEND=nccl``, ``EP_REUSE_NCCL_COMM=0`` (DeepEP creates its own communicator; reusing vLLM's segfaulted),
  awslabs PR #1230 ``recipe/serve.sh``; the same GIN variables in vllm-project/vllm PR #41183's 2 x p5 run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

OFI_NCCL_DIRS = ("/opt/amazon/ofi-nccl/lib/x86_64-linux-gnu", "/opt/amazon/ofi-nccl/lib")
OFI_NCCL_NAMES = ("libnccl-net-ofi.so", "libnccl-net.so")

CROSS_NODE_ENV = {"NCCL_NVLS_ENABLE": "0"}
"""Set on every node of a replica that spans EFA nodes [NVLS]."""

BACKEND_ENV: dict[str, dict[str, str]] = {
    "deepep_v2": {
        "NCCL_GIN_ENABLE": "1",
        "NCCL_GIN_TYPE": "2",
        "OFI_NCCL_GIN_GDAKI": "0",
        "DEEP_EP_BACKEND": "nccl",
        "EP_REUSE_NCCL_COMM": "0",
    },
}
"""What each all-to-all backend needs on EFA beyond the plugin [GIN]; allgather_reducescatter needs NCCL alone."""


def find_ofi_plugin(dirs: Sequence[str] = OFI_NCCL_DIRS) -> Path | None:
    """The aws-ofi-nccl plugin library on this node, or None."""
    for directory in dirs:
        for name in OFI_NCCL_NAMES:
            candidate = Path(directory, name)
            if candidate.is_file():
                return candidate
    return None


class NcclEnvironment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    env: dict[str, str]
    library_dirs: list[str]
    reasons: list[str]

    @classmethod
    def resolve(
        cls, all2all_backend: str | None, find_plugin: Callable[[], Path | None] = find_ofi_plugin
    ) -> NcclEnvironment:
        """For a replica spanning EFA nodes: the plugin, the cross-node settings and the backend's variables."""
        env = dict(CROSS_NODE_ENV)
        reasons = ["NCCL_NVLS_ENABLE=0: the AWS vLLM LeaderWorkerSet samples on p5 turn NVLink SHARP off"]
        library_dirs: list[str] = []
        plugin = find_plugin()
        if plugin is None:
            reasons.append(
                f"no aws-ofi-nccl plugin in {', '.join(OFI_NCCL_DIRS)}: NCCL will fall back to TCP sockets between "
                "nodes (preflight's nccl_network check fails)"
            )
        else:
            env["NCCL_NET_PLUGIN"] = str(plugin)
            library_dirs.append(str(plugin.parent))
            reasons.append(f"NCCL_NET_PLUGIN={plugin}: NCCL reaches the other nodes over EFA through aws-ofi-nccl")
        backend = all2all_backend or "allgather_reducescatter"
        extra = BACKEND_ENV.get(backend, {})
        if extra:
            env.update(extra)
            reasons.append(f"{backend}: " + " ".join(f"{k}={v}" for k, v in extra.items()))
        return cls(env=env, library_dirs=library_dirs, reasons=reasons)
