"""The deployment file (deployments/<name>.yaml), typed: one strict pydantic model that drives every stack.

Bad input never reaches CDK: ``load_deployment`` raises ``DeploymentError`` whose message names the field, the value
and what would be valid. The ``serving`` section's schema belongs to ``runtime.config``; it is validated here too,
and cross-checked against the GPU node groups.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from infra.kubernetes_versions import DEFAULT_KUBERNETES_VERSION, SUPPORTED_KUBERNETES_VERSIONS
from infra.node_capacity import capacity_problems
from infra.workload_names import EPHEMERAL_PORTS, GPU_TAINT_KEY
from runtime import engine_pin
from runtime.catalog import INSTANCE_CATALOG
from runtime.config import Serving
from runtime.router.contract import LATENCY_BUCKETS


_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_RESERVATION_ID = re.compile(r"^cr-[0-9a-f]{17}$")
# An AZ id: region code and zone number (use1-az4, apne1-az1), with a Local Zone part where there is one (use1-bos1-az1).
_AZ_ID = re.compile(r"^[a-z]{3,6}[0-9]+(-[a-z]+[0-9]+)?-az[0-9]+$")
_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
_K8S_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_PTC_SECRET = re.compile(r"^arn:aws[a-zA-Z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:ecr-pullthroughcache/.+$")
_NAME = r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$"


class DeploymentError(Exception):
    """A deployment file that cannot be used; the message is meant for the person who wrote it."""


def _check_label_keys(labels: dict[str, str]) -> dict[str, str]:
    for key in labels:
        if not _K8S_LABEL_KEY.match(key):
            raise ValueError(f"label key {key!r} is not a valid Kubernetes label key (prefix/name, 63 characters)")
    return labels


def _check_cidrs(cidrs: list[str], example: str, whole_internet: str) -> list[str]:
    """Each entry a network address in CIDR form (host bits zero), none of them the whole address space."""
    for cidr in cidrs:
        try:
            net = ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            raise ValueError(f"{cidr!r} is not a CIDR block such as {example}") from None
        if net.prefixlen == 0:
            raise ValueError(f"{cidr!r} {whole_internet}; name your networks")
    return cidrs


def _check_unique(field: str, names: list[str]) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{field} names must be unique; repeated: {', '.join(repeated)}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ClusterConfig(_Strict):
    name: str = Field(default="pdstack", pattern=_NAME)
    # infra/kubernetes_versions.py: every version there has its kubectl layer, add-ons and autoscaler pinned. SageMaker
    # HyperPod's EKS orchestrator accepts 1.30-1.35.
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
    endpoint_access: Literal["private", "public", "public-and-private"] = "private"
    public_access_cidrs: list[str] = Field(default_factory=list)
    admin_principal_arns: list[str] = Field(default_factory=list)
    system_instance_type: str = "m7i.xlarge"
    system_node_count: int = Field(default=2, ge=1, le=10)

    @field_validator("kubernetes_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        if value not in SUPPORTED_KUBERNETES_VERSIONS:
            raise ValueError(f"must be one of {', '.join(SUPPORTED_KUBERNETES_VERSIONS)}")
        return value

    @field_validator("public_access_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return _check_cidrs(value, "203.0.113.0/24", "opens the API server to the whole internet")

    @field_validator("admin_principal_arns")
    @classmethod
    def _arns(cls, value: list[str]) -> list[str]:
        for arn in value:
            if not _ARN.match(arn):
                raise ValueError(f"{arn!r} is not an IAM role or user ARN (arn:aws:iam::123456789012:role/NAME)")
        return value

    @model_validator(mode="after")
    def _public_needs_cidrs(self) -> ClusterConfig:
        if self.endpoint_access != "private" and not self.public_access_cidrs:
            raise ValueError(
                f"endpoint_access={self.endpoint_access!r} needs public_access_cidrs (the networks allowed to reach "
                "the API server); use endpoint_access: private to keep the endpoint inside the VPC"
            )
        if self.endpoint_access == "private" and self.public_access_cidrs:
            raise ValueError("public_access_cidrs is set but endpoint_access is 'private'; the CIDRs would be ignored")
        return self


class NetworkConfig(_Strict):
    cidr: str = "10.0.0.0/16"
    az_count: int = Field(default=2, ge=2, le=6)
    availability_zones: list[str] = Field(default_factory=list)
    gpu_az_index: int = Field(default=0, ge=0)
    # The GPU zone's AZ id (use1-az4): zone names map to different physical zones in each account, ids do not.
    # Required for on-demand GPU capacity; the GPU stacks check it at deploy time (infra/gpu_zone_check.py).
    gpu_az_id: str | None = None
    nat_gateways: int = Field(default=1, ge=1, le=6)

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            net = ipaddress.ip_network(value, strict=True)
        except ValueError:
            raise ValueError(f"{value!r} is not a CIDR block such as 10.0.0.0/16") from None
        if not 16 <= net.prefixlen <= 20:
            raise ValueError(f"{value!r}: the VPC needs a /16 to /20 block to hold pod IPs on GPU nodes")
        return value

    @field_validator("gpu_az_id")
    @classmethod
    def _az_id(cls, value: str | None) -> str | None:
        if value is not None and not _AZ_ID.match(value):
            raise ValueError(f"{value!r} is not an availability zone id such as use1-az4 (aws ec2 "
                             "describe-availability-zones --query 'AvailabilityZones[].[ZoneName,ZoneId]')")
        return value

    @model_validator(mode="after")
    def _zones(self) -> NetworkConfig:
        if self.availability_zones and len(self.availability_zones) != self.az_count:
            raise ValueError(
                f"availability_zones lists {len(self.availability_zones)} zones but az_count is {self.az_count}"
            )
        if self.gpu_az_index >= self.az_count:
            raise ValueError(
                f"gpu_az_index={self.gpu_az_index} is outside the VPC's {self.az_count} availability zones "
                f"(valid: 0..{self.az_count - 1})"
            )
        if self.nat_gateways > self.az_count:
            raise ValueError(f"nat_gateways={self.nat_gateways} exceeds az_count={self.az_count}")
        return self


class OnDemand(_Strict):
    type: Literal["on-demand"]


class CapacityBlock(_Strict):
    """An EC2 Capacity Block for ML: the node group runs inside the reserved block."""

    type: Literal["capacity-block"]
    reservation_id: str | None = None

    @model_validator(mode="after")
    def _needs_id(self) -> CapacityBlock:
        if self.reservation_id is None:
            raise ValueError("a capacity block needs reservation_id (cr- followed by 17 hex digits)")
        if not _RESERVATION_ID.match(self.reservation_id):
            raise ValueError(f"reservation_id={self.reservation_id!r} is not a capacity reservation id (cr-0123456789abcdef0)")
        return self


class CapacityReservation(_Strict):
    """An On-Demand Capacity Reservation (ODCR) the node group targets."""

    type: Literal["capacity-reservation"]
    reservation_id: str

    @field_validator("reservation_id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _RESERVATION_ID.match(value):
            raise ValueError(f"{value!r} is not a capacity reservation id (cr-0123456789abcdef0)")
        return value


Capacity = Annotated[OnDemand | CapacityBlock | CapacityReservation, Field(discriminator="type")]


class Taint(_Strict):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


GPU_TAINT = Taint(key=GPU_TAINT_KEY, value="true", effect="NoSchedule")


class GpuNodeGroupConfig(_Strict):
    name: str = Field(pattern=_NAME)
    instance_type: str
    min_size: int = Field(default=0, ge=0)
    desired_size: int = Field(default=1, ge=0)
    max_size: int = Field(default=1, ge=1)
    capacity: Capacity = OnDemand(type="on-demand")
    placement_group: bool = True
    root_volume_gib: int = Field(default=500, ge=100, le=16384)
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=lambda: [GPU_TAINT])

    @field_validator("instance_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in INSTANCE_CATALOG:
            raise ValueError(f"unknown instance type {value!r}; known: {', '.join(sorted(INSTANCE_CATALOG))}")
        return value

    @field_validator("labels")
    @classmethod
    def _label_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_label_keys(value)

    @model_validator(mode="after")
    def _sizes_and_capacity(self) -> GpuNodeGroupConfig:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(
                f"sizes must satisfy min_size <= desired_size <= max_size; got "
                f"min_size={self.min_size}, desired_size={self.desired_size}, max_size={self.max_size}"
            )
        if isinstance(self.capacity, CapacityBlock) and self.placement_group:
            raise ValueError(
                "placement_group=true cannot be combined with capacity type 'capacity-block': the block's placement "
                "is fixed when it is reserved, and forcing a placement group causes insufficient-capacity failures; "
                "set placement_group: false"
            )
        if isinstance(self.capacity, CapacityReservation) and self.placement_group:
            raise ValueError(
                "placement_group=true cannot be combined with capacity type 'capacity-reservation': the stack creates "
                "a new cluster placement group, and instances launched into it cannot use a reservation made outside "
                "that group; set placement_group: false"
            )
        return self


class HyperPodInstanceGroup(_Strict):
    """One SageMaker HyperPod instance group of GPU nodes (the ``ml.*`` type comes from the catalog)."""

    name: str = Field(pattern=_NAME)
    instance_type: str
    count: int = Field(ge=1, le=256)
    threads_per_core: Literal[1, 2] = 1
    ebs_volume_gib: int = Field(default=500, ge=1, le=16384)
    deep_health_checks: list[Literal["InstanceStress", "InstanceConnectivity"]] = Field(
        default_factory=lambda: ["InstanceStress", "InstanceConnectivity"]
    )
    training_plan_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:training-plan/[a-zA-Z0-9-]+$"
    )
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=lambda: [GPU_TAINT])

    @field_validator("instance_type")
    @classmethod
    def _offered(cls, value: str) -> str:
        spec = INSTANCE_CATALOG.get(value)
        if spec is None or spec.hyperpod_name is None:
            offered = sorted(n for n, s in INSTANCE_CATALOG.items() if s.hyperpod_name)
            raise ValueError(f"{value!r} is not an instance type pdstack runs on HyperPod; known: {', '.join(offered)}")
        return value

    @field_validator("labels")
    @classmethod
    def _label_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_label_keys(value)


class HyperPodConfig(_Strict):
    """A SageMaker HyperPod cluster (EKS orchestrator) as the home of the GPU nodes."""

    # At most 22 characters: the lifecycle bucket is sagemaker-<cluster_name>-<account>-<region> (63 at most).
    cluster_name: str = Field(default="pdstack-hyperpod", pattern=_NAME, max_length=22)
    node_recovery: Literal["Automatic", "None"] = "Automatic"
    instance_groups: list[HyperPodInstanceGroup] = Field(min_length=1)
    node_autoscaling: bool = Field(
        default=False,
        description="HyperPod's managed Karpenter: groups start empty and follow pending pods up to their count")

    @model_validator(mode="after")
    def _unique(self) -> HyperPodConfig:
        _check_unique("instance_groups", [g.name for g in self.instance_groups])
        if self.node_autoscaling:
            for index, group in enumerate(self.instance_groups):
                # HyperPod's Karpenter autoscaling supports neither (SageMaker developer guide, "Create a NodeClass")
                if group.deep_health_checks:
                    raise ValueError(
                        f"node_autoscaling needs instance_groups.{index}.deep_health_checks: [] (HyperPod autoscaling "
                        "does not support deep health checks: they hold new nodes for 60-90 minutes)")
                if group.training_plan_arn is not None:
                    raise ValueError(f"node_autoscaling supports on-demand capacity only; instance_groups.{index} "
                                     "has a training_plan_arn")
        return self


# A Secrets Manager secret by full ARN (Secrets Manager appends a hyphen and six characters to the name) or by name
# (Secrets Manager API reference, CreateSecret Name: 1-512 of letters, digits and /_+=.@-).
_SECRET_ARN = r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}"
_SECRET_NAME = r"[A-Za-z0-9/_+=.@-]{1,512}"
_KMS_KEY_ARN = r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]{36}$"


class RouterWorkload(_Strict):
    replicas: int = Field(default=2, ge=1, le=20)
    internal_load_balancer: bool = Field(default=False, description="an internal NLB (AWS Load Balancer Controller, "
                                         "IP targets, TLS on 443) in front of the routers")
    # The ACM certificate of the NLB's TLS listener: required when internal_load_balancer is on (no plain-text listener).
    certificate_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$")
    cpu: str = "2"
    memory: str = "4Gi"
    # Who may open the router's port (its NetworkPolicy): required (the deployment check refuses None), so that
    # nobody exposes the OpenAI API to the whole VPC (every pod of every team) without having said so.
    allowed_client_cidrs: list[str] | None = Field(default=None, min_length=1)
    # Who else may scrape its /metrics (serving.router.metrics_port), beside the managed collector's subnets, which
    # the policy admits whenever the observability pipeline is on: e.g. a Prometheus outside the VPC. None: nobody.
    metrics_scraper_cidrs: list[str] | None = Field(default=None, min_length=1)

    # API-key authentication in the cluster: the AWS Secrets Manager secret (its name, or its full ARN with the
    # six-character suffix Secrets Manager appends) whose value holds the keys, one per line. The router pods mount it
    # read-only through the Secrets Store CSI driver and its AWS provider; serving.router.api_keys_path is rendered
    # to the mount. None: no authentication.
    api_keys_secret: str | None = None
    # The customer managed KMS key the secret is encrypted with, if any: the routers may decrypt with it through
    # Secrets Manager only. None: the secret uses the AWS managed key aws/secretsmanager (no grant needed).
    api_keys_kms_key_arn: str | None = Field(default=None, pattern=_KMS_KEY_ARN)

    @field_validator("api_keys_secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is None or re.fullmatch(_SECRET_ARN, value):
            return value
        if value.startswith("arn:"):
            raise ValueError(f"{value!r} is not a whole Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:"
                             "<account>:secret:<name>-<6 characters>); give the full ARN, or the secret's name")
        if not re.fullmatch(_SECRET_NAME, value):
            raise ValueError(f"{value!r} is not a Secrets Manager secret name (1-512 of letters, digits and /_+=.@-)")
        return value

    @field_validator("allowed_client_cidrs", "metrics_scraper_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_cidrs(value, "10.20.0.0/16", "lets every address reach the router")
    prestop_s: int = Field(default=5, ge=0, le=60, description="a stopping pod keeps serving this long before its "
                           "SIGTERM, while kube-proxy and load balancers drop it from their endpoints")
    termination_grace_s: int = Field(default=60, ge=1, le=3600, description="the pod's terminationGracePeriodSeconds; "
                                     "prestop_s plus serving.router.shutdown_grace_s must fit below it")


class WorkloadsConfig(_Strict):
    """How the serving workloads are laid on the cluster (the serving section says what they run)."""

    namespace: str = Field(default="pdstack", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    router: RouterWorkload = RouterWorkload()
    shm_gib: int = Field(default=20, ge=1, le=512, description="memory-backed /dev/shm of each worker pod")
    hugepages_2mi: str = Field(default="5120Mi", pattern=r"^\d+(Mi|Gi)$", description="EFA pre-allocates these")
    startup_minutes: int = Field(default=40, ge=5, le=240, description="how long a worker may take to load the model")
    # Networks admitted to the engines' HTTP port (vLLM serves /metrics there, next to the OpenAI API) beside the
    # managed collector's own subnets (admitted whenever the observability pipeline is on): for a scraper outside
    # the VPC. A CIDR of the pods' subnets would open the engines' API to every pod there; name it knowingly.
    engine_metrics_scraper_cidrs: list[str] = Field(default_factory=list)
    # An s3:// model under SSE-KMS: the readers may decrypt with this key only. None: with any key, but only through
    # S3 and only for objects of the model's bucket (kms:ViaService and the aws:s3:arn encryption context).
    model_kms_key_arn: str | None = Field(default=None, pattern=_KMS_KEY_ARN)

    @field_validator("engine_metrics_scraper_cidrs")
    @classmethod
    def _scraper_cidrs(cls, value: list[str]) -> list[str]:
        return _check_cidrs(value, "10.0.64.0/19", "lets every address reach the engines")


class ServiceLevelObjectives(_Strict):
    """What the platform promises its users. The autoscaling targets and the SLO alerts are both derived from it."""

    ttft_seconds: float = Field(default=2.0, gt=0, description="time to first token a request should meet")
    itl_seconds: float = Field(default=0.1, gt=0, description="inter-token latency a request should meet")
    objective: float = Field(default=0.99, gt=0, lt=1, description="share of requests meeting both, over 30 days")

    @field_validator("ttft_seconds")
    @classmethod
    def _a_ttft_bucket(cls, value: float) -> float:
        # The burn-rate alert counts requests under the objective from the router's TTFT histogram: it must be a bound.
        if value not in LATENCY_BUCKETS:
            raise ValueError(f"must be a bucket bound of the router's TTFT histogram: {', '.join(map(str, LATENCY_BUCKETS))}")
        return value


class ObservabilityConfig(_Strict):
    """The metrics pipeline: an Amazon Managed Service for Prometheus workspace, the AWS managed collector scraping
    the router and every engine pod, and pdstack's alert rules loaded into the workspace."""

    enabled: bool = True
    # The managed collector accepts no scrape interval below 30 s (Amazon Managed Service for Prometheus user guide,
    # "Scraper configuration", limitations).
    scrape_interval_seconds: int = Field(default=30, ge=30, le=300)
    retention_days: int = Field(default=150, ge=1, le=1095, description="how long the workspace keeps samples")
    # The workspace's samples at rest: false, an AWS owned key (no cost, nothing to manage, no audit of its use);
    # true, a customer managed KMS key of the stack's (audit and revoke it yourself, KMS charges). Earlier editions of
    # the Amazon Managed Service for Prometheus user guide said an AWS managed collector cannot write to a workspace
    # under a customer managed key; the current "Encryption at rest" page no longer says so, unverified here: turn it on
    # only after checking that the collector writes (`python -m infra status` shows the scraper and the samples). The
    # choice is fixed at creation: a workspace cannot move between the two ("Encryption at rest": "can't be converted").
    customer_managed_key: bool = False
    fallback_ratio_threshold: float = Field(default=0.05, gt=0, lt=1,
                                            description="alert when this share of requests falls back decode-only")
    kv_usage_threshold: float = Field(default=0.95, gt=0, le=1, description="alert when an engine's KV cache is this full")


