"""ExistingClusterCheck: a deploy-time custom resource that fails the deploy, before pdstack creates anything on an
existing cluster, when the cluster is not what the deployment file declared or lacks what pdstack relies on.

The file's facts are checked offline when it is loaded (infra/config/cluster.py); this reads them back from the
account: eks:DescribeCluster (status, Kubernetes version, authentication mode, VPC, cluster security group, private
endpoint access), eks:ListAddons (the Pod Identity agent, vpc-cni), eks:DescribeAddon on vpc-cni (its version
against the efa-only floor, and NetworkPolicy enforcement, which the serving namespace's policies rely on) and
ec2:DescribeSubnets (every declared private, GPU and collector subnet exists, lies in network.existing.vpc_id and has
the declared CIDR block). On the first deploy, eks:ListPodIdentityAssociations says whether another deployment
holds a serving namespace already (one pdstack deployment per cluster). Each
problem names the deployment-file field to fix. One small Lambda with inline code
(handler.py, infra/deploy_check.py), read-only calls: the EKS ones on this one cluster only.
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.config import Deployment
from infra.config.cluster import VPC_CNI_FOR_EFA_ONLY, VPC_CNI_FOR_HYPERPOD
from infra.config.network import ExistingNetwork
from infra.deploy_check import DeployCheck

HANDLER_SOURCE = Path(__file__).with_name("handler.py")
RESOURCE_TYPE = "Custom::ExistingClusterCheck"


def check_properties(deployment: Deployment) -> dict[str, object]:
    """What the cluster must show, as the custom resource's properties (the handler reads these names)."""
    existing, network = deployment.cluster.existing, deployment.network.existing
    assert existing is not None and network is not None
    hyperpod = deployment.gpu_provider == "hyperpod"
    # An access entry for pdstack's kubectl handler, the managed collector's, or HyperPod's node registration, need
    # the API modes.
    modes = ["API", "API_AND_CONFIG_MAP"]
    if existing.kubectl_role_arn is not None and not hyperpod and not deployment.observability.enabled:
        modes.append("CONFIG_MAP")
    floor = VPC_CNI_FOR_HYPERPOD if hyperpod else VPC_CNI_FOR_EFA_ONLY
    return {
        "ClusterName": deployment.cluster.name,
        "KubernetesVersion": deployment.cluster.kubernetes_version,
        "AuthenticationModes": modes,
        "VpcId": network.vpc_id,
        "SecurityGroupId": existing.security_group_id,
        "VpcCniMinimum": ".".join(map(str, floor)),
        "VpcCniVersion": existing.vpc_cni_version,
        "Subnets": declared_subnets(network),
        "Claimed": claimed(deployment),
    }


def claimed(deployment: Deployment) -> list[list[str]]:
    """What pdstack takes on the cluster that another deployment would take too, checked on the first deploy only:
    [namespace, service account (empty: any), what]: each serving namespace (its Pod Identity associations).

    Not the Cluster Autoscaler's kube-system/cluster-autoscaler account, though a second autoscaler collides there
    too: in a team's app its association may not follow this check yet (review finding 1), so the check could see
    the deployment's own association on the first deploy. A serving unit's associations do follow it in both shipped
    apps (their stack deploys after the cluster's)."""
    return [[deployment.for_unit(unit).workloads.namespace, "", "the serving namespace"] for unit in deployment.units]


def declared_subnets(network: ExistingNetwork) -> dict[str, list[str]]:
    """Every subnet the file names, by id: [the field that names it, its declared CIDR block]."""
    subnets: dict[str, list[str]] = {}
    for field, listed in (
        ("private_subnets", network.private_subnets),
        ("collector_subnets", network.collector_subnets),
    ):
        for index, subnet in enumerate(listed):
            label = f"network.existing.{field}[{index}]"
            if subnet.id == network.gpu_subnet_id:
                label += " (gpu_subnet_id)"
            subnets[subnet.id] = [label, subnet.cidr]
    return subnets


class ExistingClusterCheck(DeployCheck):
    """Exposes ``resource`` (make everything pdstack creates on the cluster depend on it) and ``function``."""

    def __init__(self, scope: Construct, construct_id: str, *, deployment: Deployment) -> None:
        stack = cdk.Stack.of(scope)
        name = deployment.cluster.name
        cluster_arn = stack.format_arn(service="eks", resource="cluster", resource_name=name)
        # EKS's add-on ARN: arn:...:addon/<cluster>/<add-on>/<uuid> (Service Authorization Reference, Amazon EKS).
        addon_arn = stack.format_arn(service="eks", resource="addon", resource_name=f"{name}/vpc-cni/*")
        super().__init__(
            scope,
            construct_id,
            handler_source=HANDLER_SOURCE,
            description="pdstack: fails the deploy when the existing EKS cluster lacks what pdstack needs",
            resource_type=RESOURCE_TYPE,
            properties=check_properties(deployment),
            statements=[
                iam.PolicyStatement(
                    actions=["eks:DescribeCluster", "eks:ListAddons", "eks:ListPodIdentityAssociations"],
                    resources=[cluster_arn],
                ),
                iam.PolicyStatement(actions=["eks:DescribeAddon"], resources=[addon_arn]),
                # EC2 Describe* actions support no resource-level permissions (Service Authorization Reference).
                iam.PolicyStatement(actions=["ec2:DescribeSubnets"], resources=["*"]),
            ],
        )
