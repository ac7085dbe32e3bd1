"""GPU capacity on SageMaker HyperPod (EKS orchestrator): the cluster and its instance groups."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, field_validator, model_validator

from infra.config.common import NAME, Strict, check_unique
from infra.config.gpu_capacity import GPU_TAINT, Taint
from runtime.catalog_checks import hyperpod_instance_type, label_keys

DeepHealthCheck = Literal["InstanceStress", "InstanceConnectivity"]


class HyperPodInstanceGroup(Strict):
    """One SageMaker HyperPod instance group of GPU nodes (the ``ml.*`` type comes from the catalog)."""

    name: str = Field(pattern=NAME)
    instance_type: str
    count: int = Field(ge=1, le=256)
    threads_per_core: Literal[1, 2] = 1
    ebs_volume_gib: int = Field(default=500, ge=1, le=16384)
    deep_health_checks: list[DeepHealthCheck] = Field(default_factory=lambda: list(get_args(DeepHealthCheck)))
    training_plan_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:training-plan/[a-zA-Z0-9-]+$"
    )
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=lambda: [GPU_TAINT])

    @field_validator("instance_type")
    @classmethod
    def _offered(cls, value: str) -> str:
        return hyperpod_instance_type(value)

    @field_validator("labels")
    @classmethod
    def _label_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return label_keys(value)


class HyperPodConfig(Strict):
    """A SageMaker HyperPod cluster (EKS orchestrator) as the home of the GPU nodes."""

    # At most 22 characters: the lifecycle bucket is sagemaker-<cluster_name>-<account>-<region> (63 at most).
    cluster_name: str = Field(default="pdstack-hyperpod", pattern=NAME, max_length=22)
    node_recovery: Literal["Automatic", "None"] = "Automatic"
    instance_groups: list[HyperPodInstanceGroup] = Field(min_length=1)
    node_autoscaling: bool = Field(
        default=False,
        description="HyperPod's managed Karpenter: groups start empty and follow pending pods up to their count",
    )

    @model_validator(mode="after")
    def _unique(self) -> HyperPodConfig:
        check_unique("instance_groups", [g.name for g in self.instance_groups])
        if self.node_autoscaling:
            for index, group in enumerate(self.instance_groups):
                # HyperPod's Karpenter autoscaling supports neither (SageMaker developer guide, "Create a NodeClass")
                if group.deep_health_checks:
                    raise ValueError(
                        f"node_autoscaling needs instance_groups.{index}.deep_health_checks: [] (HyperPod autoscaling "
                        "does not support deep health checks: they hold new nodes for 60-90 minutes)"
                    )
                if group.training_plan_arn is not None:
                    raise ValueError(
                        f"node_autoscaling supports on-demand capacity only; instance_groups.{index} "
                        "has a training_plan_arn"
                    )
        return self
