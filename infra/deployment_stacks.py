"""DeploymentStacks: every stack of one deployment, wired together through construct attributes."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from infra.cluster import ClusterProps, ClusterStack
from infra.config import Deployment
from infra.image import ImageProps, ImageStack
from infra.network import NetworkProps, NetworkStack


class DeploymentStacks:
    """Builds ``network``, ``image`` and ``cluster`` stacks named ``<deployment name>-<part>``."""

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
            ),
        )
        self.all: tuple[cdk.Stack, ...] = (self.network, self.image, self.cluster)
        for stack in self.all:
            cdk.Tags.of(stack).add("pdstack:deployment", deployment.name)
