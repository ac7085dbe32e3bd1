"""ClusterStack: the EKS cluster (managed node groups, not Auto Mode), its add-ons and the EFA GPU node groups."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_kms as kms
from aws_cdk.lambda_layer_kubectl_v34 import KubectlV34Layer
from constructs import Construct

from infra.addons import SYSTEM_NODE_LABELS, ClusterAddons, ClusterAddonsProps
from infra.config import ClusterConfig, GpuNodeGroupConfig
from infra.efa import EfaSecurityGroup
from infra.gpu_nodes import GpuNodeGroup, GpuNodeGroupProps
from infra.node_autoscaler import NodeAutoscaler, NodeAutoscalerProps

KUBERNETES_VERSIONS = {"1.34": eks.KubernetesVersion.V1_34}
ENDPOINT_ACCESS = {
    "private": eks.EndpointAccess.PRIVATE,
    "public": eks.EndpointAccess.PUBLIC,
    "public-and-private": eks.EndpointAccess.PUBLIC_AND_PRIVATE,
}
CONTROL_PLANE_LOGS = [
    eks.ClusterLoggingTypes.API,
    eks.ClusterLoggingTypes.AUDIT,
    eks.ClusterLoggingTypes.AUTHENTICATOR,
    eks.ClusterLoggingTypes.CONTROLLER_MANAGER,
    eks.ClusterLoggingTypes.SCHEDULER,
]


@dataclass(frozen=True)
class ClusterProps:
    config: ClusterConfig
    gpu_node_groups: list[GpuNodeGroupConfig]
    vpc: ec2.IVpc
    private_subnets: list[ec2.ISubnet]
    gpu_subnet: ec2.ISubnet
    pod_hugepages_2mi: str = "5120Mi"  # what a worker pod requests (workloads.hugepages_2mi)


class ClusterStack(cdk.Stack):
    """Exposes ``cluster``, ``addons``, ``efa_security_group``, ``gpu_node_groups`` (by configured name) and
    ``node_autoscaler`` (None without GPU node groups)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ClusterProps, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        config = props.config

        secrets_key = kms.Key(self, "SecretsKey", enable_key_rotation=True, description="EKS secrets encryption")
        endpoint = ENDPOINT_ACCESS[config.endpoint_access]
        if config.public_access_cidrs:
            endpoint = endpoint.only_from(*config.public_access_cidrs)
        self.cluster = eks.Cluster(
            self,
            "Cluster",
            cluster_name=config.name,
            version=KUBERNETES_VERSIONS[config.kubernetes_version],
            default_capacity_type=eks.DefaultCapacityType.NODEGROUP,
            default_capacity=0,
            vpc=props.vpc,
            vpc_subnets=[ec2.SubnetSelection(subnets=props.private_subnets)],
            endpoint_access=endpoint,
            secrets_encryption_key=secrets_key,
            cluster_logging=CONTROL_PLANE_LOGS,
            # Admins come from configuration as access entries; the deploying identity gets no implicit admin.
            bootstrap_cluster_creator_admin_permissions=False,
            kubectl_provider_options=eks.KubectlProviderOptions(
                kubectl_layer=KubectlV34Layer(self, "KubectlLayer"),
                private_subnets=props.private_subnets,
            ),
        )
        admin = eks.AccessPolicy.from_access_policy_name(
            "AmazonEKSClusterAdminPolicy", access_scope_type=eks.AccessScopeType.CLUSTER
        )
        for index, arn in enumerate(config.admin_principal_arns):
            self.cluster.grant_access(f"Admin{index}", arn, [admin])

        self.addons = ClusterAddons(self, "Addons", props=ClusterAddonsProps(cluster=self.cluster))

        # System pods (CoreDNS, the LWS controller, the router later) run off the GPU nodes.
        system = self.cluster.add_nodegroup_capacity(
            "SystemNodes",
            instance_types=[ec2.InstanceType(config.system_instance_type)],
            ami_type=eks.NodegroupAmiType.AL2023_X86_64_STANDARD,
            min_size=config.system_node_count,
            desired_size=config.system_node_count,
            max_size=config.system_node_count + 2,
            subnets=ec2.SubnetSelection(subnets=props.private_subnets),
            labels=SYSTEM_NODE_LABELS,
            enable_node_auto_repair=True,
        )
        system.node.add_dependency(self.addons.managed["vpc-cni"])
        # Helm waits for its workloads: the controllers need the system nodes to exist first.
        for chart in self.addons.charts:
            chart.node.add_dependency(system)

        self.efa_security_group = EfaSecurityGroup(self, "EfaSecurityGroup", vpc=props.vpc)
        self.gpu_node_groups: dict[str, GpuNodeGroup] = {}
        for group in props.gpu_node_groups:
            node_group = GpuNodeGroup(
                self,
                f"Gpu-{group.name}",
                props=GpuNodeGroupProps(
                    cluster=self.cluster, group=group, gpu_subnet=props.gpu_subnet,
                    efa_security_group=self.efa_security_group,
                ),
            )
            # efa-only interfaces need the managed vpc-cni (>= 1.18.5) in place before the nodes join.
            node_group.nodegroup.node.add_dependency(self.addons.managed["vpc-cni"])
            self.gpu_node_groups[group.name] = node_group

        self.node_autoscaler: NodeAutoscaler | None = None
        if props.gpu_node_groups:
            self.node_autoscaler = NodeAutoscaler(self, "NodeAutoscaler", props=NodeAutoscalerProps(
                cluster=self.cluster, pod_hugepages_2mi=props.pod_hugepages_2mi,
                groups={g.name: (g, self.gpu_node_groups[g.name].nodegroup) for g in props.gpu_node_groups}))
            self.node_autoscaler.chart.node.add_dependency(system)

        cdk.CfnOutput(self, "ClusterName", value=self.cluster.cluster_name)
        cdk.CfnOutput(self, "ClusterArn", value=self.cluster.cluster_arn)
        cdk.CfnOutput(self, "EfaSecurityGroupId", value=self.efa_security_group.security_group_id)
        cdk.CfnOutput(
            self, "UpdateKubeconfig",
            value=f"aws eks update-kubeconfig --name {self.cluster.cluster_name} --region {self.region}",
        )
