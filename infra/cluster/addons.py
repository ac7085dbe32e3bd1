"""ClusterAddons: the EKS managed add-ons and the Helm charts every pdstack cluster runs, pinned in one place.

To update a pin, change the version here, run `make test` (the infra tests assert these exact values reach the
templates), and read the component's release notes for breaking changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.cluster.kubernetes_versions import KUBERNETES_PINS
from infra.config import Taint
from infra.config.cluster import ClusterAddonsConfig
from infra.workload_names import (
    EFA_LABEL,
    GPU_LABEL,
    HYPERPOD_HEALTH_TAINT,
    INSTANCE_TYPE_LABEL,
    SYSTEM_PLACEMENT,
    tolerations_for,
)
from runtime.catalog import INSTANCE_CATALOG

# The managed add-ons' versions follow the cluster's Kubernetes minor: infra/cluster/kubernetes_versions.py holds them.
# The add-ons' configuration values (the schema is the add-on's Helm chart values; `aws eks
# describe-addon-configuration` prints it). vpc-cni v1.20.4 (aws/amazon-vpc-cni-k8s charts/aws-vpc-cni/values.yaml):
# `enableNetworkPolicy` is the string "false" by default and becomes the node agent's --enable-network-policy
# (templates/daemonset.yaml) and the controller's enable-network-policy-controller (templates/configmap.yaml);
# `nodeAgent.enabled` (a boolean, true by default) runs the agent that enforces the policies. Both set here so the
# serving namespace's NetworkPolicies (infra/workloads/network_policies.py) are enforced, not merely stored.
MANAGED_ADDON_CONFIGURATION: dict[str, dict] = {
    "vpc-cni": {"enableNetworkPolicy": "true", "nodeAgent": {"enabled": True}},
}


@dataclass(frozen=True)
class HelmChartPin:
    chart: str
    repository: str
    version: str
    namespace: str


EFA_DEVICE_PLUGIN = HelmChartPin(
    chart="aws-efa-k8s-device-plugin",
    repository="https://aws.github.io/eks-charts",
    version="v0.5.30",
    namespace="kube-system",
)
NVIDIA_DEVICE_PLUGIN = HelmChartPin(
    chart="nvidia-device-plugin",
    repository="https://nvidia.github.io/k8s-device-plugin",
    version="0.20.0",
    namespace="kube-system",
)
# Helm installs a chart's crds/ on first install only and never upgrades them (Helm docs, "Custom Resource
# Definitions"); LWS ships its CRDs there (kubernetes-sigs/lws charts/lws/crds/ at v0.10.0). Moving this pin on a
# running cluster needs the new release's CRDs applied first (README, "Upgrading LeaderWorkerSet").
LEADER_WORKER_SET = HelmChartPin(
    chart="lws",
    repository="oci://registry.k8s.io/lws/charts/lws",
    version="0.10.0",
    namespace="lws-system",
)
KEDA = HelmChartPin(
    chart="keda",
    repository="https://kedacore.github.io/charts",
    version="2.20.2",
    namespace="keda",
)
# The router's API keys (workloads.router.api_keys_secret) reach its pods through the Secrets Store CSI driver and the
# AWS Secrets and Configuration Provider (ASCP). No EKS managed add-on for the provider was found in the sources read
# (the ASCP README and the Secrets Manager user guide install it with Helm): confirm with `aws eks
# describe-addon-versions --kubernetes-version 1.35 --addon-name aws-secrets-store-csi-driver-provider` and prefer it
# if it is listed. The ASCP chart pulls the driver as a dependency at a floating "^1" (its Chart.yaml); pdstack
# installs the driver's own chart at a pinned version instead and turns the dependency off.
# kubernetes-sigs/secrets-store-csi-driver tag v1.6.0 (commit 0aad886f), charts/secrets-store-csi-driver/Chart.yaml.
SECRETS_STORE_CSI_DRIVER = HelmChartPin(
    chart="secrets-store-csi-driver",
    repository="https://kubernetes-sigs.github.io/secrets-store-csi-driver/charts",
    version="1.6.0",
    namespace="kube-system",
)
# aws/secrets-store-csi-driver-provider-aws commit a74182c1 (tag 3.1.1),
# charts/secrets-store-csi-driver-provider-aws/Chart.yaml version 3.1.1 (image tag 3.1.1).
SECRETS_STORE_PROVIDER_AWS = HelmChartPin(
    chart="secrets-store-csi-driver-provider-aws",
    repository="https://aws.github.io/secrets-store-csi-driver-provider-aws",
    version="3.1.1",
    namespace="kube-system",
)
# Rotation (driver v1.6.0): with enableSecretRotation the chart's CSIDriver sets requiresRepublish (templates/
# csidriver.yaml), so the kubelet calls NodePublishVolume again periodically, and the driver fetches the secret anew
# once the mount's last write is older than --rotation-poll-interval (pkg/secrets-store/nodeserver.go; flag default 2m
# in cmd/secrets-store-csi-driver/main.go), rewriting the file in place. A key added to or removed from the secret
# reaches the routers after about this interval plus the kubelet's republish period, without a restart; the router
# re-reads the file when it changes (serving.router.api_keys_path).
SECRET_ROTATION_POLL_INTERVAL = "2m"

# KEDA 2.20.2's operator runs as this service account (chart values serviceAccount.operator.name): its Pod Identity
# role signs the metrics-workspace queries.
KEDA_OPERATOR_SERVICE_ACCOUNT = "keda-operator"


def managed_addons(kubernetes_version: str) -> dict[str, str]:
    """The EKS managed add-ons (name -> version) for the cluster's Kubernetes minor."""
    return dict(KUBERNETES_PINS[kubernetes_version].managed_addons)


