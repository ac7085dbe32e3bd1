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

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

HANDLER_SOURCE = Path(__file__).with_name("handler.py")
# EC2 Describe* actions support no resource-level permissions (Service Authorization Reference, Amazon EC2).
DESCRIBE_ACTIONS = ["ec2:DescribeSubnets", "ec2:DescribeAvailabilityZones", "ec2:DescribeInstanceTypeOfferings"]
RESOURCE_TYPE = "Custom::GpuZoneCheck"


class GpuZoneCheck(Construct):
    """Exposes ``resource`` (make GPU capacity depend on it) and ``function``."""

    def __init__(
        self, scope: Construct, construct_id: str, *, subnet: ec2.ISubnet, az_id: str, instance_types: list[str]
    ) -> None:
        super().__init__(scope, construct_id)
        source = HANDLER_SOURCE.read_text()
        if len(source) > 4096:  # CloudFormation's limit on inline (ZipFile) code
            raise ValueError(f"{HANDLER_SOURCE} is {len(source)} characters; inline Lambda code takes 4096 at most")
        self.function = lambda_.Function(
            self,
            "Handler",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="index.handler",
            code=lambda_.Code.from_inline(source),
            timeout=cdk.Duration.seconds(60),
            description=(
                "pdstack: fails the deploy when the GPU subnet's zone is not network.gpu_az_id or lacks the GPU type"
            ),
            log_group=logs.LogGroup(
                self, "Logs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=cdk.RemovalPolicy.DESTROY
            ),
        )
        self.function.add_to_role_policy(iam.PolicyStatement(actions=DESCRIBE_ACTIONS, resources=["*"]))
        self.resource = cdk.CustomResource(
            self,
            "Check",
            service_token=self.function.function_arn,
            resource_type=RESOURCE_TYPE,
            properties={"SubnetId": subnet.subnet_id, "AzId": az_id, "InstanceTypes": sorted(set(instance_types))},
        )
        # The role's policy is a resource of its own: the function must not run before it exists.
        self.resource.node.add_dependency(self.function.role)
