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
from constructs import Construct, IDependable

from infra.cluster.load_balancer_controller import LoadBalancerController, LoadBalancerControllerProps
from infra.config import Deployment
from infra.observability.stack import MetricsWorkspace
from infra.stack_outputs import WorkloadsOutputs
from infra.workload_names import CONFIG_FILE, CONFIG_MAP, ROUTER, labels, worker_name
from infra.workloads.autoscaling import Autoscaling, AutoscalingProps, ScaledObjects, ScaledObjectsProps
from infra.workloads.network_policies import network_policies
from infra.workloads.router_api_keys import RouterApiKeys, RouterApiKeysProps, SecretsStoreCharts, SecretsStoreProps
from infra.workloads.router_objects import router_objects
from infra.workloads.serving_config import rendered_serving
from infra.workloads.shared_charts import missing_shared_charts
from infra.workloads.worker_objects import worker_objects


@dataclass(frozen=True)
class WorkloadsProps:
    deployment: Deployment
    cluster: eks.ICluster
    image_uri: str
    leader_worker_set: IDependable  # the LWS chart: its CRD must exist before a LeaderWorkerSet is applied
    metrics_collector_cidrs: list[str]  # the managed collector's subnets (none when the pipeline is off)
    # the cluster's prerequisites (InferenceCluster/ImportedCluster.prerequisites): everything here waits for them
    cluster_prerequisites: Sequence[IDependable]
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
    """Every object, in apply order: of each serving unit in turn (the stack applies each unit's through its own
    manifest). ``metrics_collector_cidrs``: where the managed collector scrapes from (the network stack's
    ``collector_cidrs``; none renders policies that admit no collector). ``autoscaled``: ScaledObjects own the
    workers' replica counts."""
    if deployment.several_models:
        return [
            o
            for unit in deployment.units
            for o in serving_objects(deployment.for_unit(unit), image, metrics_collector_cidrs, autoscaled)
        ]
    return [
        *base_objects(deployment),
        *network_policies(deployment, metrics_collector_cidrs),
        *worker_objects(deployment, image, autoscaled),
        *router_objects(deployment, image),
    ]


@dataclass(frozen=True)
class ServingUnitProps:
    deployment: Deployment  # the unit's view (Deployment.for_unit)
    cluster: eks.ICluster
    image_uri: str
    metrics_collector_cidrs: list[str]
    # What the unit's objects must follow: the cluster's prerequisites (InferenceCluster/ImportedCluster
    # .prerequisites), the LWS chart, and the load balancer controller's and the secrets store's charts when the unit
    # uses them (LoadBalancerController, SecretsStoreCharts: refused without them, infra/workloads/shared_charts.py).
    prerequisites: Sequence[IDependable]
    keda: Autoscaling | None = None  # the cluster's KEDA when the unit autoscales


