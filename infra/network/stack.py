"""NetworkStack: the VPC, its private subnets behind NAT, the GPU subnet pinned to one zone, the metrics collector's
own subnets, endpoints and flow logs.

The collector's subnets exist so that the serving NetworkPolicies can admit the AWS managed collector by address
without admitting any pod: the VPC CNI gives a pod an IP of its node's subnet, and no node group, HyperPod instance
group or control-plane ENI is ever placed in these subnets, so an address in them is the collector's ENI or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import NetworkConfig

# The AWS managed collector (AWS::APS::Scraper, Source.EksConfiguration) needs at least two subnets in at least two
# availability zones (Amazon Managed Service for Prometheus user guide, "Set up managed collectors for Amazon EKS",
# creating a scraper), and SubnetIds takes at most 5 (API reference, EksConfiguration; CloudFormation reference,
# AWS::APS::Scraper EksConfiguration: Minimum 1, Maximum 5). The service creates one ENI per subnet, used to connect to
# the cluster inside the VPC (API reference, CreateScraper). Delivery to the workspace does not go through them (the
# CloudWatch user guide says so of the same collector's VPC variant: the subnets give reach to the targets, not the
# delivery path), so these subnets route nowhere beyond the VPC. The same guide requires the cluster endpoint to include
# private access
# (infra/config/ checks it). A /28 is the smallest subnet a VPC takes (11 usable addresses, one ENI per zone here).
COLLECTOR_SUBNET_GROUP = "collector"
COLLECTOR_CIDR_MASK = 28
COLLECTOR_MAX_SUBNETS = 5

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
    metrics_collector: bool  # the observability pipeline is on: give its collector subnets of its own


class Network(Construct):
    """Exposes ``vpc``, ``private_subnets``, ``gpu_subnet`` (EFA does not cross zones: GPU nodes live there),
    ``collector_subnets`` (the managed collector's, one per zone up to its five; none when the pipeline is off), their
    ``collector_cidrs``, and ``interface_endpoints``."""

    def __init__(self, scope: Construct, construct_id: str, *, props: NetworkProps) -> None:
        super().__init__(scope, construct_id)
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
                # Last, so that switching the pipeline on or off leaves the other subnets' CIDRs where they are.
                *(
                    [
                        ec2.SubnetConfiguration(
                            name=COLLECTOR_SUBNET_GROUP,
                            subnet_type=ec2.SubnetType.PRIVATE_ISOLATED,
                            cidr_mask=COLLECTOR_CIDR_MASK,
                        )
                    ]
                    if props.metrics_collector
                    else []
                ),
            ],
        )
        self.private_subnets: list[ec2.ISubnet] = list(self.vpc.private_subnets)
        self.collector_subnets: list[ec2.ISubnet] = (
            list(self.vpc.select_subnets(subnet_group_name=COLLECTOR_SUBNET_GROUP).subnets)[:COLLECTOR_MAX_SUBNETS]
            if props.metrics_collector
            else []
        )
        # Concrete CIDRs (the VPC allocates them at synthesis): the NetworkPolicies carry them as ipBlocks.
        self.collector_cidrs: list[str] = [subnet.ipv4_cidr_block for subnet in self.collector_subnets]
        self.gpu_subnet: ec2.ISubnet = self.private_subnets[config.gpu_az_index]
        # Load balancers created by the cluster find their subnets by these tags.
        for subnet in self.vpc.public_subnets:
            cdk.Tags.of(subnet).add("kubernetes.io/role/elb", "1")
        for subnet in self.private_subnets:
            cdk.Tags.of(subnet).add("kubernetes.io/role/internal-elb", "1")

        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
        self.interface_endpoints = [
            self.vpc.add_interface_endpoint(
                name,
                service=service,
                private_dns_enabled=True,
                subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            )
            for name, service in INTERFACE_ENDPOINTS.items()
        ]

        flow_log_key = kms.Key(
            self,
            "FlowLogKey",
            enable_key_rotation=True,
            description="VPC flow log encryption",
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        flow_log_key.grant_encrypt_decrypt(
            cdk.aws_iam.ServicePrincipal(f"logs.{cdk.Stack.of(self).region}.amazonaws.com")
        )
        flow_log_group = logs.LogGroup(
            self,
            "FlowLogGroup",
            retention=logs.RetentionDays.THREE_MONTHS,
            encryption_key=flow_log_key,
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


class NetworkStack(cdk.Stack):
    """The Network construct in a stack of its own (pdstack's app), as ``network``. Its id is "Default", which CDK
    leaves out of logical ids: the resources keep the ids they had when the stack built them itself."""

    def __init__(self, scope: Construct, construct_id: str, *, props: NetworkProps, **kwargs: Any) -> None:
        self.configured_zones = list(props.config.availability_zones)
        super().__init__(scope, construct_id, **kwargs)
        self.network = network = Network(self, "Default", props=props)
        self.vpc, self.private_subnets, self.gpu_subnet = network.vpc, network.private_subnets, network.gpu_subnet
        self.collector_subnets, self.collector_cidrs = network.collector_subnets, network.collector_cidrs
        self.interface_endpoints = network.interface_endpoints

    @property
    def availability_zones(self) -> list[str]:
        """The configured zones when listed: a concrete account/region then needs no AZ lookup (no credentials)."""
        return self.configured_zones or super().availability_zones
