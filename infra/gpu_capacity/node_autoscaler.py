"""NodeAutoscaler: the Kubernetes Cluster Autoscaler over the GPU node groups, so GPU nodes follow pending pods within
each group's [min_size, max_size] (on-demand and ODCR groups; a capacity block's group is fixed at its size).

Why Cluster Autoscaler and not Karpenter on EKS node groups (README: Node autoscaling): the GPU nodes come from EKS
managed node groups whose launch templates carry what p5-class serving needs (every EFA interface, the cluster
placement group, the ODCR or capacity-block targeting); the Cluster Autoscaler scales exactly those groups within
their bounds, while Karpenter would replace them with its own NodePools and lose the placement group.

Scaling a group up from zero needs the autoscaler to know what a node of it offers before one exists. It reads labels
and taints through eks:DescribeNodegroup, but extended resources (GPUs, EFA interfaces, hugepages) only from
``k8s.io/cluster-autoscaler/node-template/resources/*`` tags on the group's Auto Scaling group (Cluster Autoscaler
1.35 AWS README, "Auto-discovery setup"). EKS does not copy node group tags to it, so a custom resource finds the
Auto Scaling group (eks:DescribeNodegroup) and tags it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aws_cdk as cdk
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra.cluster.addons import CLUSTER_AUTOSCALER_SERVICE_ACCOUNT, cluster_autoscaler
from infra.config import CapacityBlock, GpuNodeGroupConfig
from infra.workload_names import ACCELERATOR_LABEL, SYSTEM_PLACEMENT, accelerator_label
from runtime.catalog import instance_spec

TEMPLATE_TAG = "k8s.io/cluster-autoscaler/node-template"


@dataclass(frozen=True)
class NodeAutoscalerProps:
    cluster: eks.ICluster
    groups: dict[str, tuple[GpuNodeGroupConfig, eks.Nodegroup]]
    hugepages_2mi_pages: dict[str, int]  # by instance type: what one GPU node reserves (GpuCapacityProps')
    kubernetes_version: str  # the cluster's minor: the autoscaler's must match it
    # the system nodes' nodeSelector and tolerations (Deployment.system_placement)
    system_placement: dict = field(default_factory=lambda: dict(SYSTEM_PLACEMENT))
    # False where the platform runs its own Cluster Autoscaler: pdstack then only tags the groups' Auto Scaling groups
    # with what a node offers (scaling from zero needs it whoever runs the autoscaler).
    install: bool = True


def node_template_tags(group: GpuNodeGroupConfig, hugepages_2mi_pages: int) -> dict[str, str]:
    """The extended resources one node of the group offers (the hugepages its user data reserves), as the
    autoscaler's ASG tags."""
    spec = instance_spec(group.instance_type)
    return {
        # GPU nodes carry the accelerator label from boot (gpu_nodes.gpu_node_labels): the template says so too.
        f"{TEMPLATE_TAG}/label/{ACCELERATOR_LABEL}": accelerator_label(spec.gpu_model)[ACCELERATOR_LABEL],
        f"{TEMPLATE_TAG}/resources/nvidia.com/gpu": str(spec.gpus),
        f"{TEMPLATE_TAG}/resources/vpc.amazonaws.com/efa": str(spec.efa_interfaces),
        f"{TEMPLATE_TAG}/resources/hugepages-2Mi": f"{hugepages_2mi_pages * 2}Mi",
    }


def autoscaled(group: GpuNodeGroupConfig) -> bool:
    """A capacity block is paid for whole and exists only in its window: its group is not the autoscaler's."""
    return not isinstance(group.capacity, CapacityBlock) and group.min_size < group.max_size


