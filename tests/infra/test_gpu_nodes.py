"""GPU node groups: the EFA launch template is right for every catalog instance type, and the variants work."""

from __future__ import annotations

import email
import subprocess

import pytest
import yaml
from aws_cdk.assertions import Match

from infra.gpu_capacity.node_capacity import hugepages_2mi_pages_per_node
from runtime.catalog import INSTANCE_CATALOG
from tests.support.synthesis import SynthesisCache, Synthesized


def test_a_capacity_failure_rolls_back_only_the_gpu_stack(default: Synthesized) -> None:
    """InsufficientInstanceCapacity fails a node group; in its own stack it cannot roll back the EKS cluster."""
    assert (
        default.cluster.find_resources("AWS::EKS::Nodegroup", {"Properties": {"Labels": {"pdstack.io/gpu": "true"}}})
        == {}
    )
    assert default.cluster.find_resources("AWS::EC2::LaunchTemplate") == {}
    assert set(nodegroups(default)) == {g.name for g in default.deployment.gpu_node_groups}
    assert default.stacks.cluster in default.stacks.gpu_nodes.dependencies
    assert default.stacks.gpu_nodes in default.stacks.workloads.dependencies


def launch_templates(synth: Synthesized) -> dict[str, dict]:
    """LaunchTemplateData by instance type."""
    found = synth.gpu_nodes.find_resources("AWS::EC2::LaunchTemplate")
    return {
        r["Properties"]["LaunchTemplateData"]["InstanceType"]: r["Properties"]["LaunchTemplateData"]
        for r in found.values()
    }


def nodegroups(synth: Synthesized) -> dict[str, dict]:
    """GPU node group properties by their pdstack.io/node-group label."""
    found = synth.gpu_nodes.find_resources("AWS::EKS::Nodegroup")
    return {
        r["Properties"]["Labels"]["pdstack.io/node-group"]: r["Properties"]
        for r in found.values()
        if "pdstack.io/node-group" in r["Properties"].get("Labels", {})
    }


def logical_id(ref: dict) -> str:
    return ref["Fn::GetAtt"][0] if "Fn::GetAtt" in ref else ref["Ref"]


@pytest.mark.parametrize("instance_type", sorted(INSTANCE_CATALOG))
def test_every_network_card_carries_efa(all_types: Synthesized, instance_type: str) -> None:
    spec = INSTANCE_CATALOG[instance_type]
    interfaces = launch_templates(all_types)[instance_type]["NetworkInterfaces"]
    efa_cards = sorted(i["NetworkCardIndex"] for i in interfaces if i["InterfaceType"] in ("efa", "efa-only"))
    assert efa_cards == list(range(spec.network_cards))
    primary = [i for i in interfaces if i["NetworkCardIndex"] == 0 and i["DeviceIndex"] == 0]
    assert len(primary) == 1 and primary[0]["InterfaceType"] == "interface"
    assert len(interfaces) == spec.network_cards + 1
    assert all("SubnetId" not in i for i in interfaces)


def test_p5_has_32_efa_interfaces_and_the_primary_is_not_efa_only(all_types: Synthesized) -> None:
    interfaces = launch_templates(all_types)["p5.48xlarge"]["NetworkInterfaces"]
    assert {(i["NetworkCardIndex"], i["DeviceIndex"]) for i in interfaces if i["InterfaceType"] == "efa-only"} == (
        {(0, 1)} | {(card, 0) for card in range(1, 32)}
    )
    assert interfaces[0]["InterfaceType"] != "efa-only"


def test_security_groups_per_interface(default: Synthesized) -> None:
    interfaces = launch_templates(default)["p5.48xlarge"]["NetworkInterfaces"]
    gpu_stack, cluster_stack = default.stacks.gpu_nodes, default.stacks.cluster
    efa_sg = gpu_stack.resolve(cluster_stack.efa_security_group.security_group_id)  # imported from the cluster stack
    cluster_sg = gpu_stack.resolve(cluster_stack.cluster.cluster_security_group_id)
    assert interfaces[0]["Groups"] == [cluster_sg, efa_sg]
    for interface in interfaces[1:]:
        assert interface["Groups"] == [efa_sg]


