"""The environment a worker's fabric needs: EFA/libfabric variables where the node has EFA, socket interfaces always."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from runtime.catalog import InstanceSpec
from runtime.host_probe import Host
from runtime.nccl_environment import NcclEnvironment

EFA_LIBRARY_DIR = "/opt/amazon/efa/lib"

LIBFABRIC_POST_THREADS = "4"
"""NIXL_LIBFABRIC_NUM_THREADS on EFA nodes: NIXL's LIBFABRIC backend posts a transfer's descriptors from this many
threads instead of one loop (ai-dynamo/nixl #1581, in NIXL >= 1.3.1; ``src/plugins/libfabric/README.md``: backend
parameter ``num_threads``, default 0 = serial posting, examples 4 and 8; ``src/utils/libfabric/libfabric_common.cpp``
reads every such parameter from ``NIXL_LIBFABRIC_<NAME>`` first). 4 is the value llm-d moved to after measuring
NIXL 1.2.0's serial posting loop as the P99 bottleneck on p5 (its pd-disaggregation TP4 report, "NIXL v1.2.0
baseline"); NIXL caps it at 4x the hardware threads. A role's ``extra_env`` overrides it.

The other EFA settings that README documents are left to NIXL on purpose: ``NIXL_LIBFABRIC_MAX_BW_PER_DRAM_SEG`` is
computed from the PCIe topology and "normally does not require user override", and ``NIXL_LIBFABRIC_SPLIT_BATCH_SIZE``
keeps its default (1024 descriptors before the pool is used)."""


class FabricEnvironment(BaseModel):
    """Variables to set for the fabric, and why (or why not)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: dict[str, str]
    reasons: list[str]

    @classmethod
    def resolve(
        cls,
        host: Host,
        spec: InstanceSpec,
        environ: Mapping[str, str],
        nccl_across_nodes: NcclEnvironment | None = None,
    ) -> FabricEnvironment:
        """``nccl_across_nodes``: the NCCL environment of a replica spanning nodes (runtime/nccl_environment.py), laid
        on where the node has EFA."""
        env: dict[str, str] = {}
        reasons: list[str] = []
        if host.socket_ifname:
            env["NCCL_SOCKET_IFNAME"] = host.socket_ifname
            env["GLOO_SOCKET_IFNAME"] = host.socket_ifname
            reasons.append(f"NCCL/Gloo socket interface {host.socket_ifname}: carries the pod IP {host.pod_ip}")
        else:
            reasons.append(f"NCCL/Gloo socket interface left to defaults: no interface carries {host.pod_ip}")
        if not host.has_efa:
            reasons.append("no EFA variables: no EFA device in /sys/class/infiniband")
            return cls(env=env, reasons=reasons)
        env["FI_PROVIDER"] = "efa"
        env["NIXL_LIBFABRIC_NUM_THREADS"] = LIBFABRIC_POST_THREADS
        reasons.append(
            f"NIXL_LIBFABRIC_NUM_THREADS={LIBFABRIC_POST_THREADS}: "
            "NIXL's LIBFABRIC backend posts descriptors in parallel"
        )
        if spec.gpudirect_rdma:
            env["FI_EFA_USE_DEVICE_RDMA"] = "1"
            reasons.append(f"FI_EFA_USE_DEVICE_RDMA=1: {spec.name} supports GPUDirect RDMA over EFA")
        else:
            reasons.append(f"FI_EFA_USE_DEVICE_RDMA unset: {spec.name} has no GPUDirect RDMA over EFA")
        library_path = [part for part in environ.get("LD_LIBRARY_PATH", "").split(":") if part]
        wanted = [EFA_LIBRARY_DIR]
        if nccl_across_nodes is not None:
            env.update(nccl_across_nodes.env)
            reasons.extend(nccl_across_nodes.reasons)
            wanted += nccl_across_nodes.library_dirs
        library_path[:0] = [directory for directory in wanted if directory not in library_path]
        env["LD_LIBRARY_PATH"] = ":".join(library_path)
        reasons.append(f"FI_PROVIDER=efa: {len(host.efa_devices)} EFA devices")
        return cls(env=env, reasons=reasons)
