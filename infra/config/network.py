"""The VPC: its address block, zones, the GPU zone (by name index and by AZ id) and NAT gateways; or an existing VPC
named by its ids (``existing``), which pdstack imports without a lookup and adds nothing to."""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, field_validator, model_validator

from infra.config.common import Strict

# An AZ id: region code and zone number (use1-az4, apne1-az1), with a Local Zone part where there is one
# (use1-bos1-az1).
_AZ_ID = re.compile(r"^[a-z]{3,6}[0-9]+(-[a-z]+[0-9]+)?-az[0-9]+$")
# A zone name: the region and a letter (us-east-1a), with a Local Zone part where there is one (us-east-1-bos-1a).
_ZONE_NAME = r"^[a-z]{2}(-[a-z]+)+-[0-9]+(-[a-z]+-[0-9]+)?[a-z]$"
# The AWS managed collector takes 1 to 5 subnets in at least two zones (infra/network/stack.py says where from).
COLLECTOR_MAX_SUBNETS = 5
# The fields that shape a VPC pdstack creates; an existing VPC has its own.
OWNED_VPC_FIELDS = ("az_count", "availability_zones", "gpu_az_index", "nat_gateways")


def _cidr_block(value: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise ValueError(f"{value!r} is not a CIDR block such as 10.0.0.0/16") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise ValueError(f"{value!r}: pdstack addresses pods over IPv4; name the VPC's IPv4 block")
    return net


class ExistingSubnet(Strict):
    """A subnet of the existing VPC, as ``aws ec2 describe-subnets`` shows it: pdstack reads nothing at synthesis."""

    id: str = Field(pattern=r"^subnet-[0-9a-f]{8,17}$")
    availability_zone: str = Field(pattern=_ZONE_NAME)
    cidr: str
    # Imported subnets without one make CDK warn and refuse route-table lookups; pdstack adds no routes, so optional.
    route_table_id: str | None = Field(default=None, pattern=r"^rtb-[0-9a-f]{8,17}$")

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        _cidr_block(value)
        return value


class ExistingNetwork(Strict):
    """A VPC the platform already runs. pdstack creates no VPC, subnets, NAT, endpoints or flow logs in it; it places
    its GPU nodes in ``gpu_subnet_id``, its kubectl handler and the platform-side pods in ``private_subnets``, and
    (observability on) admits the managed collector from ``collector_subnets``, which must hold nothing else: the
    serving NetworkPolicies admit every address in them."""

    vpc_id: str = Field(pattern=r"^vpc-[0-9a-f]{8,17}$")
    # One per zone: the subnets the cluster's nodes and pdstack's kubectl handler use (routes to ECR, STS, S3 and
    # the EKS API through NAT or endpoints: README, "Bring your own VPC and cluster").
    private_subnets: list[ExistingSubnet] = Field(min_length=2)
    gpu_subnet_id: str = Field(pattern=r"^subnet-[0-9a-f]{8,17}$")
    collector_subnets: list[ExistingSubnet] = Field(default_factory=list, max_length=COLLECTOR_MAX_SUBNETS)
    # The VPC's secondary IPv4 blocks (aws ec2 describe-vpcs: CidrBlockAssociationSet past the first), e.g. a
    # 100.64.0.0/16 the nodes and pods take their addresses from: subnets may lie in any of the VPC's blocks, and the
    # NetworkPolicies count every block as the VPC.
    secondary_cidrs: list[str] = Field(default_factory=list, max_length=49)  # a VPC holds 50 IPv4 blocks by default

    @field_validator("secondary_cidrs")
    @classmethod
    def _secondary(cls, value: list[str]) -> list[str]:
        blocks = [_cidr_block(cidr) for cidr in value]
        for i, block in enumerate(blocks):
            for other in blocks[i + 1 :]:
                if block.overlaps(other):
                    raise ValueError(f"secondary_cidrs: {block} and {other} overlap; a VPC's blocks never do")
        return value

    @model_validator(mode="after")
    def _subnets(self) -> ExistingNetwork:
        zones = [s.availability_zone for s in self.private_subnets]
        if len(set(zones)) != len(zones):
            raise ValueError(
                f"private_subnets: one subnet per availability zone (got zones {', '.join(zones)}); list the one "
                "in each zone the cluster's nodes use"
            )
        ids = [s.id for s in (*self.private_subnets, *self.collector_subnets)]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(
                f"{', '.join(repeated)} is listed twice: the collector's subnets hold nothing but its interfaces, "
                "so they cannot be private subnets too"
            )
        if self.gpu_subnet_id not in {s.id for s in self.private_subnets}:
            raise ValueError(
                f"gpu_subnet_id={self.gpu_subnet_id!r} is not one of private_subnets "
                f"({', '.join(s.id for s in self.private_subnets)}): the GPU subnet is the private subnet of the GPU "
                "zone"
            )
        if self.collector_subnets and len({s.availability_zone for s in self.collector_subnets}) < 2:
            raise ValueError(
                "collector_subnets: the managed collector needs subnets in at least two availability zones"
            )
        return self

    @property
    def gpu_subnet(self) -> ExistingSubnet:
        return next(s for s in self.private_subnets if s.id == self.gpu_subnet_id)


class NetworkConfig(Strict):
    cidr: str = "10.0.0.0/16"
    az_count: int = Field(default=2, ge=2, le=6)
    availability_zones: list[str] = Field(default_factory=list)
    gpu_az_index: int = Field(default=0, ge=0)
    # The GPU zone's AZ id (use1-az4): zone names map to different physical zones in each account, ids do not.
    # Required for on-demand GPU capacity; the GPU stacks check it at deploy time (infra/gpu_capacity/gpu_zone/).
    gpu_az_id: str | None = None
    nat_gateways: int = Field(default=1, ge=1, le=6)
    # An existing VPC: ``cidr`` is then its primary IPv4 block (its others: existing.secondary_cidrs), and the fields
    # of OWNED_VPC_FIELDS do not apply.
    existing: ExistingNetwork | None = None

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        _cidr_block(value)
        return value

    @property
    def vpc_cidrs(self) -> list[str]:
        """Every IPv4 block of the VPC: ``cidr`` and, for an existing VPC, its secondary blocks. What a VPC-wide
        address rule (NetworkPolicies, overlap checks) must cover."""
        return [self.cidr, *(self.existing.secondary_cidrs if self.existing is not None else [])]

    @field_validator("gpu_az_id")
    @classmethod
    def _az_id(cls, value: str | None) -> str | None:
        if value is not None and not _AZ_ID.match(value):
            raise ValueError(
                f"{value!r} is not an availability zone id such as use1-az4 (aws ec2 "
                "describe-availability-zones --query 'AvailabilityZones[].[ZoneName,ZoneId]')"
            )
        return value

    @model_validator(mode="after")
    def _zones(self) -> NetworkConfig:
        if self.existing is not None:
            return self._check_existing(self.existing)
        net = ipaddress.ip_network(self.cidr)
        if not 16 <= net.prefixlen <= 20:
            raise ValueError(f"cidr={self.cidr!r}: the VPC needs a /16 to /20 block to hold pod IPs on GPU nodes")
        if self.availability_zones and len(self.availability_zones) != self.az_count:
            raise ValueError(
                f"availability_zones lists {len(self.availability_zones)} zones but az_count is {self.az_count}"
            )
        if self.gpu_az_index >= self.az_count:
            raise ValueError(
                f"gpu_az_index={self.gpu_az_index} is outside the VPC's {self.az_count} availability zones "
                f"(valid: 0..{self.az_count - 1})"
            )
        if self.nat_gateways > self.az_count:
            raise ValueError(f"nat_gateways={self.nat_gateways} exceeds az_count={self.az_count}")
        return self

    def _check_existing(self, existing: ExistingNetwork) -> NetworkConfig:
        owned = [f for f in OWNED_VPC_FIELDS if f in self.model_fields_set]
        if owned:
            raise ValueError(
                f"{', '.join(owned)} shape a VPC pdstack creates; with network.existing the VPC is yours: remove them"
            )
        if "cidr" not in self.model_fields_set:
            raise ValueError(
                "network.existing needs network.cidr: the existing VPC's IPv4 block (NetworkPolicies "
                "and the checks compare addresses with it)"
            )
        primary = _cidr_block(self.cidr)
        for cidr in existing.secondary_cidrs:
            if _cidr_block(cidr).overlaps(primary):
                raise ValueError(
                    f"network.existing.secondary_cidrs: {cidr} overlaps network.cidr {self.cidr}; list only the VPC's "
                    "other blocks there"
                )
        blocks = [_cidr_block(cidr) for cidr in self.vpc_cidrs]
        for subnet in (*existing.private_subnets, *existing.collector_subnets):
            if not any(_cidr_block(subnet.cidr).subnet_of(block) for block in blocks):
                listed = ", ".join(self.vpc_cidrs)
                raise ValueError(
                    f"existing subnet {subnet.id} ({subnet.cidr}) lies outside the VPC's blocks ({listed}): "
                    "network.cidr is the primary block, network.existing.secondary_cidrs the others"
                )
        return self
