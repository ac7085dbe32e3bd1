"""Where the constructs that take only a cluster (the GPU capacity's Cluster Autoscaler, KEDA) put their pods: the
system nodes of the cluster construct that built it, unless told; pdstack's system pool is refused on an existing
cluster, whose system nodes are the platform's (such pods would never schedule)."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_eks_v2 as eks
from aws_cdk.assertions import Template

from infra.cluster.imported import ImportedCluster, ImportedClusterProps
from infra.config import Deployment, load_deployment
from infra.network.imported import ImportedNetwork, ImportedNetworkProps
from infra.observability.stack import MetricsWorkspace
from infra.workload_names import SYSTEM_PLACEMENT
from infra.workloads.autoscaling import Autoscaling, AutoscalingProps
from tests.support.synthesis import DEPLOYMENTS


def existing() -> tuple[cdk.Stack, ImportedCluster, Deployment]:
    deployment = load_deployment(DEPLOYMENTS / "existing-cluster.yaml")
    assert deployment.network.existing is not None
    stack = cdk.Stack(cdk.App(), "Platform")
    network = ImportedNetwork(
        stack,
        "Network",
        props=ImportedNetworkProps(existing=deployment.network.existing, cidr=deployment.network.cidr),
    )
    cluster = ImportedCluster(
        stack,
        "Cluster",
        props=ImportedClusterProps(deployment=deployment, vpc=network.vpc, private_subnets=network.private_subnets),
    )
    return stack, cluster, deployment


def keda(stack: cdk.Stack, cluster: eks.ICluster, placement: dict | None) -> Autoscaling:
    workspace = MetricsWorkspace(stack, "Metrics", alias="m", retention_days=30, rules="", customer_managed_key=False)
    props = AutoscalingProps(cluster=cluster, workspace=workspace, prerequisites=[], system_placement=placement)
    return Autoscaling(stack, "Keda", props=props)


def test_keda_on_an_existing_cluster_runs_on_the_platforms_system_nodes_unless_told() -> None:
    stack, cluster, deployment = existing()
    assert deployment.system_placement != SYSTEM_PLACEMENT
    assert cluster.system_placement == deployment.system_placement
    keda(stack, cluster.cluster, None)
    charts = Template.from_stack(stack).find_resources("Custom::AWSCDK-EKS-HelmChart")
    (values,) = [json.loads(c["Properties"]["Values"]) for c in charts.values() if c["Properties"]["Chart"] == "keda"]
    assert values == deployment.system_placement


def test_pdstacks_system_pool_on_an_existing_cluster_is_refused() -> None:
    stack, cluster, _ = existing()
    with pytest.raises(ValueError, match=r"AutoscalingProps\.system_placement: .*pdstack's system pool"):
        keda(stack, cluster.cluster, dict(SYSTEM_PLACEMENT))


def test_a_cluster_no_pdstack_construct_built_needs_the_placement() -> None:
    stack, _, _ = existing()
    foreign = eks.Cluster.from_cluster_attributes(stack, "Foreign", cluster_name="other")
    with pytest.raises(ValueError, match=r"AutoscalingProps\.system_placement: .*neither InferenceCluster nor"):
        keda(stack, foreign, None)
