"""DeploymentStacks: every stack of one deployment, wired together through construct attributes."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from infra.cluster import ClusterProps, ClusterStack
from infra.config import Deployment
from infra.hyperpod import HyperPodProps, HyperPodStack
from infra.image import ImageProps, ImageStack
from infra.network import NetworkProps, NetworkStack
from infra.workloads import WorkloadsProps, WorkloadsStack


class DeploymentStacks:
    """Builds ``network``, ``image``, ``cluster``, (with HyperPod) ``hyperpod`` and ``workloads``, named ``<name>-<part>``."""

    def __init__(self, scope: Construct, deployment: Deployment) -> None:
        env = None if deployment.environment_agnostic else cdk.Environment(
            account=deployment.account, region=deployment.region
        )
        prefix = deployment.name
        self.network = NetworkStack(
            scope, f"{prefix}-network", env=env, props=NetworkProps(config=deployment.network),
            description="pdstack: VPC, private subnets, GPU subnet, endpoints, flow logs",
        )
        self.image = ImageStack(
            scope, f"{prefix}-image", env=env, props=ImageProps(config=deployment.image),
            description="pdstack: ECR repository and in-account build of the serving image",
        )
        self.cluster = ClusterStack(
            scope,
            f"{prefix}-cluster",
            env=env,
            description="pdstack: EKS cluster, add-ons, EFA GPU node groups",
            props=ClusterProps(
                config=deployment.cluster,
                gpu_node_groups=deployment.gpu_node_groups,
                vpc=self.network.vpc,
                private_subnets=self.network.private_subnets,
                gpu_subnet=self.network.gpu_subnet,
                pod_hugepages_2mi=deployment.workloads.hugepages_2mi,
            ),
        )
        self.hyperpod: HyperPodStack | None = None
        if deployment.hyperpod is not None:
            self.hyperpod = HyperPodStack(
                scope,
                f"{prefix}-hyperpod",
                env=env,
                description="pdstack: SageMaker HyperPod cluster (EKS orchestrator) with the GPU nodes",
                props=HyperPodProps(
                    config=deployment.hyperpod,
                    cluster=self.cluster.cluster,
                    gpu_subnet=self.network.gpu_subnet,
                    efa_security_group=self.cluster.efa_security_group,
                    repository=self.image.repository,
                ),
            )
        self.workloads = WorkloadsStack(
            scope,
            f"{prefix}-workloads",
            env=env,
            description="pdstack: prefill, decode and router workloads on the cluster",
            props=WorkloadsProps(
                deployment=deployment,
                cluster=self.cluster.cluster,
                image_uri=self.image.image_uri,
                leader_worker_set=self.cluster.addons.leader_worker_set,
            ),
        )
        if self.hyperpod is not None:
            self.workloads.add_stack_dependency(self.hyperpod)
        self.all: tuple[cdk.Stack, ...] = tuple(
            s for s in (self.network, self.image, self.cluster, self.hyperpod, self.workloads) if s is not None
        )
        for stack in self.all:
            cdk.Tags.of(stack).add("pdstack:deployment", deployment.name)
