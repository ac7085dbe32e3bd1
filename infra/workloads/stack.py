"""WorkloadsStack: the serving workloads on the cluster, rendered from the same deployment file the runtime reads.

Kubernetes objects are typed-by-schema dicts built in ``worker_objects`` and ``router_objects`` (validated in the
tests against the Kubernetes 1.34 JSON schemas), applied through the cluster's kubectl provider. The workers read
the model bucket through EKS Pod Identity with a role that can read that bucket prefix and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
import yaml
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.cluster.load_balancer_controller import LoadBalancerController, LoadBalancerControllerProps
from infra.config import Deployment
from infra.observability.stack import MetricsWorkspace
from infra.stack_outputs import WorkloadsOutputs
from infra.workload_names import CONFIG_FILE, CONFIG_MAP, ROUTER, labels, worker_name
from infra.workloads.autoscaling import Autoscaling, AutoscalingProps
from infra.workloads.network_policies import network_policies
from infra.workloads.router_api_keys import RouterApiKeys, RouterApiKeysProps
from infra.workloads.router_objects import router_objects
from infra.workloads.serving_config import rendered_serving
from infra.workloads.worker_objects import worker_objects


@dataclass(frozen=True)
class WorkloadsProps:
    deployment: Deployment
    cluster: eks.Cluster
    image_uri: str
    leader_worker_set: Construct  # the LWS chart: its CRD must exist before a LeaderWorkerSet is applied
    metrics_collector_cidrs: list[str]  # the managed collector's subnets (none when the pipeline is off)
    # The metrics workspace KEDA queries (the observability stack's); None: no autoscaling objects.
    metrics_workspace: MetricsWorkspace | None = None


def base_objects(deployment: Deployment) -> list[dict[str, Any]]:
    """Namespace, the serving ConfigMap and one ServiceAccount per role."""
    namespace = deployment.workloads.namespace
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": labels(deployment.name, "namespace")},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": CONFIG_MAP, "namespace": namespace, "labels": labels(deployment.name, "config")},
            "data": {CONFIG_FILE: yaml.safe_dump(rendered_serving(deployment), sort_keys=True)},
        },
    ]
    for account, component in (
        (worker_name("prefill"), "prefill"),
        (worker_name("decode"), "decode"),
        (ROUTER, "router"),
    ):
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": account, "namespace": namespace, "labels": labels(deployment.name, component)},
            }
        )
    return objects


def serving_objects(
    deployment: Deployment, image: str, metrics_collector_cidrs: Sequence[str] = (), autoscaled: bool = False
) -> list[dict[str, Any]]:
    """Every object, in apply order. ``metrics_collector_cidrs``: where the managed collector scrapes from (the
    network stack's ``collector_cidrs``; none renders policies that admit no collector). ``autoscaled``:
    ScaledObjects own the workers' replica counts."""
    return [
        *base_objects(deployment),
        *network_policies(deployment, metrics_collector_cidrs),
        *worker_objects(deployment, image, autoscaled),
        *router_objects(deployment, image),
    ]


class WorkloadsStack(cdk.Stack):
    """Exposes ``objects`` (what is applied), ``manifest``, ``model_reader`` (the Pod Identity role, or None),
    ``api_keys`` (the routers' keys from Secrets Manager, or None) and ``autoscaling`` (KEDA and the ScaledObjects,
    or None)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: WorkloadsProps, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        deployment = props.deployment
        autoscaled = deployment.autoscaled and props.metrics_workspace is not None
        self.objects = serving_objects(deployment, props.image_uri, props.metrics_collector_cidrs, autoscaled)
        self.manifest = eks.KubernetesManifest(
            self,
            "Serving",
            cluster=props.cluster,  # type: ignore[arg-type]  # jsii stub gap, see pyproject.toml
            manifest=self.objects,
            overwrite=True,
            prune=True,
        )
        self.manifest.node.add_dependency(props.leader_worker_set)

        # The router's internal NLB: the controller must run (and watch) before its Service is applied.
        self.load_balancer_controller: LoadBalancerController | None = None
        if deployment.workloads.router.internal_load_balancer:
            self.load_balancer_controller = LoadBalancerController(
                self,
                "LoadBalancerController",
                props=LoadBalancerControllerProps(
                    cluster=props.cluster,  # type: ignore[arg-type]  # jsii stub gap, see pyproject.toml
                    vpc_id=props.cluster.vpc.vpc_id,
                ),
            )
            self.manifest.node.add_dependency(self.load_balancer_controller.chart)

        self.api_keys_secret = deployment.workloads.router.api_keys_secret
        self.api_keys: RouterApiKeys | None = None
        if deployment.workloads.router.api_keys_secret is not None:
            api_keys_props = RouterApiKeysProps(
                deployment=deployment,
                cluster=props.cluster,  # type: ignore[arg-type]  # jsii stub gap, see pyproject.toml
            )
            self.api_keys = RouterApiKeys(self, "RouterApiKeys", props=api_keys_props)
            # the SecretProviderClass CRD comes with the driver's chart; the routers mount with the role's credentials
            for dependency in (*self.api_keys.charts, self.api_keys.association):
                self.manifest.node.add_dependency(dependency)

        self.autoscaling: Autoscaling | None = None
        if autoscaled:
            assert props.metrics_workspace is not None
            self.autoscaling = Autoscaling(
                self,
                "Autoscaling",
                props=AutoscalingProps(
                    deployment=deployment,
                    cluster=props.cluster,  # type: ignore[arg-type]  # jsii stub gap, see pyproject.toml
                    workspace=props.metrics_workspace,
                    scale_targets=self.manifest,
                ),
            )

        self.model_reader: iam.Role | None = None
        self.model_source = source = deployment.serving.model.source
        self.model_kms_key_arn = deployment.workloads.model_kms_key_arn
        if source.startswith("s3://"):
            self.model_reader = model_reader_role(self, source, deployment.workloads.model_kms_key_arn)
            readers = [worker_name("prefill"), worker_name("decode")]
            # EKS takes one Pod Identity association per service account: routers that mount their keys read the
            # model (its tokenizer) with their own role, which the workers do not get (it reads the keys).
            if self.api_keys is not None:
                grant_model_read(self.api_keys.role, source, deployment.workloads.model_kms_key_arn)
            else:
                readers.append(ROUTER)
            for account in readers:
                association = eks.CfnPodIdentityAssociation(
                    self,
                    f"ModelReader-{account}",
                    cluster_name=props.cluster.cluster_name,
                    namespace=deployment.workloads.namespace,
                    service_account=account,
                    role_arn=self.model_reader.role_arn,
                )
                # EKS injects Pod Identity credentials when a pod is created: the association must exist before
                # the first worker pod, or that pod runs with none (and falls back to the node role).
                self.manifest.node.add_dependency(association)

        cdk.CfnOutput(self, WorkloadsOutputs.NAMESPACE, value=deployment.workloads.namespace)
        cdk.CfnOutput(self, WorkloadsOutputs.ROUTER_SERVICE, value=f"{ROUTER}.{deployment.workloads.namespace}.svc")


def model_reader_role(scope: Construct, source: str, kms_key_arn: str | None) -> iam.Role:
    """The role the workers and routers read an s3:// model with: its objects, its listing, and decryption."""
    bucket, _, prefix = source.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    role = iam.Role(
        scope,
        "ModelReader",
        assumed_by=iam.ServicePrincipal("pods.eks.amazonaws.com").with_session_tags(),
        description=f"pdstack workers: read the model under s3://{bucket}/{prefix} and nothing else",
    )
    grant_model_read(role, source, kms_key_arn)
    return role


def grant_model_read(role: iam.Role, source: str, kms_key_arn: str | None) -> None:
    """Let ``role`` read the s3:// model: its objects, its listing, and decryption."""
    bucket, _, prefix = source.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    objects = f"arn:{cdk.Aws.PARTITION}:s3:::{bucket}/{prefix + '/' if prefix else ''}*"
    role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[objects]))
    listing = iam.PolicyStatement(actions=["s3:ListBucket"], resources=[f"arn:{cdk.Aws.PARTITION}:s3:::{bucket}"])
    if prefix:
        listing.add_condition("StringLike", {"s3:prefix": [prefix, f"{prefix}/*"]})
    role.add_to_policy(listing)
    # A bucket under SSE-KMS: S3 decrypts each object with the reader's own kms:Decrypt (S3 user guide, "Using
    # server-side encryption with AWS KMS keys": GetObject needs kms:Decrypt on the key). Through S3 only, and
    # only in this bucket's encryption context (the object's ARN, or the bucket's with S3 Bucket Keys).
    bucket_arn = f"arn:{cdk.Aws.PARTITION}:s3:::{bucket}"
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["kms:Decrypt"],
            resources=[kms_key_arn or "*"],
            conditions={
                "StringEquals": {"kms:ViaService": f"s3.{cdk.Aws.REGION}.amazonaws.com"},
                "StringLike": {"kms:EncryptionContext:aws:s3:arn": [bucket_arn, f"{bucket_arn}/*"]},
            },
        )
    )