def cluster_autoscaler(kubernetes_version: str) -> HelmChartPin:
    """The Cluster Autoscaler chart whose minor matches the cluster's (infra/cluster/kubernetes_versions.py)."""
    return HelmChartPin(
        chart="cluster-autoscaler",
        repository="https://kubernetes.github.io/autoscaler",
        version=KUBERNETES_PINS[kubernetes_version].cluster_autoscaler_chart,
        namespace="kube-system",
    )


CLUSTER_AUTOSCALER_SERVICE_ACCOUNT = "cluster-autoscaler"


def device_plugin_tolerations(gpu_taints: list[Taint]) -> list[dict]:
    """The device plugins run on every GPU node whatever taints its pool was given, and during deep health checks."""
    return tolerations_for([*gpu_taints, HYPERPOD_HEALTH_TAINT])


def efa_device_plugin_values(gpu_taints: list[Taint]) -> dict:
    """The chart selects nodes by instance-type label In supportedInstanceLabels.values: EC2 names on EKS node
    groups, ml.* names on HyperPod nodes, so both names of every catalog type."""
    names = {spec.name for spec in INSTANCE_CATALOG.values()}
    names |= {spec.hyperpod_name for spec in INSTANCE_CATALOG.values() if spec.hyperpod_name}
    return {
        "tolerations": device_plugin_tolerations(gpu_taints),
        "nodeSelector": {EFA_LABEL: "true"},
        "supportedInstanceLabels": {"keys": [INSTANCE_TYPE_LABEL], "values": sorted(names)},
    }


def nvidia_device_plugin_values(gpu_taints: list[Taint]) -> dict:
    """The chart's default affinity wants an NFD label or nvidia.com/gpu.present, which nodeadm sets only from
    Kubernetes 1.35: replace its node selector terms (Helm replaces lists) with pdstack's own GPU label."""
    return {
        "tolerations": device_plugin_tolerations(gpu_taints),
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": GPU_LABEL, "operator": "In", "values": ["true"]}]},
                    ]
                }
            }
        },
        # MOFED detection (on by default since 0.19) claims the RDMA devices EFA needs: off.
        "mofedEnabled": False,
    }


def secrets_store_csi_driver_values(placement: dict = SYSTEM_PLACEMENT) -> dict:
    """The driver on the system nodes only (the routers run there; its chart tolerates every taint by default), with
    rotation on, without syncing to Kubernetes Secrets, and with the service-account tokens ASCP needs: its main.go
    (3.1.1) asks for the audiences sts.amazonaws.com and pods.eks.amazonaws.com (Pod Identity uses the second)."""
    return {
        "linux": dict(placement),
        "enableSecretRotation": True,
        "rotationPollInterval": SECRET_ROTATION_POLL_INTERVAL,
        "syncSecret": {"enabled": False},
        "tokenRequests": [{"audience": "sts.amazonaws.com"}, {"audience": "pods.eks.amazonaws.com"}],
    }


