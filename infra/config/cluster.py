"""The EKS cluster: its Kubernetes version, API endpoint access and admins, and the system node group; or an existing
cluster named with the facts pdstack needs to manage objects on it (``existing``); and which of the add-ons pdstack
installs (``addons``) the platform runs already."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from infra.cluster.kubernetes_versions import DEFAULT_KUBERNETES_VERSION, SUPPORTED_KUBERNETES_VERSIONS
from infra.config.common import NAME, Strict, check_cidrs
from infra.config.gpu_capacity import Taint
from runtime.catalog_checks import label_keys

_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
_ROLE_ARN = r"^arn:aws[a-zA-Z-]*:iam::\d{12}:role/[\w+=,.@/-]+$"

# efa-only interfaces take no subnet IP, and the VPC CNI must know to leave them alone: EKS user guide, "Run machine
# learning training on Amazon EKS with Elastic Fabric Adapter", EFA-only interfaces: VPC CNI 1.18.5 or later
# (HyperPod's EKS orchestrator asks 1.18.3 or later). The same floor infra/cluster/kubernetes_versions.py keeps
# for the add-on pdstack installs.
VPC_CNI_FOR_EFA_ONLY = (1, 18, 5)
VPC_CNI_FOR_HYPERPOD = (1, 18, 3)
_CNI_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(-eksbuild\.\d+)?$")
# The fields that shape a cluster pdstack creates; an existing cluster has its own.
OWNED_CLUSTER_FIELDS = (
    "endpoint_access",
    "public_access_cidrs",
    "admin_principal_arns",
    "system_instance_type",
    "system_node_count",
)


def cni_version(value: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a VPC CNI version as EKS names it (v1.20.4-eksbuild.1)."""
    match = _CNI_VERSION.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a VPC CNI version such as v1.20.4-eksbuild.1")
    major, minor, patch = (int(part) for part in match.groups()[:3])
    return major, minor, patch


