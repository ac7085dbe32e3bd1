#!/usr/bin/env python3
"""A team's own CDK app that puts pdstack onto the VPC and EKS cluster its platform already runs (pip install
pdstack; nothing else from pdstack's repository).

The platform stack imports the VPC and the cluster by the ids in deployment.yaml (no lookup: `cdk synth` here is
offline) and adds what pdstack needs there: its kubectl access, the check of the cluster, the device plugins and
LeaderWorkerSet, the GPU node groups in the GPU subnet, the metrics pipeline. The serving stack holds the image and one
serving unit per model (two). cdk-nag runs over all of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
from constructs import Construct

from pdstack import (
    Deployment,
    GpuCapacityProps,
    GpuNodeGroupCapacity,
    ImageProps,
    ImportedCluster,
    ImportedClusterProps,
    ImportedNetwork,
    ImportedNetworkProps,
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
    """The existing VPC and cluster, and what pdstack adds to them, in one stack."""

    def __init__(self, scope: Construct, construct_id: str, *, deployment: Deployment, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        assert deployment.network.existing is not None
        self.network = ImportedNetwork(
            self,
            "Network",
            props=ImportedNetworkProps(existing=deployment.network.existing, cidr=deployment.network.cidr),
        )
        self.inference_cluster = ImportedCluster(
            self,
            "Cluster",
            props=ImportedClusterProps(
                deployment=deployment, vpc=self.network.vpc, private_subnets=self.network.private_subnets
            ),
        )
        cluster = self.inference_cluster.cluster
        # the cluster check and pdstack's kubectl access entry: everything put on the cluster waits for them
        prerequisites = self.inference_cluster.prerequisites
        GpuNodeGroupCapacity(
            self,
            "GpuNodes",
            props=GpuCapacityProps(
                cluster=cluster,
                groups=deployment.gpu_node_groups,
                gpu_subnet=self.network.gpu_subnet,
                efa_security_group=self.inference_cluster.efa_security_group,
                prerequisites=prerequisites,
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
                prerequisites=prerequisites,
            ),
        )


class ModelServing(cdk.Stack):
    """The team's models: pdstack's serving image, KEDA, and one serving unit per model, each in its namespace."""

    def __init__(
        self, scope: Construct, construct_id: str, *, deployment: Deployment, platform: InferencePlatform, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.add_stack_dependency(platform)  # the imported cluster's names order nothing by themselves
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
