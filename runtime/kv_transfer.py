"""How KV moves between the two roles on this node: NixlConnector settings resolved against the probed host."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict

from runtime.config import KvTransfer
from runtime.host_probe import Host

KvRole = Literal["kv_producer", "kv_consumer"]


class KvTransferPlanError(ValueError):
    """The configured KV transfer cannot run on this host."""


class KvTransferPlan(BaseModel):
    """The resolved ``--kv-transfer-config`` of one worker, with the reasons for each automatic choice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kv_role: KvRole
    backend: Literal["UCX", "LIBFABRIC"]
    buffer_device: Literal["cuda", "cpu"]
    load_failure_policy: Literal["fail", "recompute"]
    lease_duration_s: int
    reasons: list[str]

    @classmethod
    def resolve(cls, settings: KvTransfer, kv_role: KvRole, host: Host) -> KvTransferPlan:
        reasons: list[str] = []
        # NIXL never picks LIBFABRIC by itself: it defaults to UCX and has no environment override (ai-dynamo/nixl
        # issue #909, aws-samples/awsome-inference PR #72), so EFA nodes name it in kv_connector_extra_config.backends
        # as llm-d's AWS overlay does (guides/pd-disaggregation/modelserver/gpu/vllm/aws/).
        if settings.backend == "auto":
            backend: Literal["UCX", "LIBFABRIC"] = "LIBFABRIC" if host.has_efa else "UCX"
            found = f"{len(host.efa_devices)} EFA devices" if host.has_efa else "no EFA device"
            reasons.append(f"NIXL backend {backend}: auto, {found} in /sys/class/infiniband")
        else:
            backend = settings.backend
            reasons.append(f"NIXL backend {backend}: configured")
        if settings.buffer_device == "auto":
            buffer_device: Literal["cuda", "cpu"] = "cuda" if host.platform == "cuda" else "cpu"
            reasons.append(f"KV buffer device {buffer_device}: auto, {host.platform} platform")
        else:
            buffer_device = settings.buffer_device
            if buffer_device == "cuda" and host.platform != "cuda":
                raise KvTransferPlanError(
                    "serving.kv_transfer.buffer_device='cuda' but this host has no GPU (cpu platform); "
                    "valid here: 'cpu' or 'auto'"
                )
            reasons.append(f"KV buffer device {buffer_device}: configured")
        return cls(
            kv_role=kv_role,
            backend=backend,
            buffer_device=buffer_device,
            load_failure_policy=settings.load_failure_policy,
            lease_duration_s=settings.lease_duration_s,
            reasons=reasons,
        )

    def vllm_json(self) -> str:
        """The value of vLLM's ``--kv-transfer-config``."""
        return json.dumps(
            {
                "kv_connector": "NixlConnector",
                "kv_role": self.kv_role,
                "kv_buffer_device": self.buffer_device,
                "kv_load_failure_policy": self.load_failure_policy,
                "kv_connector_extra_config": {
                    "backends": [self.backend],
                    "kv_lease_duration": self.lease_duration_s,
                },
            },
            separators=(",", ":"),
        )
