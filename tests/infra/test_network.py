"""The VPC: private subnets behind NAT, a one-zone GPU subnet, endpoints and flow logs."""

from __future__ import annotations

from aws_cdk.assertions import Match

from infra.network.stack import INTERFACE_ENDPOINTS
from tests.support.synthesis import Synthesized


def test_private_subnets_route_through_nat(default: Synthesized) -> None:
    default.network.resource_count_is("AWS::EC2::NatGateway", default.deployment.network.nat_gateways)
    private = default.network.find_resources(
        "AWS::EC2::Subnet",
        {
            "Properties": {
                "MapPublicIpOnLaunch": False,
                "Tags": Match.array_with([{"Key": "aws-cdk:subnet-type", "Value": "Private"}]),
            }
        },
    )
    assert len(private) == default.deployment.network.az_count
    routes = default.network.find_resources(
        "AWS::EC2::Route", {"Properties": {"DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": Match.any_value()}}
    )
    assert len(routes) == default.deployment.network.az_count


def test_gpu_subnet_is_the_configured_zone(capacity_block: Synthesized) -> None:
    index = capacity_block.deployment.network.gpu_az_index
    assert capacity_block.stacks.network.gpu_subnet is capacity_block.stacks.network.private_subnets[index]
    zone = capacity_block.stacks.network.resolve(capacity_block.stacks.network.gpu_subnet.availability_zone)
    assert zone == capacity_block.deployment.network.availability_zones[index] == "us-east-2b"


def test_endpoints(default: Synthesized) -> None:
    default.network.has_resource_properties(
        "AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway", "ServiceName": Match.any_value()}
    )
    interface = default.network.find_resources(
        "AWS::EC2::VPCEndpoint", {"Properties": {"VpcEndpointType": "Interface", "PrivateDnsEnabled": True}}
    )
    services = {str(r["Properties"]["ServiceName"]) for r in interface.values()}
    assert len(interface) == len(INTERFACE_ENDPOINTS)
    for suffix in ("ecr.api", "ecr.dkr", "sts", "logs"):
        assert any(suffix in s for s in services), suffix


def test_flow_logs_capture_all_traffic_encrypted(default: Synthesized) -> None:
    default.network.has_resource_properties(
        "AWS::EC2::FlowLog", {"ResourceType": "VPC", "TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"}
    )
    default.network.has_resource_properties(
        "AWS::Logs::LogGroup", {"KmsKeyId": Match.any_value(), "RetentionInDays": Match.any_value()}
    )


def test_default_security_group_is_restricted(default: Synthesized) -> None:
    default.network.resource_count_is("Custom::VpcRestrictDefaultSG", 1)
