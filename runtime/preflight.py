"""``python -m runtime preflight``: checks a node against the serving configuration before a worker runs on it.

Each check is ``pass``, ``warn`` or ``fail`` with a one-line reason; any ``fail`` makes the exit code non-zero.
Every file-system root is a parameter so the checks run against a fake tree in tests.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from runtime.all2all import GDRDRV_DEVICE, NEEDS_GDRCOPY
from runtime.catalog import instance_spec
from runtime.config import Serving
from runtime.efa_environment import FabricEnvironment
from runtime.host_probe import Host, HostProbe
from runtime.kv_transfer import KvTransferPlan, KvTransferPlanError
from runtime.model_fetch import ModelFetch
from runtime.nccl_environment import NcclEnvironment, find_ofi_plugin
from runtime.nccl_network import NcclNetwork, NcclProbeError, probe_nccl_network
from runtime.nixl_loopback import NixlLoopback, NixlUnavailable
from runtime.roles import Role

Status = Literal["pass", "warn", "fail"]

SHM_FAIL_BYTES = 256 * 1024**2  # below this NCCL and vLLM's shared-memory broadcast fail outright
SHM_WARN_BYTES = 8 * 1024**3  # llm-d mounts a 20 GiB memory emptyDir; a few GiB is the practical floor


class Check(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    status: Status
    reason: str
    detail: dict[str, Any] = {}


class PreflightReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: str
    instance_type: str
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(check.status != "fail" for check in self.checks)

    def to_json(self) -> str:
        return json.dumps({**self.model_dump(mode="json"), "passed": self.passed}, indent=2)

    def to_text(self) -> str:
        width = max(len(check.name) for check in self.checks)
        lines = [f"preflight for {self.role} on {self.instance_type}"]
        lines += [f"{check.status:<4}  {check.name:<{width}}  {check.reason}" for check in self.checks]
        lines.append("result: " + ("pass" if self.passed else "FAIL"))
        return "\n".join(lines)


class Preflight:
    def __init__(
        self,
        serving: Serving,
        role: Role,
        probe: HostProbe | None = None,
        meminfo: Path = Path("/proc/meminfo"),
        shm: Path = Path("/dev/shm"),
        loopback: Callable[[str], NixlLoopback] = NixlLoopback,
        model_fetch: ModelFetch | None = None,
        nccl_probe: Callable[[Mapping[str, str]], NcclNetwork] = probe_nccl_network,
        find_ofi_plugin: Callable[[], Path | None] = find_ofi_plugin,
    ) -> None:
        self.nccl_probe = nccl_probe
        self.find_ofi_plugin = find_ofi_plugin
        self.serving = serving
        self.role_name = role
        self.role = serving.role(role)
        self.spec = instance_spec(self.role.instance_type)
        self.probe = probe or HostProbe()
        self.meminfo = meminfo
        self.shm = shm
        self.loopback = loopback
        self.model_fetch = model_fetch or ModelFetch(serving.model)

    def run(self) -> PreflightReport:
        host = self.probe.probe()
        checks = [self.gpus(host), self.efa(host), self.hugepages(host), self.shared_memory()]
        checks += self.nixl(host)
        checks += self.nccl_across_nodes(host)
        checks.append(self.model())
        return PreflightReport(role=self.role_name, instance_type=self.spec.name, checks=checks)

    def gpus(self, host: Host) -> Check:
        needed = self.role.gpus_per_node
        parallel = f"tensor_parallel={self.role.tensor_parallel} x data_parallel_local={self.role.data_parallel_local}"
        if host.gpus == 0:
            return Check(
                name="gpus",
                status="fail",
                reason=f"no GPU present (CPU platform); {parallel} needs {needed}",
                detail={"present": 0, "needed": needed},
            )
        status: Status = "pass" if host.gpus >= needed else "fail"
        return Check(
            name="gpus",
            status=status,
            reason=f"{host.gpus} GPUs present; {parallel} needs {needed}",
            detail={"present": host.gpus, "needed": needed},
        )

    def efa(self, host: Host) -> Check:
        expected = self.spec.efa_interfaces
        present = len(host.efa_devices)
        detail = {"present": present, "expected": expected, "devices": host.efa_devices}
        if present == 0:
            return Check(
                name="efa",
                status="warn",
                detail=detail,
                reason=f"no EFA device present ({self.spec.name} has {expected}): KV transfer goes over TCP",
            )
        if present < expected:
            return Check(
                name="efa",
                status="warn",
                detail=detail,
                reason=f"{present} of the {expected} EFA interfaces of {self.spec.name} in this pod",
            )
        return Check(
            name="efa",
            status="pass",
            detail=detail,
            reason=f"{present} EFA interfaces, as the catalog's {self.spec.name}",
        )

    def hugepages(self, host: Host) -> Check:
        fields = self._meminfo()
        total = fields.get("HugePages_Total", 0)
        size_kib = fields.get("Hugepagesize", 0)
        detail = {"pages": total, "page_kib": size_kib}
        if total > 0:
            return Check(name="hugepages", status="pass", detail=detail, reason=f"{total} hugepages of {size_kib} KiB")
        if host.has_efa:
            return Check(
                name="hugepages",
                status="warn",
                detail=detail,
                reason="no hugepages: libfabric's EFA provider falls back to regular pages for its buffers",
            )
        return Check(name="hugepages", status="pass", detail=detail, reason="no hugepages; not needed without EFA")

    def shared_memory(self) -> Check:
        try:
            size = shutil.disk_usage(self.shm).total
        except OSError as error:
            return Check(name="shm", status="fail", reason=f"{self.shm} unavailable: {error}")
        gib = size / 1024**3
        detail = {"bytes": size}
        if size < SHM_FAIL_BYTES:
            return Check(
                name="shm",
                status="fail",
                detail=detail,
                reason=f"{self.shm} is {gib:.2f} GiB: NCCL and vLLM need far more; mount a memory emptyDir",
            )
        if size < SHM_WARN_BYTES:
            return Check(
                name="shm",
                status="warn",
                detail=detail,
                reason=f"{self.shm} is {gib:.1f} GiB; {SHM_WARN_BYTES // 1024**3} GiB or more is advised",
            )
        return Check(name="shm", status="pass", detail=detail, reason=f"{self.shm} is {gib:.1f} GiB")

    def nixl(self, host: Host) -> list[Check]:
        try:
            plan = KvTransferPlan.resolve(self.serving.kv_transfer, "kv_consumer", host)
        except KvTransferPlanError as error:
            return [Check(name="nixl", status="fail", reason=str(error))]
        backend = plan.backend
        loopback = self.loopback(backend)
        try:
            plugins = loopback.plugins()
        except NixlUnavailable as error:
            return [Check(name="nixl", status="fail", reason=str(error))]
        if backend not in plugins:
            return [
                Check(
                    name="nixl",
                    status="fail",
                    detail={"plugins": plugins},
                    reason=f"NIXL has no {backend} plugin; it has {', '.join(plugins) or 'none'}",
                )
            ]
        checks = [
            Check(
                name="nixl",
                status="pass",
                detail={"plugins": plugins},
                reason=f"NIXL importable, {backend} plugin present ({plan.reasons[0]})",
            )
        ]
        try:
            result = loopback.measure()
        except NixlUnavailable as error:
            checks.append(Check(name="nixl_transfer", status="fail", reason=str(error)))
            return checks
        checks.append(
            Check(
                name="nixl_transfer",
                status="pass",
                detail=result.model_dump(),
                reason=f"{result.bytes // 1024**2} MiB DRAM->DRAM over {backend}: {result.nixl_gbps:.2f} GB/s "
                f"(memcpy {result.memcpy_gbps:.2f} GB/s)",
            )
        )
        return checks

    def nccl_across_nodes(self, host: Host) -> list[Check]:
        """A replica spanning nodes runs its collectives (data-parallel sync, the expert all-to-all) through NCCL: on
        EFA it must load aws-ofi-nccl, or it silently uses TCP sockets. The probe starts NCCL with the worker's
        environment and reads the network it chose (runtime/nccl_network.py)."""
        if self.role.nodes_per_replica == 1:
            return []
        if not host.has_efa:
            return [Check(name="nccl_network", status="warn", reason="no EFA device: NCCL between nodes uses TCP")]
        backend = self.role.all2all_backend if self.role.expert_parallel else None
        nccl = NcclEnvironment.resolve(backend, find_plugin=self.find_ofi_plugin)
        fabric = FabricEnvironment.resolve(host, self.spec, os.environ, nccl)
        checks = []
        if backend in NEEDS_GDRCOPY:
            checks.append(self.gdrdrv(backend))
        try:
            found = self.nccl_probe(fabric.env)
        except NcclProbeError as error:
            return [*checks, Check(name="nccl_network", status="fail", reason=str(error))]
        detail = found.model_dump()
        if found.libfabric:
            reason = f"NCCL uses {found.network} (provider {found.ofi_provider or 'not logged'}) between nodes"
            return [*checks, Check(name="nccl_network", status="pass", detail=detail, reason=reason)]
        plugin = fabric.env.get("NCCL_NET_PLUGIN", "no aws-ofi-nccl plugin found")
        return [
            *checks,
            Check(
                name="nccl_network",
                status="fail",
                detail=detail,
                reason=f"NCCL chose {found.network or 'no network'} instead of Libfabric on an EFA node ({plugin}): "
                f"nodes_per_replica={self.role.nodes_per_replica} would run its collectives over TCP sockets",
            ),
        ]

    def gdrdrv(self, backend: str) -> Check:
        """The pod mounts the host's /dev/gdrdrv for this backend; opening it proves the container may use it."""
        device = self.probe.dev / Path(GDRDRV_DEVICE).name
        why = f"{backend}'s NCCL GIN (aws-ofi-nccl) opens a gdrcopy handle"
        try:
            os.close(os.open(device, os.O_RDWR))
        except OSError as error:
            reason = f"cannot open {device} ({error.strerror}): {why}; load the gdrdrv module on the node"
            return Check(name="gdrdrv", status="fail", reason=reason)
        return Check(name="gdrdrv", status="pass", reason=f"{device} opens")

    def model(self) -> Check:
        reachable, reason = self.model_fetch.reachable()
        return Check(
            name="model",
            status="pass" if reachable else "fail",
            reason=reason,
            detail={"source": self.serving.model.source},
        )

    def _meminfo(self) -> dict[str, int]:
        fields: dict[str, int] = {}
        try:
            lines = self.meminfo.read_text().splitlines()
        except OSError:
            return fields
        for line in lines:
            name, _, value = line.partition(":")
            parts = value.split()
            if parts and parts[0].isdigit():
                fields[name.strip()] = int(parts[0])
        return fields
