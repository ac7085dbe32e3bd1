"""ClusterStack: the EKS cluster (managed node groups, not Auto Mode), its add-ons, the system nodes, the EFA group."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_kms as kms
from constructs import Construct, IDependable

from infra.cluster.addons import ClusterAddons, ClusterAddonsProps
from infra.cluster.imported import ImportedCluster
from infra.cluster.kubernetes_versions import KUBERNETES_PINS
from infra.cluster.outputs import add_cluster_outputs
from infra.config import ClusterConfig, Taint
from infra.gpu_capacity.efa import EfaSecurityGroup
from infra.workload_names import SYSTEM_PLACEMENT, SYSTEM_POOL

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
    vpc: ec2.IVpc
    private_subnets: list[ec2.ISubnet]
    gpu_taints: list[
        Taint
    ]  # of every GPU pool, node groups or HyperPod instance groups: the device plugins tolerate them


class InferenceCluster(Construct):
    """Exposes ``cluster``, ``addons``, ``system_nodes``, ``prerequisites`` (what anything put on the cluster waits
    for: the managed vpc-cni, which efa-only interfaces need before a node joins, and the system nodes the
    controllers run on), ``system_placement`` (the system pool's nodeSelector) and ``efa_security_group``; the GPU
    node groups (and the Cluster Autoscaler over them) live in GpuCapacityStack."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ClusterProps) -> None:
        super().__init__(scope, construct_id)
        config = props.config

        pins = KUBERNETES_PINS[config.kubernetes_version]
        kubectl_layer = getattr(importlib.import_module(pins.kubectl_layer_module), pins.kubectl_layer_class)
        # Scheduled for deletion with the stack (a retained key outlives the cluster whose secrets it sealed, and
        # bills).
        secrets_key = kms.Key(
            self,
            "SecretsKey",
            enable_key_rotation=True,
            description="EKS secrets encryption",
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        endpoint = ENDPOINT_ACCESS[config.endpoint_access]
        if config.public_access_cidrs:
            endpoint = endpoint.only_from(*config.public_access_cidrs)
        cluster = eks.Cluster(
            self,
            "Cluster",
            cluster_name=config.name,
            version=getattr(eks.KubernetesVersion, pins.cdk_version),
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
                kubectl_layer=kubectl_layer(self, "KubectlLayer"),
                private_subnets=props.private_subnets,
            ),
        )
        # Exposed as the interface, which an imported cluster (ImportedCluster) also offers: every consumer takes
        # either. aws-cdk-lib 2.275's Python stub leaves kubectl_provider_options off Cluster (it is an ICluster at
        # run time): the one place that gap is bridged.
        self.cluster: eks.ICluster = cluster  # type: ignore[assignment]  # jsii stub gap, see pyproject.toml
        admin = eks.AccessPolicy.from_access_policy_name(
            "AmazonEKSClusterAdminPolicy", access_scope_type=eks.AccessScopeType.CLUSTER
        )
        for index, arn in enumerate(config.admin_principal_arns):
            cluster.grant_access(f"Admin{index}", arn, [admin])

        self.addons = ClusterAddons(
            self,
            "Addons",
            props=ClusterAddonsProps(
                cluster=self.cluster,
                gpu_taints=props.gpu_taints,
                kubernetes_version=config.kubernetes_version,
            ),
        )

        # System pods (CoreDNS, the LWS controller, the router later) run off the GPU nodes.
        system = cluster.add_nodegroup_capacity(
            "SystemNodes",
            instance_types=[ec2.InstanceType(config.system_instance_type)],
            ami_type=eks.NodegroupAmiType.AL2023_X86_64_STANDARD,
            min_size=config.system_node_count,
            desired_size=config.system_node_count,
            max_size=config.system_node_count + 2,
            subnets=ec2.SubnetSelection(subnets=props.private_subnets),
            labels=SYSTEM_POOL,
            enable_node_auto_repair=True,
        )
        self.system_nodes = system
        system.node.add_dependency(self.addons.managed["vpc-cni"])
        self.prerequisites: list[IDependable] = [self.addons.managed["vpc-cni"], system]
        self.system_placement = dict(SYSTEM_PLACEMENT)
        # Helm waits for its workloads, and so does EKS for the add-ons that run Deployments (coredns, the EBS CSI
        # controller): their pods need the system nodes to exist first.
        for waits_for_pods in (
            *self.addons.charts,
            self.addons.managed["coredns"],
            self.addons.managed["aws-ebs-csi-driver"],
        ):
            waits_for_pods.node.add_dependency(system)

        # Shared by the GPU node groups (their own stack) and the HyperPod instances.
        self.efa_security_group = EfaSecurityGroup(self, "EfaSecurityGroup", vpc=props.vpc)

        add_cluster_outputs(self, self.cluster, self.efa_security_group)


class ClusterStack(cdk.Stack):
    """The InferenceCluster construct in a stack of its own (pdstack's app), as ``inference_cluster``; id "Default"
    keeps the logical ids the stack gave its resources when it built them itself. Built empty (no props), it takes
    the construct pdstack's app places in it (``place``): an ImportedCluster for an existing cluster, or an
    InferenceCluster in an existing VPC imported into this stack first."""

    cluster: eks.ICluster
    addons: ClusterAddons
    system_nodes: Construct | None
    efa_security_group: ec2.SecurityGroup

    def __init__(
        self, scope: Construct, construct_id: str, *, props: ClusterProps | None = None, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        if props is not None:
            self.place(InferenceCluster(self, "Default", props=props))

    def place(self, built: InferenceCluster | ImportedCluster) -> None:
        """Expose the cluster construct built in this stack."""
        self.inference_cluster = built
        self.cluster = built.cluster
        self.addons, self.system_nodes = built.addons, built.system_nodes
        self.efa_security_group = built.efa_security_group
