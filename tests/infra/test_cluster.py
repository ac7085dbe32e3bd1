"""The EKS cluster: managed node groups, access, logging, encryption, endpoint, pinned add-ons and charts."""

from __future__ import annotations

import datetime
import importlib
import json

import pytest
from aws_cdk.assertions import Match

from infra.cluster.addons import EFA_DEVICE_PLUGIN, LEADER_WORKER_SET, NVIDIA_DEVICE_PLUGIN, managed_addons
from infra.cluster.kubernetes_versions import KUBERNETES_PINS
from tests.infra.chart_facts import CLUSTER_AUTOSCALER_APP_VERSIONS
from tests.support.synthesis import Synthesized


def cluster_props(synth: Synthesized) -> dict:
    (resource,) = synth.cluster.find_resources("AWS::EKS::Cluster").values()
    return resource["Properties"]


def charts(synth: Synthesized) -> dict[str, dict]:
    found = synth.cluster.find_resources("Custom::AWSCDK-EKS-HelmChart")
    return {r["Properties"]["Chart"]: r["Properties"] for r in found.values()}


# EKS user guide, "Kubernetes version lifecycle" (release calendar): end of standard support per minor. A cluster
# created after that date starts in extended support, its control plane at about six times the price.
STANDARD_SUPPORT_ENDS = {"1.34": datetime.date(2026, 12, 2), "1.35": datetime.date(2027, 3, 27)}
# The day this release was cut: every shipped deployment must create a cluster in standard support then.
RELEASED = datetime.date(2026, 12, 7)


def test_managed_node_groups_not_auto_mode(default: Synthesized) -> None:
    props = cluster_props(default)
    assert props["ComputeConfig"] == {"Enabled": False}


def test_every_shipped_cluster_starts_in_standard_support(
    default: Synthesized, capacity_block: Synthesized, hyperpod: Synthesized
) -> None:
    for synth in (default, capacity_block, hyperpod):
        version = cluster_props(synth)["Version"]
        assert STANDARD_SUPPORT_ENDS[version] > RELEASED, (synth.deployment.name, version)


@pytest.mark.parametrize("version", sorted(KUBERNETES_PINS))
def test_every_supported_version_has_its_pins(version: str) -> None:
    """The kubectl layer exists for the minor, kube-proxy and the Cluster Autoscaler are of the cluster's minor."""
    pins = KUBERNETES_PINS[version]
    assert pins.kubectl_layer_module.endswith("_v" + version.replace("1.", "", 1))
    assert hasattr(importlib.import_module(pins.kubectl_layer_module), pins.kubectl_layer_class)
    assert managed_addons(version)["kube-proxy"].startswith(f"v{version}.")
    app = CLUSTER_AUTOSCALER_APP_VERSIONS[pins.cluster_autoscaler_chart]
    assert app == pins.cluster_autoscaler_app and app.startswith(f"{version}.")


def test_api_authentication_and_no_implicit_admin(default: Synthesized) -> None:
    access = cluster_props(default)["AccessConfig"]
    assert access == {"AuthenticationMode": "API", "BootstrapClusterCreatorAdminPermissions": False}


def test_admin_principals_get_access_entries(capacity_block: Synthesized) -> None:
    entries = capacity_block.cluster.find_resources(
        "AWS::EKS::AccessEntry", {"Properties": {"PrincipalArn": "arn:aws:iam::123456789012:role/PlatformAdmin"}}
    )
    (entry,) = entries.values()
    (policy,) = entry["Properties"]["AccessPolicies"]
    assert policy["AccessScope"] == {"Type": "cluster"}
    assert json.dumps(policy["PolicyArn"]).endswith(':eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"]]}')


def test_all_control_plane_logs(default: Synthesized) -> None:
    enabled = {e["Type"] for e in cluster_props(default)["Logging"]["ClusterLogging"]["EnabledTypes"]}
    assert enabled == {"api", "audit", "authenticator", "controllerManager", "scheduler"}


def test_secrets_encrypted_with_a_rotating_kms_key(default: Synthesized) -> None:
    (encryption,) = cluster_props(default)["EncryptionConfig"]
    assert encryption["Resources"] == ["secrets"]
    key_id = encryption["Provider"]["KeyArn"]["Fn::GetAtt"][0]
    key = default.cluster.to_json()["Resources"][key_id]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True


def test_endpoint_private_by_default(default: Synthesized) -> None:
    vpc = cluster_props(default)["ResourcesVpcConfig"]
    assert vpc["EndpointPrivateAccess"] is True and vpc["EndpointPublicAccess"] is False


def test_public_endpoint_limited_to_configured_cidrs(capacity_block: Synthesized) -> None:
    vpc = cluster_props(capacity_block)["ResourcesVpcConfig"]
    assert vpc["EndpointPublicAccess"] is True and vpc["EndpointPrivateAccess"] is True
    assert vpc["PublicAccessCidrs"] == ["203.0.113.0/24"]


def test_cluster_uses_private_subnets_only(default: Synthesized) -> None:
    subnets = cluster_props(default)["ResourcesVpcConfig"]["SubnetIds"]
    expected = [default.stacks.cluster.resolve(s.subnet_id) for s in default.stacks.network.private_subnets]
    assert subnets == expected


