"""DeploymentStacks: every stack of one deployment, wired together through construct attributes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import aws_cdk as cdk
from constructs import Construct

from infra.cluster.imported import ImportedCluster, ImportedClusterProps
from infra.cluster.stack import ClusterProps, ClusterStack, InferenceCluster
from infra.config import Deployment
from infra.gpu_capacity.node_capacity import hugepages_2mi_pages_per_node
from infra.gpu_capacity.stack import GpuCapacityProps, GpuCapacityStack
from infra.hyperpod.stack import HyperPodProps, HyperPodStack
from infra.image.stack import ImageProps, ImageStack
from infra.network.imported import ImportedNetwork, ImportedNetworkProps
from infra.network.stack import Network, NetworkProps, NetworkStack
from infra.observability.stack import ObservabilityProps, ObservabilityStack
from infra.stack_outputs import stack_name
from infra.workloads.stack import WorkloadsProps, WorkloadsStack

StackT = TypeVar("StackT", bound=cdk.Stack)


class DeploymentStacks:
    """Builds ``network`` (None for an existing VPC), ``image``, ``cluster`` (with ``imported_cluster`` for an existing
    one), the GPU nodes (``gpu_nodes`` for EKS node groups, or ``hyperpod``),
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

        # An existing VPC is imported into the cluster stack (no network stack: it would hold nothing); an existing
        # cluster is imported there too, with what pdstack adds to it (infra/cluster/imported.py).
        self.network: NetworkStack | None = None
        network: Network | ImportedNetwork
        if deployment.network.existing is None:
            self.network = part(
                NetworkStack,
                "network",
                "VPC, private subnets, GPU subnet, collector subnets, endpoints, flow logs",
                NetworkProps(config=deployment.network, metrics_collector=deployment.observability.enabled),
            )
            network = self.network.network
        self.image = part(
            ImageStack,
            "image",
            "ECR repository and in-account build of the serving image",
            ImageProps(config=deployment.image, deployment_name=deployment.name),
        )
        existing = deployment.cluster.existing is not None
        self.cluster = part(
            ClusterStack,
            "cluster",
            "imported EKS cluster, pdstack's kubectl access and add-ons, EFA security group"
            if existing
            else "EKS cluster, add-ons, system nodes, EFA security group",
            None,
        )
        if deployment.network.existing is not None:
            network = ImportedNetwork(
                self.cluster,
                "Network",
                props=ImportedNetworkProps(existing=deployment.network.existing, cidr=deployment.network.cidr),
            )
        self.imported_cluster: ImportedCluster | None = None
        if existing:
            self.imported_cluster = ImportedCluster(
                self.cluster,
                "Default",
                props=ImportedClusterProps(
                    deployment=deployment, vpc=network.vpc, private_subnets=network.private_subnets
                ),
            )
            self.cluster.place(self.imported_cluster)
        else:
            self.cluster.place(
                InferenceCluster(
                    self.cluster,
                    "Default",
                    props=ClusterProps(
                        config=deployment.cluster,
                        vpc=network.vpc,
                        private_subnets=network.private_subnets,
                        gpu_taints=[taint for pool in deployment.gpu_pools for taint in pool.taints],
                    ),
                )
            )
        # What must exist before pdstack puts anything on the cluster: on a cluster of its own, the managed vpc-cni
        # (efa-only interfaces) and the system nodes (where the controllers run); on an existing one, the check of
        # the cluster and pdstack's kubectl access entry.
        prerequisites = self.cluster.inference_cluster.prerequisites
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
                    gpu_subnet=network.gpu_subnet,
                    efa_security_group=self.cluster.efa_security_group,
                    prerequisites=prerequisites,
                    hugepages_2mi_pages={
                        g.instance_type: hugepages_2mi_pages_per_node(deployment, g.instance_type)
                        for g in deployment.gpu_node_groups
                    },
                    kubernetes_version=deployment.cluster.kubernetes_version,
                    gpu_az_id=deployment.network.gpu_az_id,
                    system_placement=deployment.system_placement,
                    node_autoscaler=deployment.cluster.addons.node_autoscaler,
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
                    gpu_subnet=network.gpu_subnet,
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
                    vpc=network.vpc,
                    collector_subnets=network.collector_subnets,
                    prerequisites=prerequisites,
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
                # the LWS CRD: pdstack's chart, or the platform's LWS once the cluster check has passed
                leader_worker_set=self.cluster.addons.leader_worker_set or prerequisites[0],
                metrics_collector_cidrs=network.collector_cidrs,
                cluster_prerequisites=prerequisites,
                metrics_workspace=self.observability.workspace if self.observability else None,
            ),
        )
        for gpu_stack in (self.gpu_nodes, self.hyperpod):
            if gpu_stack is not None:
                self.workloads.add_stack_dependency(gpu_stack)
        if self.observability is not None:
            # its ingress rules on an imported cluster's security group name no cluster-stack resource
            self.observability.add_stack_dependency(self.cluster)
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
