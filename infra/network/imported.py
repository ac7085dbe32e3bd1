"""ImportedNetwork: an existing VPC (network.existing), imported by the ids the deployment file names, with no lookup at
synthesis and nothing created in it. It exposes what the Network construct exposes, so every consumer takes either.

What the VPC must already have (README, "Bring your own VPC and cluster"): routes from the private subnets to ECR,
STS, S3, CloudWatch Logs and the EKS API (NAT, or the endpoints the Network construct would create), the subnet tags
the Load Balancer Controller finds subnets by when the router's NLB is on, and collector subnets that hold nothing
but the managed collector's interfaces.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from infra.config.network import ExistingNetwork, ExistingSubnet


@dataclass(frozen=True)
class ImportedNetworkProps:
    existing: ExistingNetwork
    cidr: str  # network.cidr: the VPC's IPv4 block


def _subnet(scope: Construct, construct_id: str, subnet: ExistingSubnet) -> ec2.ISubnet:
    return ec2.Subnet.from_subnet_attributes(
        scope,
        construct_id,
        subnet_id=subnet.id,
        availability_zone=subnet.availability_zone,
        ipv4_cidr_block=subnet.cidr,
        route_table_id=subnet.route_table_id,
    )


class ImportedNetwork(Construct):
    """Exposes ``vpc``, ``private_subnets``, ``gpu_subnet``, ``collector_subnets``, their ``collector_cidrs`` (from the
    file: the NetworkPolicies carry them as ipBlocks) and ``interface_endpoints`` (none: the platform's)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ImportedNetworkProps) -> None:
        super().__init__(scope, construct_id)
        existing = props.existing
        private = existing.private_subnets
        route_tables = [s.route_table_id for s in private]
        self.vpc: ec2.IVpc = ec2.Vpc.from_vpc_attributes(
            self,
            "Vpc",
            vpc_id=existing.vpc_id,
            vpc_cidr_block=props.cidr,
            availability_zones=[s.availability_zone for s in private],
            private_subnet_ids=[s.id for s in private],
            private_subnet_ipv4_cidr_blocks=[s.cidr for s in private],
            private_subnet_route_table_ids=[t for t in route_tables if t] if all(route_tables) else None,
        )
        self.private_subnets: list[ec2.ISubnet] = [
            _subnet(self, f"Private{index}", subnet) for index, subnet in enumerate(private)
        ]
        self.gpu_subnet: ec2.ISubnet = self.private_subnets[[s.id for s in private].index(existing.gpu_subnet_id)]
        self.collector_subnets: list[ec2.ISubnet] = [
            _subnet(self, f"Collector{index}", subnet) for index, subnet in enumerate(existing.collector_subnets)
        ]
        self.collector_cidrs: list[str] = [subnet.cidr for subnet in existing.collector_subnets]
        self.interface_endpoints: list[ec2.InterfaceVpcEndpoint] = []
