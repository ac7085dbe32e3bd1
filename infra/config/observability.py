"""What the platform promises (service-level objectives) and the metrics pipeline that watches it."""

from __future__ import annotations

from pydantic import Field, field_validator

from infra.config.common import Strict
from runtime.router.contract import LATENCY_BUCKETS


class ServiceLevelObjectives(Strict):
    """What the platform promises its users. The autoscaling targets and the SLO alerts are both derived from it."""

    ttft_seconds: float = Field(default=2.0, gt=0, description="time to first token a request should meet")
    itl_seconds: float = Field(default=0.1, gt=0, description="inter-token latency a request should meet")
    objective: float = Field(default=0.99, gt=0, lt=1, description="share of requests meeting both, over 30 days")

    @field_validator("ttft_seconds")
    @classmethod
    def _a_ttft_bucket(cls, value: float) -> float:
        # The burn-rate alert counts requests under the objective from the router's TTFT histogram: it must be a bound.
        if value not in LATENCY_BUCKETS:
            raise ValueError(
                f"must be a bucket bound of the router's TTFT histogram: {', '.join(map(str, LATENCY_BUCKETS))}"
            )
        return value


class ObservabilityConfig(Strict):
    """The metrics pipeline: an Amazon Managed Service for Prometheus workspace, the AWS managed collector scraping
    the router and every engine pod, and pdstack's alert rules loaded into the workspace."""

    enabled: bool = True
    # The managed collector accepts no scrape interval below 30 s (Amazon Managed Service for Prometheus user guide,
    # "Scraper configuration", limitations).
    scrape_interval_seconds: int = Field(default=30, ge=30, le=300)
    retention_days: int = Field(default=150, ge=1, le=1095, description="how long the workspace keeps samples")
    # The workspace's samples at rest: false, an AWS owned key (no cost, nothing to manage, no audit of its use);
    # true, a customer managed KMS key of the stack's (audit and revoke it yourself, KMS charges). Earlier editions of
    # the Amazon Managed Service for Prometheus user guide said an AWS managed collector cannot write to a workspace
    # under a customer managed key; the current "Encryption at rest" page no longer says so, unverified here: turn it on
    # only after checking that the collector writes (`python -m infra status` shows the scraper and the samples). The
    # choice is fixed at creation: a workspace cannot move between the two ("Encryption at rest": "can't be converted").
    customer_managed_key: bool = False
    fallback_ratio_threshold: float = Field(
        default=0.05, gt=0, lt=1, description="alert when this share of requests falls back decode-only"
    )
    kv_usage_threshold: float = Field(
        default=0.95, gt=0, le=1, description="alert when an engine's KV cache is this full"
    )
