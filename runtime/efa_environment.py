"""The environment a worker's fabric needs: EFA/libfabric variables where the node has EFA, socket interfaces always."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from runtime.catalog import InstanceSpec
from runtime.host_probe import Host

EFA_LIBRARY_DIR = "/opt/amazon/efa/lib"


class FabricEnvironment(BaseModel):
    """Variables to set for the fabric, and why (or why not)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: dict[str, str]
    reasons: list[str]

    @classmethod
    def resolve(cls, host: Host, spec: InstanceSpec, environ: Mapping[str, str]) -> FabricEnvironment:
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
        if spec.gpudirect_rdma:
            env["FI_EFA_USE_DEVICE_RDMA"] = "1"
            reasons.append(f"FI_EFA_USE_DEVICE_RDMA=1: {spec.name} supports GPUDirect RDMA over EFA")
        else:
            reasons.append(f"FI_EFA_USE_DEVICE_RDMA unset: {spec.name} has no GPUDirect RDMA over EFA")
        library_path = [part for part in environ.get("LD_LIBRARY_PATH", "").split(":") if part]
        if EFA_LIBRARY_DIR not in library_path:
            library_path.insert(0, EFA_LIBRARY_DIR)
        env["LD_LIBRARY_PATH"] = ":".join(library_path)
        reasons.append(f"FI_PROVIDER=efa: {len(host.efa_devices)} EFA devices")
        return cls(env=env, reasons=reasons)
