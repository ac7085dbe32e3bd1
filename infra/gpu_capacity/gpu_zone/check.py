"""GpuZoneCheck: a deploy-time custom resource that fails the GPU stack, before any GPU capacity is created, when
the GPU subnet is not in the configured AZ id or EC2 does not offer the GPU instance types there.

The stacks are environment-agnostic (zone names come from Fn::GetAZs at deploy time), and a zone name maps to a
different physical zone in each account; the AZ id does not. So the check runs in the account, at deploy time:
ec2:DescribeSubnets and ec2:DescribeAvailabilityZones resolve the subnet's zone to its id, and
ec2:DescribeInstanceTypeOfferings (location type availability-zone-id) says whether the type is offered there.
One small Lambda with inline code (infra/gpu_capacity/gpu_zone/handler.py), read-only Describe* calls only.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.deploy_check import DeployCheck

HANDLER_SOURCE = Path(__file__).with_name("handler.py")
# EC2 Describe* actions support no resource-level permissions (Service Authorization Reference, Amazon EC2).
DESCRIBE_ACTIONS = ["ec2:DescribeSubnets", "ec2:DescribeAvailabilityZones", "ec2:DescribeInstanceTypeOfferings"]
RESOURCE_TYPE = "Custom::GpuZoneCheck"


class GpuZoneCheck(DeployCheck):
    """Exposes ``resource`` (make GPU capacity depend on it) and ``function``."""

    def __init__(
        self, scope: Construct, construct_id: str, *, subnet: ec2.ISubnet, az_id: str, instance_types: list[str]
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            handler_source=HANDLER_SOURCE,
            description=(
                "pdstack: fails the deploy when the GPU subnet's zone is not network.gpu_az_id or lacks the GPU type"
            ),
            resource_type=RESOURCE_TYPE,
            properties={"SubnetId": subnet.subnet_id, "AzId": az_id, "InstanceTypes": sorted(set(instance_types))},
            statements=[iam.PolicyStatement(actions=DESCRIBE_ACTIONS, resources=["*"])],
        )
