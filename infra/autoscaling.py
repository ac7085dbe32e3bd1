"""Autoscaling: KEDA (pinned chart, on the system nodes), the keda-operator's Pod Identity role that may query the
metrics workspace and nothing else, and the per-role ScaledObjects rendered in ``autoscaling_objects``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import aws_cdk as cdk
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.addons import KEDA, KEDA_OPERATOR_SERVICE_ACCOUNT, SYSTEM_NODE_LABELS
from infra.autoscaling_objects import MetricsWorkspace, autoscaling_objects
from infra.config import Deployment


class MetricsWorkspaceRef(Protocol):
    """The Amazon Managed Service for Prometheus workspace the collector writes to (the observability stack's
    ``MetricsWorkspace`` construct): its ARN (for IAM) and id (for the query URL)."""

    @property
    def arn(self) -> str: ...

    @property
    def workspace_id(self) -> str: ...


@dataclass(frozen=True)
class AutoscalingProps:
    deployment: Deployment
    cluster: eks.ICluster
    workspace: MetricsWorkspaceRef
    scale_targets: Construct  # the manifest with the Deployments / LeaderWorkerSets the ScaledObjects scale


class Autoscaling(Construct):
    """Exposes ``chart``, ``operator_role``, ``objects`` (the ScaledObjects and their TriggerAuthentication)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: AutoscalingProps) -> None:
        super().__init__(scope, construct_id)
        cluster = props.cluster
        self.operator_role = iam.Role(
            self, "KedaOperatorRole",
            assumed_by=iam.ServicePrincipal("pods.eks.amazonaws.com").with_session_tags(),
            description="KEDA operator: run PromQL queries on the pdstack metrics workspace, nothing else",
        )
        # The prometheus scaler calls only the query API (GET /api/v1/query): aps:QueryMetrics on this workspace.
        self.operator_role.add_to_policy(iam.PolicyStatement(actions=["aps:QueryMetrics"],
                                                             resources=[props.workspace.arn]))
        identity = eks.CfnPodIdentityAssociation(
            self, "KedaOperatorIdentity", cluster_name=cluster.cluster_name, namespace=KEDA.namespace,
            service_account=KEDA_OPERATOR_SERVICE_ACCOUNT, role_arn=self.operator_role.role_arn,
        )
        self.chart = eks.HelmChart(
            self, "Keda", cluster=cluster, chart=KEDA.chart, repository=KEDA.repository, version=KEDA.version,
            namespace=KEDA.namespace, create_namespace=True, wait=True,
            # The operator, metrics server and webhooks have no GPU work: the system node group holds them.
            values={"nodeSelector": SYSTEM_NODE_LABELS},
        )
        # Pod Identity injects credentials when a pod is created: the association must exist before the operator.
        self.chart.node.add_dependency(identity)
        query_url = f"https://aps-workspaces.{cdk.Aws.REGION}.amazonaws.com/workspaces/{props.workspace.workspace_id}"
        self.objects = autoscaling_objects(props.deployment, MetricsWorkspace(query_url=query_url,
                                                                              region=cdk.Aws.REGION))
        self.manifest = eks.KubernetesManifest(self, "ScaledObjects", cluster=cluster, manifest=self.objects,
                                               overwrite=True, prune=True)
        self.manifest.node.add_dependency(self.chart)  # the CRDs come with the chart
        self.manifest.node.add_dependency(props.scale_targets)
