"""Autoscaling: KEDA (pinned chart, on the system nodes), the keda-operator's Pod Identity role that may query the
metrics workspace and nothing else, once per cluster; and each serving unit's per-role ScaledObjects rendered in
``autoscaling_objects``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct, IDependable

from infra.cluster.addons import KEDA, KEDA_OPERATOR_SERVICE_ACCOUNT
from infra.cluster.system_placement import system_placement_for
from infra.config import Deployment
from infra.observability.stack import MetricsWorkspace
from infra.workloads.autoscaling_objects import PrometheusServer, autoscaling_objects


@dataclass(frozen=True)
class AutoscalingProps:
    cluster: eks.ICluster
    workspace: MetricsWorkspace  # the observability stack's: the collector writes there, KEDA queries it
    # the cluster's prerequisites (InferenceCluster/ImportedCluster.prerequisites): the operator's Pod Identity
    # association and the chart wait for them
    prerequisites: Sequence[IDependable]
    # the system nodes' nodeSelector and tolerations (Deployment.system_placement); None: the cluster construct's
    system_placement: dict | None = None
    # False where the platform runs KEDA (cluster.addons.keda): in the chart's namespace as its operator account,
    # which still gets the workspace-query role through Pod Identity
    install: bool = True


class Autoscaling(Construct):
    """KEDA on the cluster. Exposes ``chart`` (None where the platform runs KEDA), ``operator_role`` and ``server``
    (what the ScaledObjects query)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: AutoscalingProps) -> None:
        super().__init__(scope, construct_id)
        cluster = props.cluster
        self.operator_role = iam.Role(
            self,
            "KedaOperatorRole",
            assumed_by=iam.ServicePrincipal("pods.eks.amazonaws.com").with_session_tags(),
            description="KEDA operator: run PromQL queries on the pdstack metrics workspace, nothing else",
        )
        # The prometheus scaler calls the query API (GET /api/v1/query): the workspace's read grant, on it alone. No
        # kms:Decrypt on the workspace's customer managed key: the AWS documentation asks for KMS grants only for the
        # principals of a workspace resource policy (AWS::APS::ResourcePolicy, CloudFormation reference); that a
        # same-account query needs nothing more is to be confirmed on a real account (README, Autoscaling).
        props.workspace.grant_query(self.operator_role)
        identity = eks.CfnPodIdentityAssociation(
            self,
            "KedaOperatorIdentity",
            cluster_name=cluster.cluster_name,
            namespace=KEDA.namespace,
            service_account=KEDA_OPERATOR_SERVICE_ACCOUNT,
            role_arn=self.operator_role.role_arn,
        )
        identity.node.add_dependency(*props.prerequisites)
        self.chart: eks.HelmChart | None = None
        if props.install:
            self.chart = self._install(props, identity)
        server = f"https://aps-workspaces.{cdk.Aws.REGION}.amazonaws.com/workspaces/{props.workspace.workspace_id}"
        self.server = PrometheusServer(server_address=server, region=cdk.Aws.REGION)

    def _install(self, props: AutoscalingProps, identity: Construct) -> eks.HelmChart:
        chart = eks.HelmChart(
            self,
            "Keda",
            cluster=props.cluster,
            chart=KEDA.chart,
            repository=KEDA.repository,
            version=KEDA.version,
            namespace=KEDA.namespace,
            create_namespace=True,
            wait=True,
            # The operator, metrics server and webhooks have no GPU work: the system nodes hold them.
            values=system_placement_for(props.cluster, props.system_placement, "AutoscalingProps.system_placement"),
        )
        # Pod Identity injects credentials when a pod is created: the association must exist before the operator.
        chart.node.add_dependency(identity)
        return chart


@dataclass(frozen=True)
class ScaledObjectsProps:
    deployment: Deployment  # one serving unit's view (Deployment.for_unit)
    cluster: eks.ICluster
    keda: Autoscaling
    scale_targets: Construct  # the manifest with the Deployments / LeaderWorkerSets the ScaledObjects scale


class ScaledObjects(Construct):
    """One serving unit's ScaledObjects and their TriggerAuthentication. Exposes ``objects`` and ``manifest``."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ScaledObjectsProps) -> None:
        super().__init__(scope, construct_id)
        self.objects = autoscaling_objects(props.deployment, props.keda.server)
        self.manifest = eks.KubernetesManifest(
            self, "ScaledObjects", cluster=props.cluster, manifest=self.objects, overwrite=True, prune=True
        )
        if props.keda.chart is not None:
            self.manifest.node.add_dependency(props.keda.chart)  # the CRDs come with the chart
        self.manifest.node.add_dependency(props.scale_targets)