class PrefillScaling(_Strict):
    min_replicas: int = Field(default=0, ge=0, description="0: prefill may scale to zero (decode-only meanwhile)")
    max_replicas: int | None = Field(default=None, ge=1, description="None: the role's serving replicas")


class DecodeScaling(_Strict):
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int | None = Field(default=None, ge=1, description="None: the role's serving replicas")


class AutoscalingConfig(_Strict):
    """One KEDA ScaledObject per role over the metrics workspace (README: Autoscaling). Prefill may scale to zero
    (the router serves decode-only meanwhile); decode keeps at least one replica. Targets come from ``slo``."""

    enabled: bool | None = Field(default=None, description="None: on exactly when observability is (its workspace "
                                                           "holds the signals)")
    prefill: PrefillScaling = PrefillScaling()
    decode: DecodeScaling = DecodeScaling()
    polling_interval_s: int = Field(default=15, ge=5, le=300, description="how often KEDA queries the signals")
    prefill_ttft_share: float = Field(
        default=0.5, gt=0, le=1,
        description="share of slo.ttft_seconds a prompt may spend in the prefill backlog; the rest is its own "
                    "prefill, the KV transfer and the first decode step")
    decode_kv_usage: float = Field(default=0.8, gt=0, lt=1, description="KV cache usage per decode replica to hold")

    @model_validator(mode="after")
    def _decode_stays(self) -> AutoscalingConfig:
        if self.decode.min_replicas < 1:
            raise ValueError("decode.min_replicas must be at least 1: every request needs a decode engine "
                             "(prefill may scale to zero; the router then serves decode-only)")
        return self


