"""ExistingClusterCheck: a deploy-time custom resource that fails the deploy, before pdstack creates anything on an
existing cluster, when the cluster is not what the deployment file declared or lacks what pdstack relies on.

The file's facts are checked offline when it is loaded (infra/config/cluster.py); this reads them back from the
account: eks:DescribeCluster (status, Kubernetes version, authentication mode, VPC, cluster security group, private
endpoint access), eks:ListAddons (the Pod Identity agent, vpc-cni) and eks:DescribeAddon on vpc-cni (its version
against the efa-only floor, and NetworkPolicy enforcement, which the serving namespace's policies rely on). One small
Lambda with inline code (handler.py), read-only calls on this one cluster only.
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import Deployment
from infra.config.cluster import VPC_CNI_FOR_EFA_ONLY, VPC_CNI_FOR_HYPERPOD

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
    }


class ExistingClusterCheck(Construct):
    """Exposes ``resource`` (make everything pdstack creates on the cluster depend on it) and ``function``."""

    def __init__(self, scope: Construct, construct_id: str, *, deployment: Deployment) -> None:
        super().__init__(scope, construct_id)
        source = HANDLER_SOURCE.read_text()
        if len(source) > 4096:  # CloudFormation's limit on inline (ZipFile) code
            raise ValueError(f"{HANDLER_SOURCE} is {len(source)} characters; inline Lambda code takes 4096 at most")
        properties = check_properties(deployment)
        self.function = lambda_.Function(
            self,
            "Handler",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="index.handler",
            code=lambda_.Code.from_inline(source),
            timeout=cdk.Duration.seconds(60),
            description="pdstack: fails the deploy when the existing EKS cluster lacks what pdstack needs",
            log_group=logs.LogGroup(
                self, "Logs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=cdk.RemovalPolicy.DESTROY
            ),
        )
        stack = cdk.Stack.of(self)
        name = deployment.cluster.name
        cluster_arn = stack.format_arn(service="eks", resource="cluster", resource_name=name)
        # EKS's add-on ARN: arn:...:addon/<cluster>/<add-on>/<uuid> (Service Authorization Reference, Amazon EKS).
        addon_arn = stack.format_arn(service="eks", resource="addon", resource_name=f"{name}/vpc-cni/*")
        self.function.add_to_role_policy(
            iam.PolicyStatement(actions=["eks:DescribeCluster", "eks:ListAddons"], resources=[cluster_arn])
        )
        self.function.add_to_role_policy(iam.PolicyStatement(actions=["eks:DescribeAddon"], resources=[addon_arn]))
        self.resource = cdk.CustomResource(
            self, "Check", service_token=self.function.function_arn, resource_type=RESOURCE_TYPE, properties=properties
        )
        # The role's policy is a resource of its own: the function must not run before it exists.
        self.resource.node.add_dependency(self.function.role)