def secrets_store_provider_aws_values(placement: dict = SYSTEM_PLACEMENT) -> dict:
    """The provider next to the driver (system nodes), the driver left to its own pinned chart."""
    return {**placement, "secrets-store-csi-driver": {"install": False}}


@dataclass(frozen=True)
class ClusterAddonsProps:
    cluster: eks.ICluster
    gpu_taints: list[Taint]  # every taint configured on a GPU pool (node groups or HyperPod instance groups)
    kubernetes_version: str  # the cluster's minor ("1.35"): picks the add-on versions
    # An existing cluster: its EKS managed add-ons are the platform's (none created here), each chart installed only
    # where ``sources`` says pdstack installs it, and the LWS controller placed on ``system_placement``.
    managed_addons: bool = True
    sources: ClusterAddonsConfig = field(default_factory=ClusterAddonsConfig)
    system_placement: dict | None = None


class ClusterAddons(Construct):
    """Managed add-ons (``managed``, by name; none on an existing cluster) and the device-plugin and LeaderWorkerSet
    charts (``charts``; each attribute None where the platform runs it)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ClusterAddonsProps) -> None:
        super().__init__(scope, construct_id)
        cluster = props.cluster
        self.managed: dict[str, eks.Addon] = {}
        if props.managed_addons:
            self._managed_addons(props)

        sources = props.sources
        self.efa_device_plugin: eks.HelmChart | None = None
        if sources.efa_device_plugin == "pdstack":
            self.efa_device_plugin = self._chart(
                cluster, "EfaDevicePlugin", EFA_DEVICE_PLUGIN, efa_device_plugin_values(props.gpu_taints)
            )
        self.nvidia_device_plugin: eks.HelmChart | None = None
        if sources.nvidia_device_plugin == "pdstack":
            self.nvidia_device_plugin = self._chart(
                cluster, "NvidiaDevicePlugin", NVIDIA_DEVICE_PLUGIN, nvidia_device_plugin_values(props.gpu_taints)
            )
        self.leader_worker_set: eks.HelmChart | None = None
        if sources.leader_worker_set == "pdstack":
            self.leader_worker_set = self._chart(
                cluster, "LeaderWorkerSet", LEADER_WORKER_SET, dict(props.system_placement or {})
            )
        self.charts = tuple(
            c for c in (self.efa_device_plugin, self.nvidia_device_plugin, self.leader_worker_set) if c is not None
        )

    def _managed_addons(self, props: ClusterAddonsProps) -> None:
        self.managed.update(
            {
                name: eks.Addon(
                    self,
                    name,
                    cluster=props.cluster,
                    addon_name=name,
                    addon_version=version,
                    preserve_on_delete=False,
                    configuration_values=MANAGED_ADDON_CONFIGURATION.get(name),
                )
                for name, version in managed_addons(props.kubernetes_version).items()
            }
        )
        # EKS bootstraps self-managed vpc-cni, kube-proxy and coredns when it creates the cluster; the managed add-ons
        # take them over (AWS's HyperPod EKS template, awsome-distributed-training hyperpod-eks-full-stack.yaml, sets
        # OVERWRITE on each). Without it the add-on's creation fails on the fields the bootstrap already set.
        for addon in self.managed.values():
            addon.node.default_child.add_property_override("ResolveConflicts", "OVERWRITE")  # type: ignore[union-attr]
        # The EBS CSI controller gets its AWS permissions through Pod Identity (the agent add-on above).
        ebs_role = iam.Role(
            self,
            "EbsCsiRole",
            assumed_by=iam.ServicePrincipal("pods.eks.amazonaws.com").with_session_tags(),
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AmazonEBSCSIDriverPolicy")],
        )
        ebs = self.managed["aws-ebs-csi-driver"]
        ebs.node.default_child.add_property_override(  # type: ignore[union-attr]
            "PodIdentityAssociations", [{"RoleArn": ebs_role.role_arn, "ServiceAccount": "ebs-csi-controller-sa"}]
        )
        ebs.node.add_dependency(self.managed["eks-pod-identity-agent"])

    def _chart(self, cluster: eks.ICluster, construct_id: str, pin: HelmChartPin, values: dict) -> eks.HelmChart:
        return eks.HelmChart(
            self,
            construct_id,
            cluster=cluster,
            chart=pin.chart,
            repository=pin.repository,
            version=pin.version,
            namespace=pin.namespace,
            create_namespace=True,
            values=values,
            wait=True,
        )