_ECR_NAME = r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$"


class PullThroughCache(_Strict):
    """An ECR pull-through cache rule for ghcr.io, so CodeBuild pulls the base image through the account's ECR.

    A rule's repository prefix is unique per account and region (CreatePullThroughCacheRule fails with
    PullThroughCacheRuleAlreadyExistsException): each deployment gets its own (``<deployment>-ghcr`` unless
    ``repository_prefix`` names one), or adopts an existing rule (``create_rule: false`` with that rule's prefix)."""

    enabled: bool = False
    # A Secrets Manager secret holding a GitHub user name and token; ECR only reads secrets so prefixed.
    credential_secret_arn: str | None = None
    # ECR: 2-30 characters, lower-case letters, digits, . _ - and / (CreatePullThroughCacheRule, ecrRepositoryPrefix).
    repository_prefix: str | None = Field(default=None, min_length=2, max_length=30, pattern=_ECR_NAME)
    create_rule: bool = Field(default=True, description="false: use the existing rule of repository_prefix (not "
                                                        "created, not deleted with the stack)")

    @model_validator(mode="after")
    def _secret(self) -> PullThroughCache:
        if not self.create_rule and self.repository_prefix is None:
            raise ValueError("create_rule: false adopts an existing rule: name its repository_prefix")
        if self.enabled and self.create_rule and self.credential_secret_arn is None:
            raise ValueError("enabled=true needs credential_secret_arn (ghcr.io requires credentials for the cache)")
        arn = self.credential_secret_arn
        if arn is not None and not _PTC_SECRET.match(arn):
            raise ValueError(
                f"credential_secret_arn={arn!r} must be a Secrets Manager secret ARN whose name starts with "
                "'ecr-pullthroughcache/' (ECR only reads secrets so named)"
            )
        return self

    def prefix(self, deployment_name: str) -> str:
        """The rule's repository prefix: as configured, else one of this deployment's own."""
        return self.repository_prefix or f"{deployment_name}-ghcr"


