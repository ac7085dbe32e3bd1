"""The VPC: its address block, zones, the GPU zone (by name index and by AZ id) and NAT gateways."""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, field_validator, model_validator

from infra.config.common import Strict

# An AZ id: region code and zone number (use1-az4, apne1-az1), with a Local Zone part where there is one
# (use1-bos1-az1).
_AZ_ID = re.compile(r"^[a-z]{3,6}[0-9]+(-[a-z]+[0-9]+)?-az[0-9]+$")


class NetworkConfig(Strict):
    cidr: str = "10.0.0.0/16"
    az_count: int = Field(default=2, ge=2, le=6)
    availability_zones: list[str] = Field(default_factory=list)
    gpu_az_index: int = Field(default=0, ge=0)
    # The GPU zone's AZ id (use1-az4): zone names map to different physical zones in each account, ids do not.
    # Required for on-demand GPU capacity; the GPU stacks check it at deploy time (infra/gpu_capacity/gpu_zone/).
    gpu_az_id: str | None = None
    nat_gateways: int = Field(default=1, ge=1, le=6)

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            net = ipaddress.ip_network(value, strict=True)
        except ValueError:
            raise ValueError(f"{value!r} is not a CIDR block such as 10.0.0.0/16") from None
        if not 16 <= net.prefixlen <= 20:
            raise ValueError(f"{value!r}: the VPC needs a /16 to /20 block to hold pod IPs on GPU nodes")
        return value

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
