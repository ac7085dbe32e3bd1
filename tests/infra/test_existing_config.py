"""An existing VPC and EKS cluster in the deployment file: what pdstack must be told (offline, no lookups) and what it
refuses, each with a message naming the field and the fix. The shipped example is deployments/existing-cluster.yaml."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra.config import DeploymentError, parse_deployment
from infra.gpu_capacity.node_capacity import system_controllers
from tests.support.synthesis import load_yaml

EXAMPLE = load_yaml("existing-cluster.yaml")


def changed(**changes: Any) -> dict:
    """existing-cluster.yaml with dotted-path changes (``cluster__existing__pod_identity_agent=False``); None
    removes the key."""
    data = copy.deepcopy(EXAMPLE)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        key: Any = int(leaf) if leaf.isdigit() else leaf
        if value is None:
            del node[key]
        else:
            node[key] = value
    return data


def error_for(data: dict) -> str:
    with pytest.raises(DeploymentError) as raised:
        parse_deployment(data, "test.yaml")
    return str(raised.value)


def test_the_example_names_an_existing_vpc_and_cluster() -> None:
    deployment = parse_deployment(EXAMPLE)
    assert deployment.cluster.existing is not None and deployment.network.existing is not None
    assert deployment.network.existing.gpu_subnet.availability_zone == "us-east-1a"
    assert deployment.system_node_selector == {"platform.example.com/pool": "general"}
    assert deployment.system_tolerations == [
        {"key": "platform.example.com/dedicated", "operator": "Equal", "value": "general", "effect": "NoSchedule"}
    ]


def test_a_cluster_of_its_own_keeps_the_system_pool() -> None:
    deployment = parse_deployment(load_yaml("default.yaml"))
    assert deployment.system_node_selector == {"pdstack.io/pool": "system"}
    assert deployment.system_tolerations == []


def test_an_existing_cluster_needs_its_vpc() -> None:
    message = error_for(changed(network__existing=None, network__cidr=None))
    assert "cluster.existing needs network.existing" in message


def test_config_map_authentication_needs_a_kubectl_role() -> None:
    message = error_for(changed(cluster__existing__authentication_mode="CONFIG_MAP"))
    assert "cluster.existing" in message and "'CONFIG_MAP' takes no access entries" in message
    assert "API_AND_CONFIG_MAP" in message and "kubectl_role_arn" in message
    role = "arn:aws:iam::123456789012:role/platform-kubectl"
    without_pipeline = {
        "observability": {"enabled": False},
        "autoscaling": {"enabled": False},
        "network__existing__collector_subnets": [],
    }
    accepted = parse_deployment(
        changed(
            cluster__existing__authentication_mode="CONFIG_MAP",
            cluster__existing__kubectl_role_arn=role,
            **without_pipeline,
        )
    )
    assert accepted.cluster.existing.kubectl_role_arn == role


def test_config_map_authentication_cannot_admit_the_metrics_collector() -> None:
    message = error_for(
        changed(
            cluster__existing__authentication_mode="CONFIG_MAP",
            cluster__existing__kubectl_role_arn="arn:aws:iam::123456789012:role/platform-kubectl",
        )
    )
    assert "the managed metrics collector is given its Kubernetes access through an access entry" in message


def test_a_kubectl_role_must_be_a_role_arn() -> None:
    message = error_for(changed(cluster__existing__kubectl_role_arn="arn:aws:iam::123456789012:user/someone"))
    assert "cluster.existing.kubectl_role_arn" in message


def test_the_pod_identity_agent_is_required() -> None:
    message = error_for(changed(cluster__existing__pod_identity_agent=False))
    assert "pod_identity_agent is false" in message and "eks-pod-identity-agent" in message


@pytest.mark.parametrize(("version", "accepted"), [("v1.18.4-eksbuild.1", False), ("v1.18.5-eksbuild.1", True)])
def test_the_vpc_cni_must_know_efa_only_interfaces(version: str, accepted: bool) -> None:
    data = changed(cluster__existing__vpc_cni_version=version)
    if accepted:
        assert parse_deployment(data).cluster.existing.vpc_cni_version == version
    else:
        message = error_for(data)
        assert f"vpc_cni_version={version!r} is older than 1.18.5" in message and "efa-only" in message


def test_a_malformed_vpc_cni_version_is_refused() -> None:
    message = error_for(changed(cluster__existing__vpc_cni_version="latest"))
    assert "cluster.existing.vpc_cni_version" in message and "v1.20.4-eksbuild.1" in message


def test_the_kubernetes_version_must_be_one_pdstack_pins() -> None:
    message = error_for(changed(cluster__kubernetes_version="1.29"))
    assert "cluster.kubernetes_version" in message and "1.35" in message


@pytest.mark.parametrize("field", ["endpoint_access", "system_node_count", "admin_principal_arns"])
def test_fields_of_a_cluster_pdstack_creates_are_refused_for_an_existing_one(field: str) -> None:
    value = {"endpoint_access": "private", "system_node_count": 2, "admin_principal_arns": []}[field]
    message = error_for(changed(**{f"cluster__{field}": value}))
    assert f"{field} shape a cluster pdstack creates" in message


@pytest.mark.parametrize("field", ["az_count", "gpu_az_index", "nat_gateways"])
def test_fields_of_a_vpc_pdstack_creates_are_refused_for_an_existing_one(field: str) -> None:
    message = error_for(changed(**{f"network__{field}": 2 if field != "gpu_az_index" else 0}))
    assert f"{field} shape a VPC pdstack creates" in message


def test_an_existing_vpc_states_its_cidr() -> None:
    message = error_for(changed(network__cidr=None))
    assert "network.existing needs network.cidr" in message


def test_platform_addons_need_an_existing_cluster() -> None:
    data = copy.deepcopy(load_yaml("default.yaml"))
    data["cluster"]["addons"] = {"keda": "platform"}
    message = error_for(data)
    assert "addons: keda set to 'platform'" in message and "cluster.existing" in message


def test_an_unknown_addon_source_is_refused() -> None:
    message = error_for(changed(cluster__addons__keda="none"))
    assert "cluster.addons.keda" in message and "'pdstack'" in message and "'platform'" in message


def test_the_gpu_subnet_is_one_of_the_private_subnets() -> None:
    message = error_for(changed(network__existing__gpu_subnet_id="subnet-0eeeeeeeeeeeeeee5"))
    assert "gpu_subnet_id='subnet-0eeeeeeeeeeeeeee5' is not one of private_subnets" in message


def test_one_private_subnet_per_zone() -> None:
    data = changed()
    data["network"]["existing"]["private_subnets"][1]["availability_zone"] = "us-east-1a"
    assert "one subnet per availability zone" in error_for(data)


def test_a_collector_subnet_cannot_be_a_private_subnet() -> None:
    data = changed()
    data["network"]["existing"]["collector_subnets"][0] = dict(data["network"]["existing"]["private_subnets"][1])
    assert "subnet-0bbbbbbbbbbbbbbb2 is listed twice" in error_for(data)


def test_subnets_lie_in_the_vpc() -> None:
    data = changed()
    data["network"]["existing"]["private_subnets"][1]["cidr"] = "10.99.0.0/19"
    assert "subnet-0bbbbbbbbbbbbbbb2 (10.99.0.0/19) lies outside the VPC's blocks (10.20.0.0/16)" in error_for(data)


def test_subnets_may_lie_in_a_secondary_block_of_the_vpc() -> None:
    """Review finding 6: a VPC whose nodes take 100.64.0.0/16 (a secondary block) was refused."""
    data = changed(network__existing__secondary_cidrs=["100.64.0.0/16"])
    data["network"]["existing"]["private_subnets"][1]["cidr"] = "100.64.32.0/19"
    network = parse_deployment(data, "test.yaml").network
    assert network.vpc_cidrs == ["10.20.0.0/16", "100.64.0.0/16"]
    data["network"]["existing"]["private_subnets"][1]["cidr"] = "100.65.0.0/19"
    assert (
        "subnet-0bbbbbbbbbbbbbbb2 (100.65.0.0/19) lies outside the VPC's blocks (10.20.0.0/16, 100.64.0.0/16)"
        in error_for(data)
    )


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        (["10.20.128.0/17"], "secondary_cidrs: 10.20.128.0/17 overlaps network.cidr 10.20.0.0/16"),
        (["100.64.0.0/16", "100.64.128.0/17"], "100.64.0.0/16 and 100.64.128.0/17 overlap"),
        (["100.64.0.0/33"], "is not a CIDR block"),
    ],
)
def test_secondary_blocks_are_the_vpcs_other_blocks(blocks: list[str], message: str) -> None:
    assert message in error_for(changed(network__existing__secondary_cidrs=blocks))


def test_a_scraper_inside_a_secondary_block_is_refused_and_the_client_hint_lists_every_block() -> None:
    data = changed(network__existing__secondary_cidrs=["100.64.0.0/16"])
    data["workloads"]["engine_metrics_scraper_cidrs"] = ["100.64.9.0/24"]
    assert "100.64.9.0/24 overlaps the VPC (100.64.0.0/16)" in error_for(data)
    data = changed(network__existing__secondary_cidrs=["100.64.0.0/16"])
    del data["workloads"]["router"]["allowed_client_cidrs"]
    assert 'e.g. ["10.20.0.0/16", "100.64.0.0/16"] (the VPC' in error_for(data)


def test_the_metrics_pipeline_needs_the_collectors_subnets() -> None:
    message = error_for(changed(network__existing__collector_subnets=[]))
    assert "observability.enabled needs network.existing.collector_subnets" in message


def test_the_collectors_subnets_need_two_zones() -> None:
    data = changed()
    data["network"]["existing"]["collector_subnets"][1]["availability_zone"] = "us-east-1a"
    assert "at least two availability zones" in error_for(data)


def test_collector_subnets_without_the_pipeline_are_refused() -> None:
    message = error_for(changed(observability={"enabled": False}, autoscaling={"enabled": False}))
    assert "collector_subnets is set but observability.enabled is false" in message


def test_the_routers_must_fit_the_platform_nodes_named() -> None:
    message = error_for(
        changed(cluster__existing__system_nodes__count=1, workloads__router__replicas=3, workloads__router__cpu="3")
    )
    assert "do not fit 1 m7i.2xlarge system nodes" in message and "cluster.existing.system_nodes.count" in message


def test_platform_node_types_are_ones_pdstack_can_size() -> None:
    message = error_for(changed(cluster__existing__system_nodes__instance_type="t3.nano"))
    assert "cluster.existing.system_nodes.instance_type='t3.nano'" in message and "m7i.xlarge" in message


def test_controllers_the_platform_runs_are_not_placed_by_pdstack() -> None:
    counted = system_controllers(parse_deployment(EXAMPLE))
    assert "lws-controller-manager" not in counted and "keda-operator" not in counted
    counted = system_controllers(parse_deployment(changed(cluster__addons=None)))
    assert "lws-controller-manager" in counted and "keda-operator" in counted