class ImageConfig(_Strict):
    # The base defaults to the engine pin (runtime/engine_pin.py: the image, its vLLM and NIXL, and where each was
    # read). A base_digest, once a build has printed it, makes the build refuse any other image under that tag;
    # without one the build records the digest it resolved and checks the engine versions inside the base.
    base_repository: str = engine_pin.BASE_REPOSITORY
    base_tag: str = Field(default=engine_pin.BASE_TAG, pattern=r"^[\w][\w.-]{0,127}$")
    base_digest: str | None = engine_pin.BASE_DIGEST
    # None: <deployment name>/serving. A repository name is unique per account and region; the repository is removed
    # with the image stack (images included: each is rebuilt from source on the next deploy).
    ecr_repository: str | None = Field(default=None, pattern=_ECR_NAME)
    pull_through_cache: PullThroughCache = PullThroughCache()

    @field_validator("base_digest")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value is not None and not _DIGEST.match(value):
            raise ValueError(f"{value!r} is not a sha256 digest (sha256: followed by 64 lower-case hex digits)")
        return value

    @model_validator(mode="after")
    def _cacheable(self) -> ImageConfig:
        if self.pull_through_cache.enabled and not self.base_repository.startswith("ghcr.io/"):
            raise ValueError(
                f"pull_through_cache is for ghcr.io images; base_repository={self.base_repository!r} is elsewhere"
            )
        return self

    def repository_name(self, deployment_name: str) -> str:
        return self.ecr_repository or f"{deployment_name}/serving"

    @property
    def base_image(self) -> str:
        """The base image reference: repository:tag, and @digest when one is pinned."""
        reference = f"{self.base_repository}:{self.base_tag}"
        return f"{reference}@{self.base_digest}" if self.base_digest else reference


