"""What the node under a worker has: GPUs, EFA devices, the platform, the pod IP and its interface, and the
LeaderWorkerSet placement of a multi-node replica.

Every file-system root and the environment are parameters, so tests probe a fake tree and the real probe reads
``/dev``, ``/sys`` and ``os.environ``.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import psutil
from pydantic import BaseModel, ConfigDict

_NVIDIA_DEVICE = re.compile(r"^nvidia\d+$")


class LwsPlacement(BaseModel):
    """The LeaderWorkerSet variables of one pod in a multi-node replica."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    leader_address: str
    group_size: int
    worker_index: int


class Host(BaseModel):
    """The probed facts the worker's command and environment depend on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    platform: Literal["cuda", "cpu"]
    gpus: int
    efa_devices: list[str]
    pod_ip: str
    socket_ifname: str | None
    lws: LwsPlacement | None

    @property
    def has_efa(self) -> bool:
        return bool(self.efa_devices)


class HostProbeError(RuntimeError):
    """The node's environment is malformed (for example half-set LeaderWorkerSet variables)."""


class HostProbe:
    def __init__(
        self,
        dev: Path = Path("/dev"),
        sysfs: Path = Path("/sys"),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.dev = dev
        self.sysfs = sysfs
        self.environ = os.environ if environ is None else environ

    def probe(self) -> Host:
        gpus = self.gpu_count()
        pod_ip = self.pod_ip()
        return Host(
            platform="cuda" if gpus else "cpu",
            gpus=gpus,
            efa_devices=self.efa_devices(),
            pod_ip=pod_ip,
            socket_ifname=self.interface_of(pod_ip),
            lws=self.lws_placement(),
        )

    def gpu_count(self) -> int:
        """NVIDIA GPUs visible in this container (``/dev/nvidiaN`` nodes the device plugin mounted)."""
        if not self.dev.is_dir():
            return 0
        return sum(1 for entry in self.dev.iterdir() if _NVIDIA_DEVICE.match(entry.name))

    def efa_devices(self) -> list[str]:
        """RDMA devices under ``/sys/class/infiniband`` whose driver is ``efa``, sorted."""
        root = self.sysfs / "class" / "infiniband"
        if not root.is_dir():
            return []
        return sorted(entry.name for entry in root.iterdir() if (entry / "device" / "driver").resolve().name == "efa")

    def pod_ip(self) -> str:
        """``POD_IP`` (the downward API's ``status.podIP``), else the address the host name resolves to."""
        if ip := self.environ.get("POD_IP"):
            return ip
        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return "127.0.0.1"

    def interface_of(self, ip: str) -> str | None:
        """The network interface carrying ``ip`` (for NCCL/Gloo socket traffic), if any."""
        for name, addresses in psutil.net_if_addrs().items():
            if any(address.family == socket.AF_INET and address.address == ip for address in addresses):
                return name
        return None

    def lws_placement(self) -> LwsPlacement | None:
        names = ("LWS_LEADER_ADDRESS", "LWS_GROUP_SIZE", "LWS_WORKER_INDEX")
        present = {name: self.environ[name] for name in names if self.environ.get(name)}
        if not present:
            return None
        if len(present) != len(names):
            missing = ", ".join(name for name in names if name not in present)
            raise HostProbeError(f"LeaderWorkerSet variables are half set: missing {missing}")
        try:
            return LwsPlacement(
                leader_address=present["LWS_LEADER_ADDRESS"],
                group_size=int(present["LWS_GROUP_SIZE"]),
                worker_index=int(present["LWS_WORKER_INDEX"]),
            )
        except ValueError as error:
            raise HostProbeError(f"LeaderWorkerSet variables are not integers: {present}") from error
