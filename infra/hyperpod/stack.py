"""HyperPodStack: a SageMaker HyperPod cluster (EKS orchestrator) as the home of the GPU nodes.

The HyperPod cluster joins the EKS cluster of the ClusterStack. Its instances land in the GPU subnet with the EFA
security group, run ``on_create.sh`` from a ``sagemaker-*`` lifecycle bucket (the managed instance policy only
reads buckets so named), pass deep health checks before they join, and are recovered automatically. The objects
HyperPod's resiliency needs are applied to the cluster BEFORE the HyperPod cluster is created.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3_deployment
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.config import HyperPodConfig, HyperPodInstanceGroup
from infra.gpu_capacity.gpu_zone.check import GpuZoneCheck
from infra.hyperpod.dependencies import (
    HEALTH_AGENT_ACCOUNTS,
    HEALTH_AGENT_REPOSITORY,
    HEALTH_AGENT_TAG,
    resiliency_objects,
)
from infra.stack_outputs import HyperPodOutputs
from infra.workload_names import GPU_NODE_LABELS, NODE_GROUP_LABEL, accelerator_label
from runtime.catalog import instance_spec

LIFECYCLE_DIR = Path(__file__).parent / "lifecycle"
LIFECYCLE_PREFIX = "lifecycle"
# Written beside on_create.sh (HyperPod runs the script from a copy of the whole prefix) and sourced by it.
NODE_SETTINGS_FILE = "pdstack-node.env"
ENI_ACTIONS = [
    "ec2:AssignPrivateIpAddresses",
    "ec2:CreateNetworkInterface",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface",
    "ec2:DeleteNetworkInterfacePermission",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:DetachNetworkInterface",
    "ec2:ModifyNetworkInterfaceAttribute",
    "ec2:UnassignPrivateIpAddresses",
]
ECR_PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]


def node_settings(hugepages_2mi_pages: int) -> str:
    """The shell variables on_create.sh sources."""
    return f"HUGEPAGES_2MI_PAGES={hugepages_2mi_pages}\n"


@dataclass(frozen=True)
class HyperPodProps:
    config: HyperPodConfig
    cluster: eks.ICluster
    gpu_subnet: ec2.ISubnet
    efa_security_group: ec2.ISecurityGroup
    hugepages_2mi_pages: int  # reserved by on_create.sh on every instance for the workers
    gpu_az_id: str | None  # network.gpu_az_id: the subnet's zone is checked at deploy time before the cluster


class HyperPodCapacity(Construct):
    """Exposes ``hyperpod_cluster`` (the CfnCluster), ``execution_role``, ``lifecycle_bucket``, ``resiliency_objects``,
    ``zone_check`` (None without network.gpu_az_id) and, with node autoscaling, ``autoscaler_role`` and
    ``node_pool``."""

    def __init__(self, scope: Construct, construct_id: str, *, props: HyperPodProps) -> None:
        super().__init__(scope, construct_id)
        config = props.config

        self.lifecycle_bucket = self._lifecycle_bucket(config)
        scripts = s3_deployment.BucketDeployment(
            self,
            "LifecycleScripts",
            sources=[
                s3_deployment.Source.asset(str(LIFECYCLE_DIR)),
                s3_deployment.Source.data(NODE_SETTINGS_FILE, node_settings(props.hugepages_2mi_pages)),
            ],
            destination_bucket=self.lifecycle_bucket,
            destination_key_prefix=LIFECYCLE_PREFIX,
            prune=True,
        )
        self.execution_role = self._execution_role(props)

        self.resiliency_objects = eks.KubernetesManifest(
            self,
            "ResiliencyDependencies",
            cluster=props.cluster,
            manifest=resiliency_objects(
                self._health_agent_image(),
                [instance_spec(g.instance_type).hyperpod_name or "" for g in config.instance_groups],
            ),
            overwrite=True,
        )

        self.hyperpod_cluster = sagemaker.CfnCluster(
            self,
            "Cluster",
            cluster_name=config.cluster_name,
            orchestrator=sagemaker.CfnCluster.OrchestratorProperty(
                eks=sagemaker.CfnCluster.ClusterOrchestratorEksConfigProperty(cluster_arn=props.cluster.cluster_arn)
            ),
            vpc_config=sagemaker.CfnCluster.VpcConfigProperty(
                subnets=[props.gpu_subnet.subnet_id],
                security_group_ids=[
                    props.efa_security_group.security_group_id,
                    props.cluster.cluster_security_group_id,
                ],
            ),
            node_recovery=config.node_recovery,
            node_provisioning_mode="Continuous",
            instance_groups=[self._instance_group(group, config.node_autoscaling) for group in config.instance_groups],
        )
        self.autoscaler_role: iam.Role | None = None
        self.node_pool: eks.KubernetesManifest | None = None
        if config.node_autoscaling:
            self._node_autoscaling(props, config)
        self.zone_check: GpuZoneCheck | None = None
        if props.gpu_az_id is not None:
            # The zone only: HyperPod's ml.* types are SageMaker's offering, which EC2's offerings do not describe.
            self.zone_check = GpuZoneCheck(
                self, "GpuZoneCheck", subnet=props.gpu_subnet, az_id=props.gpu_az_id, instance_types=[]
            )
            self.hyperpod_cluster.node.add_dependency(self.zone_check.resource)
        # Resiliency objects first (HyperPod checks for them), and the scripts must be in the bucket.
        self.hyperpod_cluster.node.add_dependency(self.resiliency_objects)
        self.hyperpod_cluster.node.add_dependency(scripts)
        # The role's inline policy (ECR pulls, ENIs) is a separate resource: instances must not start before it.
        self.hyperpod_cluster.node.add_dependency(self.execution_role)

        cdk.CfnOutput(self, HyperPodOutputs.CLUSTER_NAME, value=config.cluster_name)
        cdk.CfnOutput(self, HyperPodOutputs.CLUSTER_ARN, value=self.hyperpod_cluster.attr_cluster_arn)
        cdk.CfnOutput(self, HyperPodOutputs.LIFECYCLE_BUCKET, value=self.lifecycle_bucket.bucket_name)

    def _lifecycle_bucket(self, config: HyperPodConfig) -> s3.Bucket:
        access_logs = s3.Bucket(
            self,
            "LifecycleAccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            removal_policy=cdk.RemovalPolicy.RETAIN,
            # Versioned, so an overwrite or delete of an access log keeps the original (checkov CKV_AWS_21).
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=cdk.Duration.days(365), noncurrent_version_expiration=cdk.Duration.days(365)
                )
            ],
        )
        return s3.Bucket(
            self,
            "LifecycleBucket",
            # AmazonSageMakerClusterInstanceRolePolicy grants s3:GetObject on arn:aws:s3:::sagemaker-* only.
            bucket_name=cdk.Fn.join("-", ["sagemaker", config.cluster_name, cdk.Aws.ACCOUNT_ID, cdk.Aws.REGION]),
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="lifecycle-bucket/",
            removal_policy=cdk.RemovalPolicy.DESTROY,
            auto_delete_objects=True,
        )

    def _execution_role(self, props: HyperPodProps) -> iam.Role:
        role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="HyperPod instances: join the EKS cluster, pull images, read lifecycle scripts",
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSageMakerClusterInstanceRolePolicy"),
                iam.ManagedPolicy.from_aws_managed_policy_name("AmazonEKS_CNI_Policy"),
            ],
        )
        # HyperPod attaches and manages the instances' ENIs itself; their ids are not known in advance.
        role.add_to_policy(iam.PolicyStatement(actions=ENI_ACTIONS, resources=["*"]))
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ec2:CreateTags"],
                resources=[
                    cdk.Stack.of(self).format_arn(service="ec2", resource="network-interface", resource_name="*")
                ],
            )
        )
        # The nodes pull AWS-owned images from AWS accounts' registries: the VPC CNI, kube-proxy, Pod Identity agent
        # and EBS CSI images of the managed add-ons, the EFA device plugin (the chart's default image lives in
        # us-west-2 whatever the region) and the health-monitoring agent (one account per region), as well as
        # pdstack's own image. AmazonSageMakerClusterInstanceRolePolicy grants no ECR pull; AWS's HyperPod sample
        # (awsome-distributed-training 1.architectures/7.sagemaker-hyperpod-eks, sagemaker-iam-role-stack.yaml)
        # grants these actions on "*".
        role.add_to_policy(
            iam.PolicyStatement(actions=["ecr:GetAuthorizationToken", *ECR_PULL_ACTIONS], resources=["*"])
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["eks-auth:AssumeRoleForPodIdentity"], resources=[props.cluster.cluster_arn])
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[self.lifecycle_bucket.arn_for_objects(f"{LIFECYCLE_PREFIX}/*")]
            )
        )
        role.add_to_policy(iam.PolicyStatement(actions=["s3:ListBucket"], resources=[self.lifecycle_bucket.bucket_arn]))
        return role

    def _node_autoscaling(self, props: HyperPodProps, config: HyperPodConfig) -> None:
        """HyperPod's managed Karpenter (AutoScaling, over continuous provisioning): the role it assumes to add and
        remove this cluster's nodes, and the NodeClass/NodePool that let it use our instance groups."""
        role = iam.Role(
            self,
            "AutoscalerRole",
            assumed_by=iam.ServicePrincipal("hyperpod.sagemaker.amazonaws.com"),
            description="HyperPod's Karpenter: add and remove nodes of this HyperPod cluster",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["sagemaker:BatchAddClusterNodes", "sagemaker:BatchDeleteClusterNodes"],
                resources=[self.hyperpod_cluster.attr_cluster_arn],
            )
        )
        self.autoscaler_role = role
        self.hyperpod_cluster.auto_scaling = sagemaker.CfnCluster.ClusterAutoScalingConfigProperty(
            mode="Enable", auto_scaler_type="Karpenter"
        )
        self.hyperpod_cluster.cluster_role = role.role_arn
        self.node_pool = eks.KubernetesManifest(
            self,
            "NodePool",
            cluster=props.cluster,
            manifest=hyperpod_node_pool(config),
            overwrite=True,
        )
        self.node_pool.node.add_dependency(self.hyperpod_cluster)  # HyperPod installs the Karpenter CRDs

    def _instance_group(
        self, group: HyperPodInstanceGroup, autoscaled: bool
    ) -> sagemaker.CfnCluster.ClusterInstanceGroupProperty:
        spec = instance_spec(group.instance_type)
        return sagemaker.CfnCluster.ClusterInstanceGroupProperty(
            instance_group_name=group.name,
            instance_type=spec.hyperpod_name,
            # Karpenter starts a group at zero and grows it (anything more it would scale down to zero anyway)
            instance_count=0 if autoscaled else group.count,
            execution_role=self.execution_role.role_arn,
            threads_per_core=group.threads_per_core,
            life_cycle_config=sagemaker.CfnCluster.ClusterLifeCycleConfigProperty(
                source_s3_uri=self.lifecycle_bucket.s3_url_for_object(LIFECYCLE_PREFIX),
                on_create="on_create.sh",
            ),
            instance_storage_configs=[
                sagemaker.CfnCluster.ClusterInstanceStorageConfigProperty(
                    ebs_volume_config=sagemaker.CfnCluster.ClusterEbsVolumeConfigProperty(
                        volume_size_in_gb=group.ebs_volume_gib
                    )
                )
            ],
            on_start_deep_health_checks=list(group.deep_health_checks) or None,
            training_plan_arn=group.training_plan_arn,
            kubernetes_config=sagemaker.CfnCluster.ClusterKubernetesConfigProperty(
                labels={
                    **group.labels,
                    **GPU_NODE_LABELS,
                    NODE_GROUP_LABEL: group.name,
                    **accelerator_label(instance_spec(group.instance_type).gpu_model),
                },
                taints=[
                    sagemaker.CfnCluster.ClusterKubernetesTaintProperty(key=t.key, value=t.value, effect=t.effect)
                    for t in group.taints
                ],
            ),
        )

    def _health_agent_image(self) -> str:
        accounts = cdk.CfnMapping(
            self,
            "HealthAgentAccounts",
            mapping={region: {"account": account} for region, account in HEALTH_AGENT_ACCOUNTS.items()},
        )
        account = accounts.find_in_map(cdk.Aws.REGION, "account")
        return cdk.Fn.join(
            "",
            [
                account,
                ".dkr.ecr.",
                cdk.Aws.REGION,
                ".",
                cdk.Aws.URL_SUFFIX,
                f"/{HEALTH_AGENT_REPOSITORY}:{HEALTH_AGENT_TAG}",
            ],
        )


