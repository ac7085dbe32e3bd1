"""RouterApiKeys: the router's API keys from AWS Secrets Manager, mounted (workloads.router.api_keys_secret).

The Secrets Store CSI driver and its AWS provider (pinned charts, infra/cluster/addons.py) on the system nodes; the
routers' EKS Pod Identity role, which may read that one secret and nothing else (and decrypt it through Secrets Manager
when it is under a customer managed key). The charts are the cluster's (``SecretsStoreCharts``, once); the role and
its association are each serving unit's (``RouterApiKeys``). The SecretProviderClass and the pods' volume are in
infra/workloads/router_objects.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.cluster.addons import (
    SECRETS_STORE_CSI_DRIVER,
    SECRETS_STORE_PROVIDER_AWS,
    HelmChartPin,
    secrets_store_csi_driver_values,
    secrets_store_provider_aws_values,
)
from infra.config import Deployment, RouterWorkload
from infra.workload_names import ROUTER, SYSTEM_PLACEMENT


@dataclass(frozen=True)
class RouterApiKeysProps:
    deployment: Deployment  # one serving unit's view, with workloads.router.api_keys_secret set
    cluster: eks.ICluster


def secret_resource(secret: str) -> str:
    """The secret's ARN in an IAM policy: the ARN as given, or for a name the ARN Secrets Manager will have given it
    (the name, a hyphen and six random characters: Secrets Manager user guide, "Permissions to AWS Secrets Manager
    secrets", the ``-??????`` wildcard), in this stack's account and region."""
    if secret.startswith("arn:"):
        return secret
    return f"arn:{cdk.Aws.PARTITION}:secretsmanager:{cdk.Aws.REGION}:{cdk.Aws.ACCOUNT_ID}:secret:{secret}-??????"


def api_keys_reader_role(scope: Construct, router: RouterWorkload) -> iam.Role:
    """The routers' Pod Identity role: what ASCP calls to mount and to rotate (Secrets Manager user guide, "Use AWS
    Secrets Manager secrets in Amazon EKS": GetSecretValue and DescribeSecret) on the one secret, and kms:Decrypt on
    its customer managed key, if one is configured, through Secrets Manager in the secret's region only."""
    secret = router.api_keys_secret
    assert secret is not None
    role = iam.Role(
        scope,
        "ApiKeysReader",
        assumed_by=iam.ServicePrincipal("pods.eks.amazonaws.com").with_session_tags(),
        description="pdstack routers: read the API keys' secret and, for an s3:// model, the model",
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            resources=[secret_resource(secret)],
        )
    )
    if router.api_keys_kms_key_arn is not None:
        region = secret.split(":")[3] if secret.startswith("arn:") else cdk.Aws.REGION
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt"],
                resources=[router.api_keys_kms_key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}},
            )
        )
    return role


class RouterApiKeys(Construct):
    """One serving unit's routers' keys. Exposes ``role`` (the routers' Pod Identity role) and ``association``."""

    def __init__(self, scope: Construct, construct_id: str, *, props: RouterApiKeysProps) -> None:
        super().__init__(scope, construct_id)
        self.role = api_keys_reader_role(self, props.deployment.workloads.router)
        # The router's mounts are made with this role's credentials (ASCP's usePodIdentity): the association must
        # exist before the first router pod.
        self.association = eks.CfnPodIdentityAssociation(
            self,
            "ApiKeysReaderIdentity",
            cluster_name=props.cluster.cluster_name,
            namespace=props.deployment.workloads.namespace,
            service_account=ROUTER,
            role_arn=self.role.role_arn,
        )


@dataclass(frozen=True)
class SecretsStoreProps:
    cluster: eks.ICluster
    # the system nodes' nodeSelector and tolerations (Deployment.system_placement)
    system_placement: dict[str, Any] = field(default_factory=lambda: dict(SYSTEM_PLACEMENT))


class SecretsStoreCharts(Construct):
    """The Secrets Store CSI driver and its AWS provider on the cluster, once for every unit whose routers read API
    keys (workloads.router.api_keys_secret). Exposes ``charts`` (driver, provider): a unit's prerequisites."""

    def __init__(self, scope: Construct, construct_id: str, *, props: SecretsStoreProps) -> None:
        super().__init__(scope, construct_id)
        cluster, placement = props.cluster, props.system_placement
        driver = self._chart(
            cluster, "SecretsStoreCsiDriver", SECRETS_STORE_CSI_DRIVER, secrets_store_csi_driver_values(placement)
        )
        provider = self._chart(
            cluster, "SecretsStoreProviderAws", SECRETS_STORE_PROVIDER_AWS, secrets_store_provider_aws_values(placement)
        )
        provider.node.add_dependency(driver)
        self.charts = (driver, provider)

    def _chart(self, cluster: eks.ICluster, construct_id: str, pin: HelmChartPin, values: dict) -> eks.HelmChart:
        return eks.HelmChart(
            self,
            construct_id,
            cluster=cluster,
            chart=pin.chart,
            repository=pin.repository,
            version=pin.version,
            namespace=pin.namespace,
            create_namespace=False,
            values=values,
            wait=True,
        )
