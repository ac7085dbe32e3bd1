#!/usr/bin/env python3
"""A team's own CDK app built from pdstack's constructs (pip install pdstack; nothing else from pdstack's repository).

The team's platform stack holds the network, the EKS cluster, its GPU node groups and the metrics pipeline; its
serving stack the image and one serving unit per model (two, in deployment.yaml). cdk-nag runs over all of it.
`cdk synth` here (cdk.json runs this file) synthesizes offline into cdk.out, with no AWS credentials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
from constructs import Construct

from pdstack import (
    ClusterProps,
    Deployment,
    GpuCapacityProps,
    GpuNodeGroupCapacity,
    ImageProps,
    InferenceCluster,
    Network,
    NetworkProps,
    Observability,
    ObservabilityProps,
    ServingImage,
    ServingWorkloads,
    ServingWorkloadsProps,
    hugepages_2mi_pages_per_node,
    load_deployment,
    register_checks,
)

SETTINGS = Path(__file__).resolve().with_name("deployment.yaml")


class InferencePlatform(cdk.Stack):
    """The team's platform: network, cluster, GPU capacity and metrics, in one stack."""

    def __init__(self, scope: Construct, construct_id: str, *, deployment: Deployment, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.network = Network(self, "Network", props=NetworkProps(config=deployment.network, metrics_collector=True))
        self.inference_cluster = InferenceCluster(
            self,
            "Cluster",
            props=ClusterProps(
                config=deployment.cluster,
                vpc=self.network.vpc,
                private_subnets=self.network.private_subnets,
                gpu_taints=[taint for pool in deployment.gpu_pools for taint in pool.taints],
            ),
        )
        cluster = self.inference_cluster.cluster
        GpuNodeGroupCapacity(
            self,
            "GpuNodes",
            props=GpuCapacityProps(
                cluster=cluster,
                groups=deployment.gpu_node_groups,
                gpu_subnet=self.network.gpu_subnet,
                efa_security_group=self.inference_cluster.efa_security_group,
                prerequisites=self.inference_cluster.prerequisites,
                hugepages_2mi_pages={
                    g.instance_type: hugepages_2mi_pages_per_node(deployment, g.instance_type)
                    for g in deployment.gpu_node_groups
                },
                kubernetes_version=deployment.cluster.kubernetes_version,
                gpu_az_id=deployment.network.gpu_az_id,
            ),
        )
        self.observability = Observability(
            self,
            "Metrics",
            props=ObservabilityProps(
                deployment=deployment,
                cluster=cluster,
                vpc=self.network.vpc,
                collector_subnets=self.network.collector_subnets,
                prerequisites=self.inference_cluster.prerequisites,
            ),
        )


class ModelServing(cdk.Stack):
    """The team's models: pdstack's serving image (vLLM + pdstack's runtime, built in the account), KEDA, and one
    serving unit per model of the settings, each in its own namespace."""

    def __init__(
        self, scope: Construct, construct_id: str, *, deployment: Deployment, platform: InferencePlatform, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.image = ServingImage(
            self, "Image", props=ImageProps(config=deployment.image, deployment_name=deployment.name)
        )
        cluster = platform.inference_cluster.cluster
        # every model of the settings, each a serving unit in its own namespace, and KEDA once for them
        self.workloads = ServingWorkloads(
            self,
            "Workloads",
            props=ServingWorkloadsProps(
                deployment=deployment,
                cluster=cluster,
                image_uri=self.image.image_uri,
                # the cluster's, and the charts it installs: LeaderWorkerSet's CRD among them
                prerequisites=[*platform.inference_cluster.prerequisites, *platform.inference_cluster.addons.charts],
                metrics_collector_cidrs=platform.network.collector_cidrs,
                metrics_workspace=platform.observability.workspace,
            ),
        )
        self.units = self.workloads.units


def main() -> None:
    app = cdk.App()
    deployment = load_deployment(SETTINGS)
    platform = InferencePlatform(app, "TeamInferencePlatform", deployment=deployment)
    ModelServing(app, "TeamModels", deployment=deployment, platform=platform)
    register_checks(app)
    app.synth()


if __name__ == "__main__":
    main()
