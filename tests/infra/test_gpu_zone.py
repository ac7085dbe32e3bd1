"""The GPU zone by AZ id: required for on-demand GPU capacity, and checked at deploy time before GPU capacity exists.

Zone names map to different physical zones in each account and p5-class types are not offered in every zone, so
"the first zone" may hold no p5 at all. The check is a custom resource (infra/gpu_capacity/gpu_zone) every GPU node
group and the HyperPod cluster depend on; its handler runs here against a stub EC2 client.
"""

from __future__ import annotations

import copy

import pytest

from infra.config import DeploymentError, parse_deployment
from infra.gpu_capacity.gpu_zone import handler
from infra.gpu_capacity.gpu_zone.check import HANDLER_SOURCE, RESOURCE_TYPE
from tests.support.synthesis import Synthesized, load_yaml


def error_for(data: dict) -> str:
    with pytest.raises(DeploymentError) as raised:
        parse_deployment(data, "test")
    return str(raised.value)


def without_zone_id(name: str) -> dict:
    data = copy.deepcopy(load_yaml(name))
    del data["network"]["gpu_az_id"]
    return data


@pytest.mark.parametrize("name", ["default.yaml", "wide-ep.yaml", "hyperpod.yaml"])
def test_on_demand_gpu_capacity_needs_the_zone_id(name: str) -> None:
    message = error_for(without_zone_id(name))
    assert "network.gpu_az_id is required for on-demand GPU capacity" in message
    assert "describe-instance-type-offerings --location-type availability-zone-id" in message


def test_reserved_capacity_keeps_its_zone_without_an_id() -> None:
    """A capacity block or reservation already fixes the zone (and hyperpod with a training plan)."""
    assert "gpu_az_id" not in load_yaml("capacity-block.yaml")["network"]
    assert parse_deployment(load_yaml("capacity-block.yaml")).network.gpu_az_id is None
    data = without_zone_id("hyperpod.yaml")
    data["hyperpod"]["instance_groups"][0]["training_plan_arn"] = (
        "arn:aws:sagemaker:us-east-1:123456789012:training-plan/plan-1"
    )
    assert parse_deployment(data).network.gpu_az_id is None


@pytest.mark.parametrize("bad", ["us-east-1a", "use1-az", "USE1-AZ4", "az4", "use1_az4", ""])
def test_a_malformed_zone_id_is_refused(bad: str) -> None:
    data = copy.deepcopy(load_yaml("default.yaml"))
    data["network"]["gpu_az_id"] = bad
    message = error_for(data)
    assert "network" in message and "is not an availability zone id such as use1-az4" in message


@pytest.mark.parametrize("good", ["use1-az4", "apne1-az1", "usw2-az2", "use1-bos1-az1"])
def test_zone_ids_are_accepted(good: str) -> None:
    data = copy.deepcopy(load_yaml("default.yaml"))
    data["network"]["gpu_az_id"] = good
    assert parse_deployment(data).network.gpu_az_id == good


def zone_checks(template) -> dict[str, dict]:
    return template.find_resources(RESOURCE_TYPE)


def test_every_gpu_node_group_waits_for_the_zone_check(default: Synthesized) -> None:
    ((check_id, check),) = zone_checks(default.gpu_nodes).items()
    assert check["Properties"]["AzId"] == default.deployment.network.gpu_az_id
    assert check["Properties"]["InstanceTypes"] == ["p5.48xlarge"]
    nodegroups = default.gpu_nodes.find_resources("AWS::EKS::Nodegroup")
    assert nodegroups
    for name, nodegroup in nodegroups.items():
        assert check_id in nodegroup.get("DependsOn", []), name


def test_the_subnet_checked_is_the_one_the_node_groups_use(default: Synthesized) -> None:
    ((_, check),) = zone_checks(default.gpu_nodes).items()
    for nodegroup in default.gpu_nodes.find_resources("AWS::EKS::Nodegroup").values():
        assert nodegroup["Properties"]["Subnets"] == [check["Properties"]["SubnetId"]]


def test_the_hyperpod_cluster_waits_for_the_zone_check(hyperpod: Synthesized) -> None:
    ((check_id, check),) = zone_checks(hyperpod.hyperpod).items()
    assert check["Properties"]["InstanceTypes"] == []  # ml.* offerings are SageMaker's, not EC2's
    (cluster,) = hyperpod.hyperpod.find_resources("AWS::SageMaker::Cluster").values()
    assert check_id in cluster["DependsOn"]
    assert cluster["Properties"]["VpcConfig"]["Subnets"] == [check["Properties"]["SubnetId"]]


def test_no_zone_check_without_a_zone_id(capacity_block: Synthesized) -> None:
    assert zone_checks(capacity_block.gpu_nodes) == {}