class ServingUnitWorkloads(Construct):
    """One model's workloads: its objects (one manifest), the Pod Identity roles its workers and routers read the
    model (and the routers their keys) with, and its ScaledObjects. Exposes ``deployment`` (the unit's view),
    ``objects``, ``manifest``, ``model_reader`` (or None), ``api_keys`` (or None), ``scaled_objects`` (or None),
    ``model_source``, ``model_kms_key_arn`` and ``api_keys_secret``."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ServingUnitProps) -> None:
        super().__init__(scope, construct_id)
        self.deployment = deployment = props.deployment
        workloads = deployment.workloads
        missing = missing_shared_charts(deployment, props.prerequisites)
        if missing:
            raise ValueError(f"{self.node.path}: " + "; ".join(missing))
        self.objects = serving_objects(
            deployment, props.image_uri, props.metrics_collector_cidrs, autoscaled=props.keda is not None
        )
        self.manifest = eks.KubernetesManifest(
            self,
            "Serving",
            cluster=props.cluster,
            manifest=self.objects,
            overwrite=True,
            prune=True,
        )
        for prerequisite in props.prerequisites:
            self.manifest.node.add_dependency(prerequisite)

        self.api_keys_secret = workloads.router.api_keys_secret
        self.api_keys: RouterApiKeys | None = None
        if self.api_keys_secret is not None:
            api_keys_props = RouterApiKeysProps(
                deployment=deployment,
                cluster=props.cluster,
            )
            self.api_keys = RouterApiKeys(self, "RouterApiKeys", props=api_keys_props)
            # the routers mount with the role's credentials
            self.manifest.node.add_dependency(self.api_keys.association)

        self.scaled_objects: ScaledObjects | None = None
        if props.keda is not None:
            self.scaled_objects = ScaledObjects(
                self,
                "Autoscaling",
                props=ScaledObjectsProps(
                    deployment=deployment,
                    cluster=props.cluster,
                    keda=props.keda,
                    scale_targets=self.manifest,
                ),
            )

        self.model_reader: iam.Role | None = None
        self.model_source = source = deployment.serving.model.source
        self.model_kms_key_arn = workloads.model_kms_key_arn
        if source.startswith("s3://"):
            self.model_reader = model_reader_role(self, source, workloads.model_kms_key_arn)
            readers = [worker_name("prefill"), worker_name("decode")]
            # EKS takes one Pod Identity association per service account: routers that mount their keys read the
            # model (its tokenizer) with their own role, which the workers do not get (it reads the keys).
            if self.api_keys is not None:
                grant_model_read(self.api_keys.role, source, workloads.model_kms_key_arn)
            else:
                readers.append(ROUTER)
            for account in readers:
                association = eks.CfnPodIdentityAssociation(
                    self,
                    f"ModelReader-{account}",
                    cluster_name=props.cluster.cluster_name,
                    namespace=workloads.namespace,
                    service_account=account,
                    role_arn=self.model_reader.role_arn,
                )
                # EKS injects Pod Identity credentials when a pod is created: the association must exist before
                # the first worker pod, or that pod runs with none (and falls back to the node role).
                self.manifest.node.add_dependency(association)
                # and it acts on the cluster: after the cluster's prerequisites (on an existing cluster, its check,
                # which refuses a namespace that already holds associations) even when one stack holds both
                for prerequisite in props.prerequisites:
                    association.node.add_dependency(prerequisite)

        cdk.CfnOutput(self, WorkloadsOutputs.NAMESPACE, value=workloads.namespace)
        cdk.CfnOutput(self, WorkloadsOutputs.ROUTER_SERVICE, value=f"{ROUTER}.{workloads.namespace}.svc")


@dataclass(frozen=True)
class ServingWorkloadsProps:
    deployment: Deployment  # the whole deployment: one serving unit per entry of ``deployment.units``
    cluster: eks.ICluster
    image_uri: str
    # What every unit's objects follow: the cluster's prerequisites (InferenceCluster/ImportedCluster.prerequisites)
    # and the LWS chart (``addons.leader_worker_set``, on a cluster whose platform runs LWS its check); KEDA's
    # Pod Identity association follows them too.
    prerequisites: Sequence[IDependable]
    metrics_collector_cidrs: list[str]  # the managed collector's subnets (none when the pipeline is off)
    # The metrics workspace KEDA queries (Observability.workspace); None: no autoscaling objects.
    metrics_workspace: MetricsWorkspace | None = None


class ServingWorkloads(Construct):
    """Every serving unit of a deployment, and what the cluster runs once for them all: the load balancer
    controller, the Secrets Store charts, KEDA (each where a unit needs it and ``cluster.addons`` says pdstack
    installs it). A one-model deployment's unit sits under the id "Default", which CDK leaves out of logical ids;
    a unit of ``models`` sits under its name. Exposes ``units``, ``objects`` (every unit's, in apply order),
    ``load_balancer_controller``, ``secrets_store`` and ``autoscaling`` (KEDA; each None when no unit needs it)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ServingWorkloadsProps) -> None:
        super().__init__(scope, construct_id)
        deployment = props.deployment
        views = [deployment.for_unit(unit) for unit in deployment.units]
        cluster = props.cluster
        # cluster.addons: what the platform runs already on an existing cluster; pdstack installs the rest
        platform = deployment.cluster.addons
        placement = deployment.system_placement

        # The router's internal NLB: the controller must run (and watch) before its Service is applied.
        self.load_balancer_controller: LoadBalancerController | None = None
        if (
            any(view.workloads.router.internal_load_balancer for view in views)
            and platform.load_balancer_controller == "pdstack"
        ):
            self.load_balancer_controller = LoadBalancerController(
                self,
                "LoadBalancerController",
                props=LoadBalancerControllerProps(
                    cluster=cluster,
                    vpc_id=cluster.vpc.vpc_id,
                    system_placement=placement,
                ),
            )
        # The SecretProviderClass CRD comes with the driver's chart.
        self.secrets_store: SecretsStoreCharts | None = None
        if (
            any(view.workloads.router.api_keys_secret is not None for view in views)
            and platform.secrets_store_csi_driver == "pdstack"
        ):
            self.secrets_store = SecretsStoreCharts(
                self, "RouterApiKeys", props=SecretsStoreProps(cluster=cluster, system_placement=placement)
            )
        self.autoscaling: Autoscaling | None = None
        if props.metrics_workspace is not None and any(view.autoscaled for view in views):
            self.autoscaling = Autoscaling(
                self,
                "Autoscaling",
                props=AutoscalingProps(
                    cluster=cluster,
                    workspace=props.metrics_workspace,
                    prerequisites=props.prerequisites,
                    system_placement=placement,
                    install=platform.keda == "pdstack",
                ),
            )

        self.units: list[ServingUnitWorkloads] = []
        for unit, view in zip(deployment.units, views, strict=True):
            router = view.workloads.router
            prerequisites: list[IDependable] = list(props.prerequisites)
            if router.internal_load_balancer and self.load_balancer_controller is not None:
                prerequisites.append(self.load_balancer_controller.chart)
            if router.api_keys_secret is not None and self.secrets_store is not None:
                prerequisites += self.secrets_store.charts
            self.units.append(
                ServingUnitWorkloads(
                    self,
                    "Default" if unit.name is None else unit.name,
                    props=ServingUnitProps(
                        deployment=view,
                        cluster=cluster,
                        image_uri=props.image_uri,
                        metrics_collector_cidrs=props.metrics_collector_cidrs,
                        prerequisites=prerequisites,
                        keda=self.autoscaling if view.autoscaled else None,
                    ),
                )
            )
        self.objects = [o for unit_workloads in self.units for o in unit_workloads.objects]


