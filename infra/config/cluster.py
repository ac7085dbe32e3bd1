"""The EKS cluster: its Kubernetes version, API endpoint access and admins, and the system node group."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from infra.cluster.kubernetes_versions import DEFAULT_KUBERNETES_VERSION, SUPPORTED_KUBERNETES_VERSIONS
from infra.config.common import NAME, Strict, check_cidrs

_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")


class ClusterConfig(Strict):
    name: str = Field(default="pdstack", pattern=NAME)
    # infra/cluster/kubernetes_versions.py: every version there has its kubectl layer, add-ons and autoscaler pinned.
    # SageMaker
    # HyperPod's EKS orchestrator accepts 1.30-1.35.
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
    endpoint_access: Literal["private", "public", "public-and-private"] = "private"
    public_access_cidrs: list[str] = Field(default_factory=list)
    admin_principal_arns: list[str] = Field(default_factory=list)
    system_instance_type: str = "m7i.xlarge"
    system_node_count: int = Field(default=2, ge=1, le=10)

    @field_validator("kubernetes_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        if value not in SUPPORTED_KUBERNETES_VERSIONS:
            raise ValueError(f"must be one of {', '.join(SUPPORTED_KUBERNETES_VERSIONS)}")
        return value

    @field_validator("public_access_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return check_cidrs(value, "203.0.113.0/24", "opens the API server to the whole internet")

    @field_validator("admin_principal_arns")
    @classmethod
    def _arns(cls, value: list[str]) -> list[str]:
        for arn in value:
            if not _ARN.match(arn):
                raise ValueError(f"{arn!r} is not an IAM role or user ARN (arn:aws:iam::123456789012:role/NAME)")
        return value

    @model_validator(mode="after")
    def _public_needs_cidrs(self) -> ClusterConfig:
        if self.endpoint_access != "private" and not self.public_access_cidrs:
            raise ValueError(
                f"endpoint_access={self.endpoint_access!r} needs public_access_cidrs (the networks allowed to reach "
                "the API server); use endpoint_access: private to keep the endpoint inside the VPC"
            )
        if self.endpoint_access == "private" and self.public_access_cidrs:
            raise ValueError("public_access_cidrs is set but endpoint_access is 'private'; the CIDRs would be ignored")
        return self
