"""ClusterAddons: the EKS managed add-ons and the Helm charts every pdstack cluster runs, pinned in one place.

To update a pin, change the version here, run `make test` (the infra tests assert these exact values reach the
templates), and read the component's release notes for breaking changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.config import GPU_TAINT

# EKS managed add-ons for Kubernetes 1.34, from the EKS user guide's add-on pages (vpc-cni, coredns, kube-proxy).
# eks-pod-identity-agent and aws-ebs-csi-driver have no per-version table there: confirm any pin with
# `aws eks describe-addon-versions --kubernetes-version 1.34 --addon-name NAME` before you change it.
# vpc-cni must be >= 1.18.5: efa-only interfaces need it (HyperPod needs >= 1.18.3).
MANAGED_ADDONS = {
    "vpc-cni": "v1.20.4-eksbuild.1",
    "coredns": "v1.13.2-eksbuild.7",
    "kube-proxy": "v1.34.6-eksbuild.13",
    "eks-pod-identity-agent": "v1.3.9-eksbuild.3",
    "aws-ebs-csi-driver": "v1.51.0-eksbuild.1",
}


@dataclass(frozen=True)
class HelmChartPin:
    chart: str
    repository: str
    version: str
    namespace: str


EFA_DEVICE_PLUGIN = HelmChartPin(
    chart="aws-efa-k8s-device-plugin", repository="https://aws.github.io/eks-charts", version="v0.5.30",
    namespace="kube-system",
)
NVIDIA_DEVICE_PLUGIN = HelmChartPin(
    chart="nvidia-device-plugin", repository="https://nvidia.github.io/k8s-device-plugin", version="0.20.0",
    namespace="kube-system",
)
LEADER_WORKER_SET = HelmChartPin(
    chart="lws", repository="oci://registry.k8s.io/lws/charts/lws", version="0.10.0", namespace="lws-system",
)
KEDA = HelmChartPin(
    chart="keda", repository="https://kedacore.github.io/charts", version="2.20.2", namespace="keda",
)
# KEDA 2.20.2's operator runs as this service account (chart values serviceAccount.operator.name): its Pod Identity
# role signs the metrics-workspace queries.
KEDA_OPERATOR_SERVICE_ACCOUNT = "keda-operator"

# Cluster Autoscaler 1.34.2 (chart 9.53.0, kubernetes/autoscaler tag cluster-autoscaler-chart-9.53.0): the minor
# version must match the cluster's Kubernetes minor (SUPPORTED_KUBERNETES_VERSIONS).
CLUSTER_AUTOSCALER = HelmChartPin(
    chart="cluster-autoscaler", repository="https://kubernetes.github.io/autoscaler", version="9.53.0",
    namespace="kube-system",
)
CLUSTER_AUTOSCALER_SERVICE_ACCOUNT = "cluster-autoscaler"

# The system node group's label: controllers without GPU work (KEDA, the node autoscaler) select it.
SYSTEM_NODE_LABELS = {"pdstack.io/pool": "system"}

# Device plugins must run on GPU nodes despite their taints, and on HyperPod nodes that health checks marked.
GPU_NODE_TOLERATIONS = [
    {"key": GPU_TAINT.key, "operator": "Exists", "effect": GPU_TAINT.effect},
    {"key": "sagemaker.amazonaws.com/node-health-status", "operator": "Equal", "value": "Unschedulable",
     "effect": "NoSchedule"},
]
# Only where EFA hardware exists (EKS sets this label from the instance type; our node groups also set pdstack/efa).
EFA_NODE_SELECTOR = {"pdstack.io/efa": "true"}


@dataclass(frozen=True)
class ClusterAddonsProps:
    cluster: eks.Cluster


class ClusterAddons(Construct):
    """Managed add-ons (``managed``, by name) and the device-plugin and LeaderWorkerSet charts (``charts``)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ClusterAddonsProps) -> None:
        super().__init__(scope, construct_id)
        cluster = props.cluster

        self.managed: dict[str, eks.Addon] = {
            name: eks.Addon(self, name, cluster=cluster, addon_name=name, addon_version=version, preserve_on_delete=False)
            for name, version in MANAGED_ADDONS.items()
        }
        # The EBS CSI controller gets its AWS permissions through Pod Identity (the agent add-on above).
        ebs_role = iam.Role(
            self, "EbsCsiRole",
            assumed_by=iam.ServicePrincipal("pods.eks.amazonaws.com").with_session_tags(),
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AmazonEBSCSIDriverPolicy")],
        )
        ebs = self.managed["aws-ebs-csi-driver"]
        ebs.node.default_child.add_property_override(  # type: ignore[union-attr]
            "PodIdentityAssociations", [{"RoleArn": ebs_role.role_arn, "ServiceAccount": "ebs-csi-controller-sa"}]
        )
        ebs.node.add_dependency(self.managed["eks-pod-identity-agent"])

        self.efa_device_plugin = self._chart(cluster, "EfaDevicePlugin", EFA_DEVICE_PLUGIN, {
            "tolerations": GPU_NODE_TOLERATIONS,
            "nodeSelector": EFA_NODE_SELECTOR,
        })
        self.nvidia_device_plugin = self._chart(cluster, "NvidiaDevicePlugin", NVIDIA_DEVICE_PLUGIN, {
            "tolerations": GPU_NODE_TOLERATIONS,
            "nodeSelector": {"pdstack.io/gpu": "true"},
            # MOFED detection (on by default since 0.19) claims the RDMA devices EFA needs: off.
            "mofedEnabled": False,
        })
        self.leader_worker_set = self._chart(cluster, "LeaderWorkerSet", LEADER_WORKER_SET, {})
        self.charts = (self.efa_device_plugin, self.nvidia_device_plugin, self.leader_worker_set)

    def _chart(self, cluster: eks.Cluster, construct_id: str, pin: HelmChartPin, values: dict) -> eks.HelmChart:
        return eks.HelmChart(
            self, construct_id, cluster=cluster, chart=pin.chart, repository=pin.repository, version=pin.version,
            namespace=pin.namespace, create_namespace=True, values=values, wait=True,
        )