@pytest.mark.parametrize("name", sorted(managed_addons("1.35")))
def test_managed_addons_are_pinned_for_the_cluster_version(default: Synthesized, name: str) -> None:
    expected = managed_addons(cluster_props(default)["Version"])[name]
    default.cluster.has_resource_properties("AWS::EKS::Addon", {"AddonName": name, "AddonVersion": expected})


@pytest.mark.parametrize("version", sorted(KUBERNETES_PINS))
def test_vpc_cni_supports_efa_only_interfaces(version: str) -> None:
    major, minor, patch = (int(x) for x in managed_addons(version)["vpc-cni"].lstrip("v").split("-")[0].split("."))
    assert (major, minor, patch) >= (1, 18, 5)


def test_nodes_wait_for_the_managed_vpc_cni(default: Synthesized) -> None:
    template = default.cluster.to_json()["Resources"]
    (cni_id,) = [
        k for k, v in template.items() if v["Type"] == "AWS::EKS::Addon" and v["Properties"]["AddonName"] == "vpc-cni"
    ]
    for resource in template.values():
        if resource["Type"] == "AWS::EKS::Nodegroup":
            assert cni_id in resource.get("DependsOn", [])
    # The GPU node groups live in their own stack, which CloudFormation creates after the whole cluster stack.
    cni = default.stacks.cluster.addons.managed["vpc-cni"]
    for group in default.stacks.gpu_nodes.gpu_node_groups.values():
        assert cni in group.nodegroup.node.dependencies
    assert default.stacks.cluster in default.stacks.gpu_nodes.dependencies


def test_managed_addons_take_over_the_bootstrapped_ones(default: Synthesized) -> None:
    """EKS installs self-managed vpc-cni, kube-proxy and coredns with a new cluster; creating the managed add-on
    over them conflicts unless it may overwrite their fields."""
    addons = default.cluster.find_resources("AWS::EKS::Addon")
    assert {a["Properties"]["AddonName"] for a in addons.values()} >= {"vpc-cni", "kube-proxy", "coredns"}
    for addon in addons.values():
        assert addon["Properties"].get("ResolveConflicts") == "OVERWRITE", addon["Properties"]["AddonName"]


def test_add_ons_that_run_deployments_wait_for_the_system_nodes(default: Synthesized) -> None:
    """coredns and the EBS CSI controller are Deployments: EKS reports them degraded while no node can run them."""
    template = default.cluster.to_json()["Resources"]
    (system_id,) = [
        k
        for k, v in template.items()
        if v["Type"] == "AWS::EKS::Nodegroup" and v["Properties"].get("Labels", {}).get("pdstack.io/pool") == "system"
    ]
    for name in ("coredns", "aws-ebs-csi-driver"):
        (addon,) = [
            v for v in template.values() if v["Type"] == "AWS::EKS::Addon" and v["Properties"]["AddonName"] == name
        ]
        assert system_id in addon.get("DependsOn", []), name


def test_ebs_csi_driver_uses_pod_identity(default: Synthesized) -> None:
    default.cluster.has_resource_properties(
        "AWS::EKS::Addon",
        {
            "AddonName": "aws-ebs-csi-driver",
            "PodIdentityAssociations": [{"RoleArn": Match.any_value(), "ServiceAccount": "ebs-csi-controller-sa"}],
        },
    )


@pytest.mark.parametrize("pin", [EFA_DEVICE_PLUGIN, NVIDIA_DEVICE_PLUGIN, LEADER_WORKER_SET], ids=lambda p: p.chart)
def test_helm_charts_are_pinned(default: Synthesized, pin) -> None:
    chart = charts(default)[pin.chart]
    assert (chart["Repository"], chart["Version"], chart["Namespace"]) == (pin.repository, pin.version, pin.namespace)


@pytest.mark.parametrize("chart_name", [EFA_DEVICE_PLUGIN.chart, NVIDIA_DEVICE_PLUGIN.chart])
def test_device_plugins_tolerate_the_gpu_taint_and_hyperpod_health(default: Synthesized, chart_name: str) -> None:
    values = json.loads(charts(default)[chart_name]["Values"])
    taint = default.deployment.gpu_node_groups[0].taints[0]
    keys = {t["key"] for t in values["tolerations"]}
    assert taint.key in keys and "sagemaker.amazonaws.com/node-health-status" in keys


def test_nvidia_device_plugin_has_mofed_off(default: Synthesized) -> None:
    values = json.loads(charts(default)[NVIDIA_DEVICE_PLUGIN.chart]["Values"])
    assert values["mofedEnabled"] is False


def test_kubectl_layer_matches_the_cluster_version(default: Synthesized) -> None:
    layers = default.cluster.find_resources(
        "AWS::Lambda::LayerVersion", {"Properties": {"Description": Match.string_like_regexp("kubectl")}}
    )
    assert layers
    version = cluster_props(default)["Version"]
    assert any(f"kubectl {version}." in r["Properties"]["Description"] for r in layers.values())