class WorkloadsStack(cdk.Stack):
    """The ServingWorkloads construct in a stack of its own (pdstack's app), as ``workloads``; id "Default" keeps the
    logical ids the stack gave its resources when it built them itself. Exposes what ServingWorkloads does, and for
    a one-model deployment ``manifest``, ``model_reader``, ``api_keys``, ``model_source``, ``model_kms_key_arn`` and
    ``api_keys_secret`` of its unit."""

    def __init__(self, scope: Construct, construct_id: str, *, props: WorkloadsProps, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.workloads = built = ServingWorkloads(
            self,
            "Default",
            props=ServingWorkloadsProps(
                deployment=props.deployment,
                cluster=props.cluster,
                image_uri=props.image_uri,
                prerequisites=[*props.cluster_prerequisites, props.leader_worker_set],
                metrics_collector_cidrs=props.metrics_collector_cidrs,
                metrics_workspace=props.metrics_workspace,
            ),
        )
        self.units, self.objects = built.units, built.objects
        self.load_balancer_controller, self.secrets_store = built.load_balancer_controller, built.secrets_store
        self.autoscaling = built.autoscaling

    @property
    def _only_unit(self) -> ServingUnitWorkloads:
        if len(self.units) != 1:
            raise ValueError("this deployment serves several models: read each unit's workloads (units)")
        return self.units[0]

    @property
    def manifest(self) -> eks.KubernetesManifest:
        return self._only_unit.manifest

    @property
    def model_reader(self) -> iam.Role | None:
        return self._only_unit.model_reader

    @property
    def api_keys(self) -> RouterApiKeys | None:
        return self._only_unit.api_keys

    @property
    def model_source(self) -> str:
        return self._only_unit.model_source

    @property
    def model_kms_key_arn(self) -> str | None:
        return self._only_unit.model_kms_key_arn

    @property
    def api_keys_secret(self) -> str | None:
        return self._only_unit.api_keys_secret


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