class PlatformNodes(Strict):
    """The existing cluster's nodes that pdstack's own pods (the routers, the controllers it installs) run on, in place
    of the system node group pdstack creates for a cluster of its own: selected by ``node_selector`` (empty: any
    node without a taint they do not tolerate), tolerating ``taints``. ``instance_type`` and ``count`` are what the
    platform guarantees there: the capacity check and the scheduling rehearsal place pdstack's pods on that many such
    nodes (what else the platform runs there is not counted)."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=list)
    instance_type: str = "m7i.xlarge"
    count: int = Field(default=2, ge=1, le=100)

    @field_validator("node_selector")
    @classmethod
    def _label_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return label_keys(value)


class ExistingCluster(Strict):
    """An EKS cluster the platform runs: ``cluster.name`` is its name and ``cluster.kubernetes_version`` its version.
    pdstack creates no cluster, managed add-on or system node group; it manages objects on the cluster through a
    kubectl handler of its own (in the VPC's private subnets, in the cluster security group), which acts as
    ``kubectl_role_arn`` when given (a role the platform has granted cluster-admin), or else as the handler's own role,
    to which pdstack grants cluster-admin with an access entry. Every fact here is checked again at deploy time
    against the cluster itself (infra/cluster/existing_check/), before anything is created on it."""

    # resourcesVpcConfig.clusterSecurityGroupId: the group EKS made; the GPU nodes and the kubectl handler join it.
    security_group_id: str = Field(pattern=r"^sg-[0-9a-f]{8,17}$")
    # accessConfig.authenticationMode: access entries (pdstack's kubectl role) need API or API_AND_CONFIG_MAP.
    authentication_mode: Literal["API", "API_AND_CONFIG_MAP", "CONFIG_MAP"]
    kubectl_role_arn: str | None = Field(default=None, pattern=_ROLE_ARN)
    # Every AWS credential pdstack gives a pod comes through EKS Pod Identity (no IRSA, so no OIDC provider): the
    # model reader, KEDA, the Cluster Autoscaler, the Load Balancer Controller, the routers' keys.
    pod_identity_agent: bool
    # The vpc-cni add-on's version (aws eks describe-addon --addon-name vpc-cni).
    vpc_cni_version: str
    system_nodes: PlatformNodes = PlatformNodes()

    @field_validator("vpc_cni_version")
    @classmethod
    def _cni(cls, value: str) -> str:
        cni_version(value)
        return value

    @model_validator(mode="after")
    def _manageable(self) -> ExistingCluster:
        if self.authentication_mode == "CONFIG_MAP" and self.kubectl_role_arn is None:
            raise ValueError(
                "authentication_mode 'CONFIG_MAP' takes no access entries, so pdstack cannot grant its kubectl handler "
                "access: switch the cluster to API_AND_CONFIG_MAP (aws eks update-cluster-config --access-config "
                "authenticationMode=API_AND_CONFIG_MAP), or name in kubectl_role_arn a role mapped to system:masters"
            )
        if not self.pod_identity_agent:
            raise ValueError(
                "pod_identity_agent is false: pdstack's pods get their AWS credentials through EKS Pod Identity; "
                "install the eks-pod-identity-agent add-on (aws eks create-addon --addon-name eks-pod-identity-agent)"
            )
        return self


# Where an add-on comes from: pdstack installs it (when the deployment needs it), or the platform runs it already
# and pdstack installs nothing. Two values, not an install switch: "the platform runs it" is a fact pdstack relies on
# (the rehearsal counts its devices, KEDA's CRDs must exist), which a bare "install: false" would leave unsaid.
AddonSource = Literal["pdstack", "platform"]


class ClusterAddonsConfig(Strict):
    """The cluster software pdstack installs, each ``platform`` where the existing cluster runs it already (its own
    version and values: README, "Bring your own VPC and cluster", says what pdstack expects of each)."""

    nvidia_device_plugin: AddonSource = "pdstack"
    efa_device_plugin: AddonSource = "pdstack"
    leader_worker_set: AddonSource = "pdstack"
    keda: AddonSource = "pdstack"  # only when the workers autoscale
    node_autoscaler: AddonSource = "pdstack"  # the Cluster Autoscaler over the GPU node groups
    load_balancer_controller: AddonSource = "pdstack"  # only with workloads.router.internal_load_balancer
    secrets_store_csi_driver: AddonSource = "pdstack"  # the driver and its AWS provider, only with api_keys_secret

    def from_platform(self) -> list[str]:
        return [name for name, source in self if source == "platform"]


class ClusterConfig(Strict):
    name: str = Field(default="pdstack", pattern=NAME)
    # infra/cluster/kubernetes_versions.py: every version there has its kubectl layer, add-ons and autoscaler pinned.
    # SageMaker
    # HyperPod's EKS orchestrator accepts 1.30-1.35.
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
    endpoint_access: Literal["private", "public", "public-and-private"] = "private"
    public_access_cidrs: list[str] = Field(default_factory=list)
    admin_principal_arns: list[str] = Field(default_factory=list)
    system_instance_type: str = "m7i.xlarge"
    system_node_count: int = Field(default=2, ge=1, le=10)
    existing: ExistingCluster | None = None
    addons: ClusterAddonsConfig = ClusterAddonsConfig()

    @field_validator("kubernetes_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        if value not in SUPPORTED_KUBERNETES_VERSIONS:
            raise ValueError(f"must be one of {', '.join(SUPPORTED_KUBERNETES_VERSIONS)}")
        return value

    @field_validator("public_access_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return check_cidrs(value, "203.0.113.0/24", "opens the API server to the whole internet")

    @field_validator("admin_principal_arns")
    @classmethod
    def _arns(cls, value: list[str]) -> list[str]:
        for arn in value:
            if not _ARN.match(arn):
                raise ValueError(f"{arn!r} is not an IAM role or user ARN (arn:aws:iam::123456789012:role/NAME)")
        return value

    @model_validator(mode="after")
    def _public_needs_cidrs(self) -> ClusterConfig:
        if self.existing is not None:
            owned = [f for f in OWNED_CLUSTER_FIELDS if f in self.model_fields_set]
            if owned:
                raise ValueError(
                    f"{', '.join(owned)} shape a cluster pdstack creates; with cluster.existing the cluster is yours "
                    "(its nodes for pdstack's routers and controllers: cluster.existing.system_nodes): remove them"
                )
            return self
        platform = self.addons.from_platform()
        if platform:
            raise ValueError(
                f"addons: {', '.join(platform)} set to 'platform', but pdstack creates this cluster and nothing else "
                "installs them; 'platform' is for cluster.existing"
            )
        if self.endpoint_access != "private" and not self.public_access_cidrs:
            raise ValueError(
                f"endpoint_access={self.endpoint_access!r} needs public_access_cidrs (the networks allowed to reach "
                "the API server); use endpoint_access: private to keep the endpoint inside the VPC"
            )
        if self.endpoint_access == "private" and self.public_access_cidrs:
            raise ValueError("public_access_cidrs is set but endpoint_access is 'private'; the CIDRs would be ignored")
        return self