HYPERPOD_NODE_CLASS = "pdstack-gpu"


def hyperpod_node_pool(config: HyperPodConfig) -> list[dict[str, Any]]:
    """The HyperpodNodeClass over our instance groups and the NodePool that uses it, capped at the GPUs the groups'
    counts allow (SageMaker developer guide, "Create a NodeClass" / "Create a NodePool": karpenter.sh/v1 NodePool,
    nodeClassRef to karpenter.sagemaker.amazonaws.com HyperpodNodeClass; at most 10 instance groups)."""
    gpus = sum(instance_spec(group.instance_type).gpus * group.count for group in config.instance_groups)
    return [
        {
            "apiVersion": "karpenter.sagemaker.amazonaws.com/v1",
            "kind": "HyperpodNodeClass",
            "metadata": {"name": HYPERPOD_NODE_CLASS},
            "spec": {"instanceGroups": [group.name for group in config.instance_groups]},
        },
        {
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodePool",
            "metadata": {"name": HYPERPOD_NODE_CLASS},
            "spec": {
                "template": {
                    "spec": {
                        "nodeClassRef": {
                            "group": "karpenter.sagemaker.amazonaws.com",
                            "kind": "HyperpodNodeClass",
                            "name": HYPERPOD_NODE_CLASS,
                        },
                        # a GPU node is never replaced for age: that would cost a model load
                        "expireAfter": "Never",
                        "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "Exists"}],
                    }
                },
                "limits": {"nvidia.com/gpu": str(gpus)},
            },
        },
    ]


class HyperPodStack(cdk.Stack):
    """The HyperPodCapacity construct in a stack of its own (pdstack's app), as ``capacity``; id "Default" keeps the
    logical ids the stack gave its resources when it built them itself."""

    def __init__(self, scope: Construct, construct_id: str, *, props: HyperPodProps, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.capacity = capacity = HyperPodCapacity(self, "Default", props=props)
        self.hyperpod_cluster, self.execution_role = capacity.hyperpod_cluster, capacity.execution_role
        self.lifecycle_bucket, self.resiliency_objects = capacity.lifecycle_bucket, capacity.resiliency_objects
        self.zone_check, self.autoscaler_role, self.node_pool = (
            capacity.zone_check,
            capacity.autoscaler_role,
            capacity.node_pool,
        )
