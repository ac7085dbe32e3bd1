"""NetworkStack: the VPC, its private subnets behind NAT, the GPU subnet pinned to one zone, endpoints and flow logs."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import NetworkConfig

# Interface endpoints that keep image pulls, credentials and logs off the NAT path.
INTERFACE_ENDPOINTS = {
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
}


@dataclass(frozen=True)
class NetworkProps:
    config: NetworkConfig


class NetworkStack(cdk.Stack):
    """Exposes ``vpc``, ``private_subnets``, ``gpu_subnet`` and ``interface_endpoints`` (EFA does not cross zones: GPU nodes live there)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: NetworkProps, **kwargs: object) -> None:
        self.configured_zones = list(props.config.availability_zones)
        super().__init__(scope, construct_id, **kwargs)
        config = props.config

        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(config.cidr),
            max_azs=None if config.availability_zones else config.az_count,
            availability_zones=list(config.availability_zones) or None,
            nat_gateways=config.nat_gateways,
            restrict_default_security_group=True,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                # /19 per zone: pods on GPU nodes take VPC IPs; efa-only interfaces take none.
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=19),
            ],
        )
        self.private_subnets: list[ec2.ISubnet] = list(self.vpc.private_subnets)
        self.gpu_subnet: ec2.ISubnet = self.private_subnets[config.gpu_az_index]
        # Load balancers created by the cluster find their subnets by these tags.
        for subnet in self.vpc.public_subnets:
            cdk.Tags.of(subnet).add("kubernetes.io/role/elb", "1")
        for subnet in self.private_subnets:
            cdk.Tags.of(subnet).add("kubernetes.io/role/internal-elb", "1")

        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
        self.interface_endpoints = [
            self.vpc.add_interface_endpoint(
                name, service=service, private_dns_enabled=True,
                subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            )
            for name, service in INTERFACE_ENDPOINTS.items()
        ]

        flow_log_key = kms.Key(self, "FlowLogKey", enable_key_rotation=True, description="VPC flow log encryption")
        flow_log_key.grant_encrypt_decrypt(cdk.aws_iam.ServicePrincipal(f"logs.{self.region}.amazonaws.com"))
        flow_log_group = logs.LogGroup(
            self, "FlowLogGroup", retention=logs.RetentionDays.THREE_MONTHS, encryption_key=flow_log_key,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )

        cdk.CfnOutput(self, "VpcId", value=self.vpc.vpc_id)
        cdk.CfnOutput(self, "GpuSubnetId", value=self.gpu_subnet.subnet_id)
        cdk.CfnOutput(self, "GpuAvailabilityZone", value=self.gpu_subnet.availability_zone)

    @property
    def availability_zones(self) -> list[str]:
        """The configured zones when listed: a concrete account/region then needs no AZ lookup (no credentials)."""
        return self.configured_zones or super().availability_zones