class NodeAutoscaler(Construct):
    """Exposes ``chart`` and ``role`` (None where the platform runs the autoscaler) and ``template_tags`` (the tagging
    custom resource per autoscaled group)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: NodeAutoscalerProps) -> None:
        super().__init__(scope, construct_id)
        self.template_tags: dict[str, cr.AwsCustomResource] = {}
        for name, (group, nodegroup) in props.groups.items():
            if autoscaled(group):
                self.template_tags[name] = self._tag(
                    name, group, nodegroup, props.hugepages_2mi_pages.get(group.instance_type, 0)
                )
        self.role: iam.Role | None = None
        self.chart: eks.HelmChart | None = None
        if props.install:
            self._install(props)

    def _install(self, props: NodeAutoscalerProps) -> None:
        cluster = props.cluster
        stack = cdk.Stack.of(self)
        pin = cluster_autoscaler(props.kubernetes_version)
        self.role = role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("pods.eks.amazonaws.com").with_session_tags(),
            description="Cluster Autoscaler: resize this cluster's node groups within their bounds",
        )
        # Reads have no resource-level permissions (Cluster Autoscaler 1.35 AWS README, full-features policy).
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "autoscaling:DescribeAutoScalingGroups",
                    "autoscaling:DescribeAutoScalingInstances",
                    "autoscaling:DescribeLaunchConfigurations",
                    "autoscaling:DescribeScalingActivities",
                    "ec2:DescribeImages",
                    "ec2:DescribeInstanceTypes",
                    "ec2:DescribeLaunchTemplateVersions",
                    "ec2:GetInstanceTypesFromInstanceRequirements",
                ],
                resources=["*"],
            )
        )
        # Labels and taints for scaling from zero: only the groups it may resize (the others carry no discovery tag).
        described = [nodegroup.nodegroup_arn for group, nodegroup in props.groups.values() if autoscaled(group)]
        if described:
            role.add_to_policy(iam.PolicyStatement(actions=["eks:DescribeNodegroup"], resources=described))
        # Writes only on Auto Scaling groups EKS tagged as this cluster's and pdstack tagged as autoscaled.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
                resources=["*"],
                conditions={
                    "StringEquals": {
                        "aws:ResourceTag/eks:cluster-name": cluster.cluster_name,
                        "aws:ResourceTag/pdstack.io/autoscaled": "true",
                    }
                },
            )
        )
        identity = eks.CfnPodIdentityAssociation(
            self,
            "Identity",
            cluster_name=cluster.cluster_name,
            namespace=pin.namespace,
            service_account=CLUSTER_AUTOSCALER_SERVICE_ACCOUNT,
            role_arn=role.role_arn,
        )

        self.chart = eks.HelmChart(
            self,
            "Chart",
            cluster=cluster,
            chart=pin.chart,
            repository=pin.repository,
            version=pin.version,
            namespace=pin.namespace,
            wait=True,
            values={
                "cloudProvider": "aws",
                "awsRegion": stack.region,
                # Only groups that carry pdstack's tag (capacity blocks and fixed groups do not).
                "autoDiscovery": {
                    "clusterName": cluster.cluster_name,
                    "tags": [
                        "k8s.io/cluster-autoscaler/enabled",
                        f"k8s.io/cluster-autoscaler/{cluster.cluster_name}",
                        "pdstack.io/autoscaled",
                    ],
                },
                "rbac": {"serviceAccount": {"name": CLUSTER_AUTOSCALER_SERVICE_ACCOUNT}},
                **props.system_placement,
                "extraArgs": {
                    "expander": "least-waste",
                    "balance-similar-node-groups": "false",
                    # an idle GPU node goes after 10 minutes; the pods' own scale-down is slower
                    "scale-down-unneeded-time": "10m",
                },
            },
        )
        self.chart.node.add_dependency(identity)

    def _tag(
        self, name: str, group: GpuNodeGroupConfig, nodegroup: eks.Nodegroup, hugepages_2mi_pages: int
    ) -> cr.AwsCustomResource:
        cluster_name = nodegroup.cluster.cluster_name
        describe = cr.AwsCustomResource(
            self,
            f"Asg-{name}",
            on_update=cr.AwsSdkCall(
                service="EKS",
                action="describeNodegroup",
                parameters={"clusterName": cluster_name, "nodegroupName": nodegroup.nodegroup_name},
                physical_resource_id=cr.PhysicalResourceId.of(f"{name}-asg"),
                output_paths=["nodegroup.resources.autoScalingGroups.0.name"],
            ),
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [iam.PolicyStatement(actions=["eks:DescribeNodegroup"], resources=[nodegroup.nodegroup_arn])]
            ),
            install_latest_aws_sdk=False,
        )
        describe.node.add_dependency(nodegroup)
        asg = describe.get_response_field("nodegroup.resources.autoScalingGroups.0.name")
        tags = {**node_template_tags(group, hugepages_2mi_pages), "pdstack.io/autoscaled": "true"}
        tagging = cr.AwsCustomResource(
            self,
            f"AsgTags-{name}",
            on_update=cr.AwsSdkCall(
                service="AutoScaling",
                action="createOrUpdateTags",
                parameters={
                    "Tags": [
                        {
                            "ResourceId": asg,
                            "ResourceType": "auto-scaling-group",
                            "Key": key,
                            "Value": value,
                            "PropagateAtLaunch": False,
                        }
                        for key, value in tags.items()
                    ]
                },
                physical_resource_id=cr.PhysicalResourceId.of(f"{name}-asg-tags"),
            ),
            # Only Auto Scaling groups EKS created for this cluster.
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [
                    iam.PolicyStatement(
                        actions=["autoscaling:CreateOrUpdateTags"],
                        resources=["*"],
                        conditions={"StringEquals": {"aws:ResourceTag/eks:cluster-name": cluster_name}},
                    )
                ]
            ),
            install_latest_aws_sdk=False,
        )
        return tagging