class Deployment(_Strict):
    name: str = Field(pattern=_NAME)
    account: str | None = Field(default=None, pattern=r"^\d{12}$")
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    cluster: ClusterConfig = ClusterConfig()
    network: NetworkConfig = NetworkConfig()
    gpu_provider: Literal["eks-nodegroups", "hyperpod"] = "eks-nodegroups"
    gpu_node_groups: list[GpuNodeGroupConfig] = Field(default_factory=list)
    hyperpod: HyperPodConfig | None = None
    image: ImageConfig = ImageConfig()
    workloads: WorkloadsConfig = WorkloadsConfig()
    slo: ServiceLevelObjectives = ServiceLevelObjectives()
    observability: ObservabilityConfig = ObservabilityConfig()
    autoscaling: AutoscalingConfig = AutoscalingConfig()
    serving: Serving

    @model_validator(mode="after")
    def _consistent(self) -> Deployment:
        if (self.account is None) != (self.region is None):
            raise ValueError("account and region go together: set both, or neither for environment-agnostic stacks")
        if self.region is None and self.network.az_count > 2 and not self.network.availability_zones:
            raise ValueError(
                f"network.az_count={self.network.az_count}: environment-agnostic stacks can place only 2 zones; "
                "set account and region, or list network.availability_zones"
            )
        if self.gpu_provider == "eks-nodegroups" and not self.gpu_node_groups:
            raise ValueError("gpu_provider 'eks-nodegroups' needs at least one entry in gpu_node_groups")
        if self.gpu_provider == "hyperpod" and self.hyperpod is None:
            raise ValueError("gpu_provider 'hyperpod' needs a hyperpod section (cluster_name, instance_groups)")
        if self.gpu_provider == "hyperpod" and self.gpu_node_groups:
            raise ValueError("gpu_node_groups is set but gpu_provider is 'hyperpod'; GPU nodes come from one place")
        if self.hyperpod is not None and self.gpu_provider != "hyperpod":
            raise ValueError("a hyperpod section is set but gpu_provider is 'eks-nodegroups'; set gpu_provider: hyperpod")
        _check_unique("gpu_node_groups", [group.name for group in self.gpu_node_groups])
        cache = self.image.pull_through_cache
        if cache.enabled and len(prefix := cache.prefix(self.name)) > 30:
            raise ValueError(
                f"image.pull_through_cache: the derived repository prefix {prefix!r} is longer than "
                "ECR's 30 characters; set image.pull_through_cache.repository_prefix")
        self._check_metrics_paths()
        self._check_ports_outside_ephemeral()
        router = self.workloads.router
        if router.allowed_client_cidrs is None:
            raise ValueError(
                "workloads.router.allowed_client_cidrs is required: the networks whose clients may call the OpenAI "
                f"API, e.g. [\"{self.network.cidr}\"] (the VPC: every pod and host in it) or your clients' own subnets")
        if router.internal_load_balancer and router.certificate_arn is None:
            raise ValueError(
                "workloads.router.internal_load_balancer needs workloads.router.certificate_arn: the ACM certificate "
                "(arn:aws:acm:<region>:<account>:certificate/<id>, in the deployment's region) of the load balancer's "
                "TLS listener on 443")
        if router.api_keys_secret is not None and self.serving.router.api_keys_path is not None:
            raise ValueError(
                f"serving.router.api_keys_path={self.serving.router.api_keys_path!r} and "
                "workloads.router.api_keys_secret are both set: in the cluster the keys come from the secret (the "
                "path is rendered to its mount); remove serving.router.api_keys_path")
        if router.api_keys_kms_key_arn is not None and router.api_keys_secret is None:
            raise ValueError("workloads.router.api_keys_kms_key_arn is set without workloads.router.api_keys_secret: "
                             "name the secret it encrypts, or remove the key")
        if router.prestop_s + self.serving.router.shutdown_grace_s >= router.termination_grace_s:
            raise ValueError(
                f"serving.router.shutdown_grace_s={self.serving.router.shutdown_grace_s} plus "
                f"workloads.router.prestop_s={router.prestop_s} must stay below "
                f"workloads.router.termination_grace_s={router.termination_grace_s} (the router pod's "
                "terminationGracePeriodSeconds), else Kubernetes kills the router before requests in flight finish"
            )
        available = {pool.instance_type for pool in self.gpu_pools}
        source = "gpu_node_groups" if self.gpu_provider == "eks-nodegroups" else "hyperpod.instance_groups"
        for role in ("prefill", "decode"):
            wanted = getattr(self.serving, role).instance_type
            if wanted not in available:
                raise ValueError(
                    f"serving.{role}.instance_type={wanted!r} has no GPU nodes; "
                    f"{source} provide: {', '.join(sorted(available))}"
                )
        self._check_gpu_zone()
        self._check_scaling_bounds()
        self._check_capacity()
        return self

    def _check_gpu_zone(self) -> None:
        """On-demand GPU capacity comes from whichever zone the GPU subnet is in: the zone must be stated by id."""
        if self.network.gpu_az_id is not None:
            return
        on_demand = [f"gpu_node_groups.{i} ({g.name}, {g.instance_type})" for i, g in enumerate(self.gpu_node_groups)
                     if isinstance(g.capacity, OnDemand)]
        if self.hyperpod is not None:
            on_demand += [f"hyperpod.instance_groups.{i} ({g.name}, {g.instance_type})"
                          for i, g in enumerate(self.hyperpod.instance_groups) if g.training_plan_arn is None]
        if on_demand:
            raise ValueError(
                f"network.gpu_az_id is required for on-demand GPU capacity ({', '.join(on_demand)}): zone names map "
                "to different zones in each account and GPU types are not offered in every zone. Find a zone id that "
                "offers the type (aws ec2 describe-instance-type-offerings --location-type availability-zone-id "
                "--filters Name=instance-type,Values=TYPE), set network.gpu_az_id to it and network.gpu_az_index to "
                "that zone's place in the region; the deploy fails early if the two disagree")

    def _check_ports_outside_ephemeral(self) -> None:
        """The NetworkPolicies admit replies on the ephemeral ports: a listening port there would be open too."""
        listening = {f"serving.{role}.ports.{name}": span for role in ("prefill", "decode")
                     for name, span in self.serving.role(role).port_ranges().items()}
        listening["serving.router.port"] = range(self.serving.router.port, self.serving.router.port + 1)
        if self.serving.router.metrics_port is not None:
            metrics = self.serving.router.metrics_port
            listening["serving.router.metrics_port"] = range(metrics, metrics + 1)
        for field, span in listening.items():
            if span.start < EPHEMERAL_PORTS.stop and EPHEMERAL_PORTS.start < span.stop:
                raise ValueError(
                    f"{field} (ports {span.start}-{span.stop - 1}) lies in the local ephemeral port range "
                    f"{EPHEMERAL_PORTS.start}-{EPHEMERAL_PORTS.stop - 1}, where the NetworkPolicies admit replies to "
                    "connections the pods open; choose a port below 32768")

    def _check_scaling_bounds(self) -> None:
        if self.autoscaling.enabled and not self.observability.enabled:
            raise ValueError("autoscaling.enabled: true reads its signals from the metrics workspace: set "
                             "observability.enabled: true, or autoscaling.enabled: false for fixed replica counts")
        if not self.autoscaled:
            return
        for role_name in ("prefill", "decode"):
            bounds = getattr(self.autoscaling, role_name)
            replicas = self.serving.role(role_name).replicas
            most = self.max_replicas(role_name)
            if not bounds.min_replicas <= replicas <= most:
                raise ValueError(
                    f"autoscaling.{role_name}: serving.{role_name}.replicas={replicas} (the starting and fallback "
                    f"count) must lie within min_replicas={bounds.min_replicas} and max_replicas={most}")

    @property
    def autoscaled(self) -> bool:
        """Whether the workers get ScaledObjects: as configured, or by default whenever the metrics pipeline runs."""
        enabled = self.autoscaling.enabled
        return self.observability.enabled if enabled is None else enabled

    def max_replicas(self, role_name: str) -> int:
        """The most replicas a role may run: the autoscaler's bound, or the fixed count."""
        replicas = self.serving.role(role_name).replicas
        if not self.autoscaled:
            return replicas
        bound = getattr(self.autoscaling, role_name).max_replicas
        return replicas if bound is None else bound

    def _check_metrics_paths(self) -> None:
        """The managed collector reaches the Kubernetes API from its ENIs in the VPC, so the cluster endpoint must
        include private access (Amazon Managed Service for Prometheus user guide, "Set up managed collectors for
        Amazon EKS", prerequisites). An extra engine scraper inside the VPC would share the pods' subnets."""
        if self.observability.enabled and self.cluster.endpoint_access == "public":
            raise ValueError(
                "observability.enabled needs cluster.endpoint_access 'private' or 'public-and-private': the managed "
                "collector reaches the Kubernetes API through the private endpoint; or set observability.enabled: false"
            )
        vpc = ipaddress.ip_network(self.network.cidr)
        for cidr in self.workloads.engine_metrics_scraper_cidrs:
            if ipaddress.ip_network(cidr).overlaps(vpc):
                raise ValueError(
                    f"workloads.engine_metrics_scraper_cidrs: {cidr} overlaps the VPC ({vpc}), whose pod subnets it "
                    "would open to the engines' OpenAI API; the managed collector is admitted through its own "
                    "subnets (observability.enabled), an extra scraper must sit outside the VPC"
                )

    def _check_capacity(self) -> None:
        """The roles' pods, at the most replicas they may run, must fit on the most nodes the pools of their
        instance type can have."""
        for instance_type in sorted(self.serving.instance_types()):
            spec = INSTANCE_CATALOG[instance_type]
            pools = [p for p in self.gpu_pools if p.instance_type == instance_type]
            most = sum(p.max_size if isinstance(p, GpuNodeGroupConfig) else p.count for p in pools)
            gpus_needed = 0
            nodes_needed = 0
            for role_name in ("prefill", "decode"):
                role = self.serving.role(role_name)
                if role.instance_type != instance_type:
                    continue
                replicas = self.max_replicas(role_name)
                nodes_needed += replicas * role.nodes_per_replica if role.gpus_per_node * 2 > spec.gpus else 0
                gpus_needed += replicas * role.nodes_per_replica * role.gpus_per_node
            nodes_needed = max(nodes_needed, -(-gpus_needed // spec.gpus))
            if nodes_needed > most:
                raise ValueError(
                    f"serving.prefill and serving.decode need {nodes_needed} {instance_type} nodes "
                    f"(replicas, or autoscaling max_replicas, x nodes_per_replica, {gpus_needed} GPUs) but the GPU "
                    f"pools of that type reach at most {most}; raise max_size/count or lower the replicas"
                )
        # CPU, memory and hugepages as the nodes really offer them, and the routers through their rollouts
        problems = capacity_problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def gpu_pools(self) -> list[GpuNodeGroupConfig] | list[HyperPodInstanceGroup]:
        """The GPU node pools of the chosen provider."""
        if self.gpu_provider == "hyperpod":
            return self.hyperpod.instance_groups if self.hyperpod else []
        return self.gpu_node_groups

    @property
    def environment_agnostic(self) -> bool:
        return self.account is None


def _describe(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-after"))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown key (not part of the deployment schema; check its spelling and indentation)"
    if error["type"] in ("missing", "union_tag_not_found"):
        return f"{location}: {message.lower()}"
    shown = error.get("input")
    if isinstance(shown, (dict, list)) or repr(shown) in message:
        return f"{location or '(top level)'}: {message}"
    return f"{location or '(top level)'}: {message} (got {shown!r})"


def parse_deployment(data: Any, source: str = "<deployment>") -> Deployment:
    """Validate already-parsed YAML; raise DeploymentError with one line per problem."""
    try:
        return Deployment.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: invalid deployment"] + [f"  - {_describe(e)}" for e in exc.errors()]
        raise DeploymentError("\n".join(lines)) from None


def load_deployment(path: str | Path) -> Deployment:
    """Read and validate a deployment file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeploymentError(f"{path}: cannot read the deployment file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DeploymentError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise DeploymentError(f"{path}: the deployment file must be a YAML mapping at the top level")
    return parse_deployment(data, str(path))
