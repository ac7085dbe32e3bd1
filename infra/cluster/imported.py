"""ImportedCluster: an existing EKS cluster (cluster.existing), imported by name with what pdstack needs to manage
objects on it, and the cluster software pdstack adds where the platform does not run it. It exposes what the
InferenceCluster construct exposes, so the GPU capacity, observability and workloads take either.

pdstack creates: its kubectl handler (a Lambda in the VPC's private subnets, in the cluster security group, so it
reaches the private endpoint) and, unless the file names a kubectl role the platform has mapped, an access entry
granting that handler's role cluster-admin; the deploy-time check of the cluster (infra/cluster/existing_check/),
which everything pdstack puts on the cluster waits for; the device plugins and LeaderWorkerSet where
``cluster.addons`` says pdstack installs them; the EFA security group of its GPU nodes. It creates no cluster, no
EKS managed add-on and no system node group.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct, IDependable

from infra.cluster.addons import ClusterAddons, ClusterAddonsProps
from infra.cluster.existing_check.check import ExistingClusterCheck
from infra.cluster.kubernetes_versions import KUBERNETES_PINS
from infra.cluster.outputs import add_cluster_outputs
from infra.config import Deployment
from infra.gpu_capacity.efa import EfaSecurityGroup


@dataclass(frozen=True)
class ImportedClusterProps:
    deployment: Deployment  # with cluster.existing (and so network.existing) set
    vpc: ec2.IVpc
    private_subnets: list[ec2.ISubnet]


class ImportedCluster(Construct):
    """Exposes ``cluster`` (an ``ICluster`` with pdstack's kubectl provider), ``kubectl_access`` (the access entry, or
    None with a platform kubectl role), ``check`` (the ExistingClusterCheck), ``prerequisites`` (what anything put on
    the cluster waits for: the check, and the access entry), ``addons`` (the charts pdstack installs here),
    ``system_nodes`` (None: the platform's), ``system_placement`` (the platform's system nodes, from
    ``cluster.existing.system_nodes``) and ``efa_security_group``."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ImportedClusterProps) -> None:
        super().__init__(scope, construct_id)
        deployment = props.deployment
        config = deployment.cluster
        existing = config.existing
        assert existing is not None

        pins = KUBERNETES_PINS[config.kubernetes_version]
        kubectl_layer = getattr(importlib.import_module(pins.kubectl_layer_module), pins.kubectl_layer_class)
        cluster_security_group = ec2.SecurityGroup.from_security_group_id(
            self, "ClusterSecurityGroup", existing.security_group_id, mutable=False
        )
        kubectl_role = (
            iam.Role.from_role_arn(self, "KubectlRole", existing.kubectl_role_arn, mutable=False)
            if existing.kubectl_role_arn is not None
            else None
        )

        # aws-cdk-lib 2.275.0's imported cluster takes a ready provider (kubectl_provider) and ignores
        # kubectl_provider_options (aws-eks-v2/lib/cluster.js, ImportedCluster), and the provider needs a cluster:
        # a first import without one builds it, the cluster everything else uses carries it.
        def imported(construct_id: str, provider: eks.IKubectlProvider | None) -> eks.ICluster:
            return eks.Cluster.from_cluster_attributes(
                self,
                construct_id,
                cluster_name=config.name,
                vpc=props.vpc,
                cluster_security_group_id=existing.security_group_id,
                kubectl_provider=provider,
            )

        self.kubectl_provider = eks.KubectlProvider(
            self,
            "KubectlProvider",
            cluster=imported("ClusterForKubectl", None),
            kubectl_layer=kubectl_layer(self, "KubectlLayer"),
            private_subnets=props.private_subnets,
            # The cluster security group admits all traffic from its members: the handler reaches the endpoint.
            security_groups=[cluster_security_group],
            role=kubectl_role,
        )
        self.cluster: eks.ICluster = imported("Cluster", self.kubectl_provider)
        self.check = ExistingClusterCheck(self, "ExistingClusterCheck", deployment=deployment)
        self.system_placement = deployment.system_placement
        self.prerequisites: list[IDependable] = [self.check.resource]
        self.kubectl_access: eks.AccessEntry | None = None
        if kubectl_role is None:
            provider = self.kubectl_provider
            assert provider.role is not None
            self.kubectl_access = eks.AccessEntry(
                self,
                "KubectlAccess",
                cluster=self.cluster,
                principal=provider.role.role_arn,
                access_policies=[
                    eks.AccessPolicy.from_access_policy_name(
                        "AmazonEKSClusterAdminPolicy", access_scope_type=eks.AccessScopeType.CLUSTER
                    )
                ],
            )
            # Only on a cluster that takes access entries (the check reads its authentication mode first).
            self.kubectl_access.node.add_dependency(self.check.resource)
            self.prerequisites.append(self.kubectl_access)

        self.addons = ClusterAddons(
            self,
            "Addons",
            props=ClusterAddonsProps(
                cluster=self.cluster,
                gpu_taints=[taint for pool in deployment.gpu_pools for taint in pool.taints],
                kubernetes_version=config.kubernetes_version,
                managed_addons=False,
                sources=config.addons,
                system_placement=deployment.system_placement,
            ),
        )
        for chart in self.addons.charts:
            chart.node.add_dependency(*self.prerequisites)
        self.system_nodes: Construct | None = None

        # Shared by the GPU node groups (their own stack) and the HyperPod instances.
        self.efa_security_group = EfaSecurityGroup(self, "EfaSecurityGroup", vpc=props.vpc)

        add_cluster_outputs(self, self.cluster, self.efa_security_group)