def test_the_zone_check_can_only_describe(default: Synthesized) -> None:
    """Its role's only statements: the three read-only Describe* calls (no resource-level permissions exist)."""
    ((_, check),) = zone_checks(default.gpu_nodes).items()
    function_id = check["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
    function = default.gpu_nodes.find_resources("AWS::Lambda::Function")[function_id]
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = [
        p
        for p in default.gpu_nodes.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    statements = [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]
    ((statement),) = statements
    assert statement["Effect"] == "Allow" and statement["Resource"] == "*" and "Condition" not in statement
    assert set(statement["Action"]) == {
        "ec2:DescribeSubnets",
        "ec2:DescribeAvailabilityZones",
        "ec2:DescribeInstanceTypeOfferings",
    }
    assert function["Properties"]["Code"]["ZipFile"] == HANDLER_SOURCE.read_text()


class StubEc2:
    """EC2 as seen from one account: zone names to ids, and the offerings per zone id."""

    def __init__(self, zones: dict[str, str], offered: dict[str, list[str]]) -> None:
        self.zones, self.offered = zones, offered
        self.calls: list[str] = []

    def describe_subnets(self, SubnetIds: list[str]) -> dict:
        return {"Subnets": [{"SubnetId": SubnetIds[0], "AvailabilityZone": "us-east-1a"}]}

    def describe_availability_zones(self, ZoneNames: list[str]) -> dict:
        return {"AvailabilityZones": [{"ZoneName": n, "ZoneId": self.zones[n]} for n in ZoneNames]}

    def describe_instance_type_offerings(self, LocationType: str, Filters: list[dict]) -> dict:
        self.calls.append(LocationType)
        where = {f["Name"]: f["Values"] for f in Filters}
        (zone,) = where["location"]
        return {
            "InstanceTypeOfferings": [
                {"InstanceType": t, "Location": zone} for t in where["instance-type"] if t in self.offered.get(zone, [])
            ]
        }


def test_the_check_passes_where_the_zone_and_type_match() -> None:
    ec2 = StubEc2({"us-east-1a": "use1-az4"}, {"use1-az4": ["p5.48xlarge"]})
    assert handler.zone_problems(ec2, "subnet-1", "use1-az4", ["p5.48xlarge"]) == []
    assert ec2.calls == ["availability-zone-id"]


def test_the_check_names_the_zone_the_subnet_is_really_in() -> None:
    ec2 = StubEc2({"us-east-1a": "use1-az1"}, {"use1-az4": ["p5.48xlarge"]})
    (problem,) = handler.zone_problems(ec2, "subnet-1", "use1-az4", ["p5.48xlarge"])
    assert "subnet-1 is in us-east-1a = use1-az1" in problem and "network.gpu_az_id is use1-az4" in problem
    assert "gpu_az_index" in problem


def test_the_check_refuses_a_zone_without_the_type() -> None:
    ec2 = StubEc2({"us-east-1a": "use1-az4"}, {"use1-az4": ["p4d.24xlarge"]})
    (problem,) = handler.zone_problems(ec2, "subnet-1", "use1-az4", ["p4d.24xlarge", "p5.48xlarge"])
    assert "EC2 does not offer p5.48xlarge in use1-az4" in problem


EVENT = {"StackId": "s", "RequestId": "r", "LogicalResourceId": "l", "ResponseURL": "https://example.invalid/"}


def test_a_failed_check_fails_the_resource_with_the_reason() -> None:
    ec2 = StubEc2({"us-east-1a": "use1-az1"}, {})
    event = {
        **EVENT,
        "RequestType": "Create",
        "ResourceProperties": {"SubnetId": "subnet-1", "AzId": "use1-az4", "InstanceTypes": ["p5.48xlarge"]},
    }
    answer = handler.outcome(event, ec2)
    assert answer["Status"] == "FAILED" and "use1-az1" in answer["Reason"]
    assert handler.outcome({**event, "RequestType": "Delete"}, ec2)["Status"] == "SUCCESS"


def test_an_error_in_the_check_fails_the_resource_instead_of_hanging() -> None:
    class Denied(StubEc2):
        def describe_subnets(self, SubnetIds: list[str]) -> dict:
            raise RuntimeError("UnauthorizedOperation")

    event = {
        **EVENT,
        "RequestType": "Update",
        "ResourceProperties": {"SubnetId": "subnet-1", "AzId": "use1-az4", "InstanceTypes": []},
    }
    answer = handler.outcome(event, Denied({}, {}))
    assert answer["Status"] == "FAILED" and "could not run: UnauthorizedOperation" in answer["Reason"]
