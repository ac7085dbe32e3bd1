"""The workers' autoscaling (KEDA ScaledObjects over the metrics workspace): bounds and targets per role."""

from __future__ import annotations

from pydantic import Field, model_validator

from infra.config.common import Strict


class PrefillScaling(Strict):
    min_replicas: int = Field(default=0, ge=0, description="0: prefill may scale to zero (decode-only meanwhile)")
    max_replicas: int | None = Field(default=None, ge=1, description="None: the role's serving replicas")


class DecodeScaling(Strict):
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int | None = Field(default=None, ge=1, description="None: the role's serving replicas")


class AutoscalingConfig(Strict):
    """One KEDA ScaledObject per role over the metrics workspace (README: Autoscaling). Prefill may scale to zero
    (the router serves decode-only meanwhile); decode keeps at least one replica. Targets come from ``slo``."""

    enabled: bool | None = Field(
        default=None, description="None: on exactly when observability is (its workspace holds the signals)"
    )
    prefill: PrefillScaling = PrefillScaling()
    decode: DecodeScaling = DecodeScaling()
    polling_interval_s: int = Field(default=15, ge=5, le=300, description="how often KEDA queries the signals")
    prefill_ttft_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="share of slo.ttft_seconds a prompt may spend in the prefill backlog; the rest is its own "
        "prefill, the KV transfer and the first decode step",
    )
    decode_kv_usage: float = Field(default=0.8, gt=0, lt=1, description="KV cache usage per decode replica to hold")

    @model_validator(mode="after")
    def _decode_stays(self) -> AutoscalingConfig:
        if self.decode.min_replicas < 1:
            raise ValueError(
                "decode.min_replicas must be at least 1: every request needs a decode engine "
                "(prefill may scale to zero; the router then serves decode-only)"
            )
        return self
