"""DeploymentStacks: every stack of one deployment, wired together through construct attributes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import aws_cdk as cdk
from constructs import Construct

from infra.cluster.stack import ClusterProps, ClusterStack
from infra.config import Deployment
from infra.gpu_capacity.node_capacity import hugepages_2mi_pages_per_node
from infra.gpu_capacity.stack import GpuCapacityProps, GpuCapacityStack
from infra.hyperpod.stack import HyperPodProps, HyperPodStack
from infra.image.stack import ImageProps, ImageStack
from infra.network.stack import NetworkProps, NetworkStack
from infra.observability.stack import ObservabilityProps, ObservabilityStack
from infra.stack_outputs import stack_name
from infra.workloads.stack import WorkloadsProps, WorkloadsStack

StackT = TypeVar("StackT", bound=cdk.Stack)


class DeploymentStacks:
    """Builds ``network``, ``image``, ``cluster``, the GPU nodes (``gpu_nodes`` for EKS node groups, or ``hyperpod``),
    ``workloads`` and (unless switched off) ``observability``, named ``<name>-<part>``."""

    def __init__(self, scope: Construct, deployment: Deployment) -> None:
        env = (
            None
            if deployment.environment_agnostic
            else cdk.Environment(account=deployment.account, region=deployment.region)
        )

        def part(stack_class: Callable[..., StackT], name: str, description: str, props: object) -> StackT:
            return stack_class(
                scope, stack_name(deployment.name, name), env=env, props=props, description=f"pdstack: {description}"
            )

        self.network = part(
            NetworkStack,
            "network",
            "VPC, private subnets, GPU subnet, collector subnets, endpoints, flow logs",
            NetworkProps(config=deployment.network, metrics_collector=deployment.observability.enabled),
        )
        self.image = part(
            ImageStack,
            "image",
            "ECR repository and in-account build of the serving image",
            ImageProps(config=deployment.image, deployment_name=deployment.name),
        )
        self.cluster = part(
            ClusterStack,
            "cluster",
            "EKS cluster, add-ons, system nodes, EFA security group",
            ClusterProps(
                config=deployment.cluster,
                vpc=self.network.vpc,
                private_subnets=self.network.private_subnets,
                gpu_taints=[taint for pool in deployment.gpu_pools for taint in pool.taints],
            ),
        )
        # GPU capacity in its own stack: an InsufficientInstanceCapacity rolls back the node groups, not the cluster.
        self.gpu_nodes: GpuCapacityStack | None = None
        if deployment.gpu_provider == "eks-nodegroups":
            self.gpu_nodes = part(
                GpuCapacityStack,
                "gpu-nodes",
                "EFA GPU node groups (EKS managed node groups)",
                GpuCapacityProps(
                    cluster=self.cluster.cluster,
                    groups=deployment.gpu_node_groups,
                    gpu_subnet=self.network.gpu_subnet,
                    efa_security_group=self.cluster.efa_security_group,
                    vpc_cni=self.cluster.addons.managed["vpc-cni"],
                    hugepages_2mi_pages={
                        g.instance_type: hugepages_2mi_pages_per_node(deployment, g.instance_type)
                        for g in deployment.gpu_node_groups
                    },
                    system_nodes=self.cluster.system_nodes,
                    kubernetes_version=deployment.cluster.kubernetes_version,
                    gpu_az_id=deployment.network.gpu_az_id,
                ),
            )
        self.hyperpod: HyperPodStack | None = None
        if deployment.hyperpod is not None:
            self.hyperpod = part(
                HyperPodStack,
                "hyperpod",
                "SageMaker HyperPod cluster (EKS orchestrator) with the GPU nodes",
                HyperPodProps(
                    config=deployment.hyperpod,
                    cluster=self.cluster.cluster,
                    gpu_subnet=self.network.gpu_subnet,
                    efa_security_group=self.cluster.efa_security_group,
                    hugepages_2mi_pages=max(
                        hugepages_2mi_pages_per_node(deployment, g.instance_type)
                        for g in deployment.hyperpod.instance_groups
                    ),
                    gpu_az_id=deployment.network.gpu_az_id,
                ),
            )
        # Before the workloads: KEDA's ScaledObjects query its workspace (autoscaling follows observability.enabled).
        self.observability: ObservabilityStack | None = None
        if deployment.observability.enabled:
            self.observability = part(
                ObservabilityStack,
                "observability",
                "Amazon Managed Service for Prometheus workspace, managed collector, alert rules",
                ObservabilityProps(
                    deployment=deployment,
                    cluster=self.cluster.cluster,
                    vpc=self.network.vpc,
                    collector_subnets=self.network.collector_subnets,
                ),
            )
        self.workloads = part(
            WorkloadsStack,
            "workloads",
            "prefill, decode and router workloads on the cluster",
            WorkloadsProps(
                deployment=deployment,
                cluster=self.cluster.cluster,
                image_uri=self.image.image_uri,
                leader_worker_set=self.cluster.addons.leader_worker_set,
                metrics_collector_cidrs=self.network.collector_cidrs,
                metrics_workspace=self.observability.workspace if self.observability else None,
            ),
        )
        for gpu_stack in (self.gpu_nodes, self.hyperpod):
            if gpu_stack is not None:
                self.workloads.add_stack_dependency(gpu_stack)
        self.all: tuple[cdk.Stack, ...] = tuple(
            s
            for s in (
                self.network,
                self.image,
                self.cluster,
                self.gpu_nodes,
                self.hyperpod,
                self.observability,
                self.workloads,
            )
            if s is not None
        )
        for stack in self.all:
            cdk.Tags.of(stack).add("pdstack:deployment", deployment.name)
            # CDK's own Lambda log groups (kubectl provider, custom resources, bucket deployment) default to RETAIN:
            # every destroy left them behind. Logs go with their stack (README: Lifecycle).
            cdk.RemovalPolicies.of(stack).destroy(apply_to_resource_types=["AWS::Logs::LogGroup"])
