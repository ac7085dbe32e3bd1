"""The Kubernetes versions pdstack deploys, and for each one every pin that must follow the cluster's minor version:
the kubectl layer the CDK custom resources run, the EKS managed add-ons and the Cluster Autoscaler chart. The one
table to edit when EKS moves; nothing here imports aws_cdk, so the config loader can read it cheaply.

EKS Kubernetes version lifecycle (EKS user guide, "Kubernetes version lifecycle"): 1.34 left standard support on
2026-12-02 (a new 1.34 cluster starts in extended support, the control plane at about six times the price); 1.35 is
in standard support until 2027-03-27. 1.34 stays selectable for clusters created before, until they are upgraded
(EKS upgrades one minor at a time).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KubernetesPins:
    # aws_cdk.aws_eks_v2.KubernetesVersion attribute (aws-cdk-lib 2.275.0 offers V1_25 .. V1_36).
    cdk_version: str
    # PyPI package aws-cdk.lambda-layer-kubectl-v<minor> (pinned in requirements.txt): module and class.
    kubectl_layer_module: str
    kubectl_layer_class: str
    # EKS managed add-ons: name -> version.
    managed_addons: dict[str, str]
    # The Cluster Autoscaler's minor must match the cluster's (kubernetes/autoscaler cluster-autoscaler/README.md,
    # "Releases"): the chart version whose appVersion is that minor.
    cluster_autoscaler_chart: str
    cluster_autoscaler_app: str


# vpc-cni must be >= 1.18.5 (efa-only interfaces; HyperPod needs >= 1.18.3); its versions do not follow the cluster's.
# eks-pod-identity-agent and aws-ebs-csi-driver have no per-version table in the EKS user guide: confirm a pin with
# `aws eks describe-addon-versions --kubernetes-version X --addon-name NAME` before you change it.
_VERSION_INDEPENDENT_ADDONS = {
    "vpc-cni": "v1.20.4-eksbuild.1",
    "eks-pod-identity-agent": "v1.3.9-eksbuild.3",
    "aws-ebs-csi-driver": "v1.51.0-eksbuild.1",
}

KUBERNETES_PINS: dict[str, KubernetesPins] = {
    "1.35": KubernetesPins(
        cdk_version="V1_35",
        kubectl_layer_module="aws_cdk.lambda_layer_kubectl_v35",
        kubectl_layer_class="KubectlV35Layer",
        managed_addons={
            **_VERSION_INDEPENDENT_ADDONS,
            # CoreDNS 1.13 is the line kubeadm 1.35 ships (kubernetes/kubernetes cmd/kubeadm/app/constants/constants.go,
            # CoreDNSVersion v1.13.1 on release-1.35); this EKS build is the one pinned for 1.34 already. Not read
            # from the EKS table for 1.35: confirm with describe-addon-versions --kubernetes-version 1.35.
            "coredns": "v1.13.2-eksbuild.7",
            # EKS user guide, "Manage kube-proxy in Amazon EKS clusters", add-on table: 1.35 -> v1.35.3-eksbuild.2.
            "kube-proxy": "v1.35.3-eksbuild.2",
        },
        # kubernetes/autoscaler tag cluster-autoscaler-chart-9.59.0 (commit 5a0b98e4, 2026-07-21):
        # cluster-autoscaler/charts/cluster-autoscaler/Chart.yaml appVersion 1.35.0.
        cluster_autoscaler_chart="9.59.0",
        cluster_autoscaler_app="1.35.0",
    ),
    "1.34": KubernetesPins(
        cdk_version="V1_34",
        kubectl_layer_module="aws_cdk.lambda_layer_kubectl_v34",
        kubectl_layer_class="KubectlV34Layer",
        managed_addons={
            **_VERSION_INDEPENDENT_ADDONS,
            "coredns": "v1.13.2-eksbuild.7",
            "kube-proxy": "v1.34.6-eksbuild.13",
        },
        # kubernetes/autoscaler tag cluster-autoscaler-chart-9.53.0 (commit a2db9eb7): appVersion 1.34.2.
        cluster_autoscaler_chart="9.53.0",
        cluster_autoscaler_app="1.34.2",
    ),
}
DEFAULT_KUBERNETES_VERSION = "1.35"
SUPPORTED_KUBERNETES_VERSIONS = tuple(KUBERNETES_PINS)
