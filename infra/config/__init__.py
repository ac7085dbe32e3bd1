"""The deployment file (deployments/<name>.yaml), typed: one strict pydantic model that drives every stack.

This package's public surface is what this module exports: ``load_deployment``/``parse_deployment``, the
``Deployment`` they return, ``DeploymentError``, and the section models the stacks and tests name. Each section's
schema lives in its own module (cluster, network, gpu_capacity, hyperpod, workloads, observability, autoscaling,
image, serving_units); ``deployment`` holds the checks that span sections and ``loading`` turns YAML into a
Deployment.

Bad input never reaches CDK: ``load_deployment`` raises ``DeploymentError`` whose message names the field, the value
and what would be valid. The ``serving`` section's schema belongs to ``runtime.config``; it is validated here too,
and cross-checked against the GPU node groups.
"""

from __future__ import annotations

from infra.config.autoscaling import AutoscalingConfig
from infra.config.cluster import ClusterConfig
from infra.config.deployment import Deployment
from infra.config.gpu_capacity import CapacityBlock, CapacityReservation, GpuNodeGroupConfig, OnDemand, Taint
from infra.config.hyperpod import HyperPodConfig, HyperPodInstanceGroup
from infra.config.image import ImageConfig, PullThroughCache
from infra.config.loading import DeploymentError, load_deployment, parse_deployment
from infra.config.network import NetworkConfig
from infra.config.observability import ObservabilityConfig, ServiceLevelObjectives
from infra.config.serving_units import ModelConfig, ServingUnit
from infra.config.workloads import RouterWorkload, WorkloadsConfig

__all__ = [
    "AutoscalingConfig",
    "CapacityBlock",
    "CapacityReservation",
    "ClusterConfig",
    "Deployment",
    "DeploymentError",
    "GpuNodeGroupConfig",
    "HyperPodConfig",
    "HyperPodInstanceGroup",
    "ImageConfig",
    "ModelConfig",
    "NetworkConfig",
    "ObservabilityConfig",
    "OnDemand",
    "PullThroughCache",
    "RouterWorkload",
    "ServiceLevelObjectives",
    "ServingUnit",
    "Taint",
    "WorkloadsConfig",
    "load_deployment",
    "parse_deployment",
]
