"""What every part of the deployment schema shares: the strict base model and the CIDR, uniqueness and name checks."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict

# A resource name: lower-case letters, digits and hyphens, starting with a letter (stack, cluster and group names).
NAME = r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def check_cidrs(cidrs: list[str], example: str, whole_internet: str) -> list[str]:
    """Each entry a network address in CIDR form (host bits zero), none of them the whole address space."""
    for cidr in cidrs:
        try:
            net = ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            raise ValueError(f"{cidr!r} is not a CIDR block such as {example}") from None
        if net.prefixlen == 0:
            raise ValueError(f"{cidr!r} {whole_internet}; name your networks")
    return cidrs


def check_unique(field: str, names: list[str]) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{field} names must be unique; repeated: {', '.join(repeated)}")