def test_efa_security_group_allows_all_traffic_only_to_and_from_itself(default: Synthesized) -> None:
    ((efa_sg_id, efa_sg),) = default.cluster.find_resources(
        "AWS::EC2::SecurityGroup", {"Properties": {"GroupDescription": Match.string_like_regexp("EFA")}}
    ).items()
    # No inline rules (no open egress); the only rules are the two self-references below.
    assert "SecurityGroupEgress" not in efa_sg["Properties"] and "SecurityGroupIngress" not in efa_sg["Properties"]
    for kind, peer in (
        ("AWS::EC2::SecurityGroupIngress", "SourceSecurityGroupId"),
        ("AWS::EC2::SecurityGroupEgress", "DestinationSecurityGroupId"),
    ):
        rules = [
            r["Properties"]
            for r in default.cluster.find_resources(kind).values()
            if logical_id(r["Properties"]["GroupId"]) == efa_sg_id
        ]
        assert len(rules) == 1
        assert rules[0]["IpProtocol"] == "-1" and logical_id(rules[0][peer]) == efa_sg_id


def test_imdsv2_root_volume_and_nvme(default: Synthesized) -> None:
    data = launch_templates(default)["p5.48xlarge"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    (root,) = data["BlockDeviceMappings"]
    assert root["Ebs"]["VolumeSize"] == default.deployment.gpu_node_groups[0].root_volume_gib
    assert root["Ebs"]["Encrypted"] is True
    assert "UserData" in data


@pytest.mark.parametrize("fixture", ["default", "capacity_block", "all_types"])
def test_no_pod_reaches_the_node_role_through_imds(request: pytest.FixtureRequest, fixture: str) -> None:
    """Hop limit 1: a pod's request to IMDS crosses a second hop and gets no answer, so no pod can take the node
    role's credentials. What needs AWS credentials on the GPU nodes has them another way: the workers through Pod
    Identity, the VPC CNI, EFA plugin and Pod Identity agent on the host network (one hop)."""
    synth: Synthesized = request.getfixturevalue(fixture)
    for data in launch_templates(synth).values():
        assert data["MetadataOptions"] == {
            "HttpTokens": "required",
            "HttpPutResponseHopLimit": 1,
            "HttpEndpoint": "enabled",
        }


@pytest.mark.parametrize("fixture", ["default", "capacity_block", "all_types"])
def test_gpu_ami_type_is_the_exact_cloudformation_string(request: pytest.FixtureRequest, fixture: str) -> None:
    synth: Synthesized = request.getfixturevalue(fixture)
    groups = nodegroups(synth)
    assert groups and {g["AmiType"] for g in groups.values()} == {"AL2023_x86_64_NVIDIA"}
    assert all("InstanceTypes" not in g for g in groups.values())  # the launch template carries the type


def test_gpu_nodes_live_only_in_the_gpu_subnet(default: Synthesized, capacity_block: Synthesized) -> None:
    for synth in (default, capacity_block):
        gpu_subnet = synth.stacks.network.gpu_subnet
        expected = synth.stacks.gpu_nodes.resolve(gpu_subnet.subnet_id)
        for group in nodegroups(synth).values():
            assert group["Subnets"] == [expected]


def test_placement_group_present_by_default(default: Synthesized) -> None:
    default.gpu_nodes.resource_count_is("AWS::EC2::PlacementGroup", 1)
    default.gpu_nodes.has_resource_properties("AWS::EC2::PlacementGroup", {"Strategy": "cluster"})
    assert "Placement" in launch_templates(default)["p5.48xlarge"]


def test_capacity_block_variant(capacity_block: Synthesized) -> None:
    capacity_block.gpu_nodes.resource_count_is("AWS::EC2::PlacementGroup", 0)
    data = launch_templates(capacity_block)["p5en.48xlarge"]
    assert "Placement" not in data
    assert data["InstanceMarketOptions"] == {"MarketType": "capacity-block"}
    assert data["CapacityReservationSpecification"] == {
        "CapacityReservationTarget": {"CapacityReservationId": "cr-0123456789abcdef0"}
    }
    assert nodegroups(capacity_block)["p5en-block"]["CapacityType"] == "CAPACITY_BLOCK"
    assert len(data["NetworkInterfaces"]) == 17


def test_on_demand_reservation_variant(synthesized: SynthesisCache) -> None:
    from infra.config import parse_deployment
    from tests.support.synthesis import load_yaml

    data = load_yaml("default.yaml")
    data["gpu_node_groups"][0]["capacity"] = {"type": "capacity-reservation", "reservation_id": "cr-0fedcba9876543210"}
    data["gpu_node_groups"][0]["placement_group"] = False
    synth = synthesized.get(parse_deployment(data))
    template = launch_templates(synth)["p5.48xlarge"]
    assert template["CapacityReservationSpecification"]["CapacityReservationTarget"] == {
        "CapacityReservationId": "cr-0fedcba9876543210"
    }
    assert "InstanceMarketOptions" not in template
    assert nodegroups(synth)["p5"]["CapacityType"] == "ON_DEMAND"
    assert nodegroups(synth)["p5"]["UpdateConfig"] == {"MaxUnavailable": 1}  # the default surge update


def test_capacity_block_updates_terminate_before_they_launch(capacity_block: Synthesized) -> None:
    """The block holds exactly desired instances; a surge update would wait for one it does not have."""
    group = nodegroups(capacity_block)["p5en-block"]
    assert group["CapacityType"] == "CAPACITY_BLOCK"
    assert group["UpdateConfig"] == {"MaxUnavailable": 1, "UpdateStrategy": "MINIMAL"}


def test_gpu_taint_and_labels(default: Synthesized, capacity_block: Synthesized) -> None:
    group = nodegroups(default)["p5"]
    assert group["Taints"] == [{"Effect": "NO_SCHEDULE", "Key": "nvidia.com/gpu", "Value": "true"}]
    assert group["Labels"]["pdstack.io/efa"] == "true"
    assert nodegroups(capacity_block)["p5en-block"]["Labels"]["pdstack.io/capacity"] == "block"


def test_user_data_reserves_the_hugepages_before_the_kubelet(default: Synthesized, tmp_path) -> None:
    """The launch template's user data is MIME multi-part, as EKS merges it: the nodeadm NodeConfig, and a shell
    script cloud-init runs (before nodeadm-run starts the kubelet) that reserves the workers' hugepages. The script
    runs here with sysctl recorded and /etc/sysctl.d private."""
    user_data = launch_templates(default)["p5.48xlarge"]["UserData"]["Fn::Base64"]
    message = email.message_from_string(user_data)
    assert message.is_multipart()
    parts = {part.get_content_type(): part.get_payload() for part in message.get_payload()}
    assert set(parts) == {"application/node.eks.aws", "text/x-shellscript"}
    assert yaml.safe_load(str(parts["application/node.eks.aws"]))["spec"]["instance"]["localStorage"] == {
        "strategy": "RAID0"
    }
    (tmp_path / "bin").mkdir()
    recorder = tmp_path / "bin" / "sysctl"
    recorder.write_text(f'#!/bin/bash\necho "sysctl $*" >> {tmp_path}/calls\n')
    recorder.chmod(0o755)
    (tmp_path / "script").write_text(parts["text/x-shellscript"])
    sandbox = 'mount -t tmpfs none /etc/sysctl.d && PATH="$1/bin:$PATH" bash "$1/script" && cat /etc/sysctl.d/*'
    result = subprocess.run(
        ["unshare", "-rm", "bash", "-c", sandbox, "sandbox", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    pages = hugepages_2mi_pages_per_node(default.deployment, "p5.48xlarge")
    assert pages > 0 and f"vm.nr_hugepages = {pages}" in result.stdout
    assert (tmp_path / "calls").read_text().splitlines() == [f"sysctl -w vm.nr_hugepages={pages}"]


def test_a_capacity_block_group_is_created_empty(capacity_block: Synthesized) -> None:
    """Created before its block starts, a CAPACITY_BLOCK node group must ask for no nodes (EKS user guide, Capacity
    Blocks with managed node groups): the shipped example starts at 0 and is scaled when the block begins."""
    for group in nodegroups(capacity_block).values():
        if group["CapacityType"] == "CAPACITY_BLOCK":
            assert group["ScalingConfig"]["DesiredSize"] == 0
            assert group["ScalingConfig"]["MinSize"] == 0
