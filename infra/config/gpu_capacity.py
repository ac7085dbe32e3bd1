"""GPU capacity on EKS managed node groups: the groups, their capacity (on-demand, Capacity Block, ODCR), labels and
taints. The instance-type and label-key checks are shared with HyperPod's groups and the runtime's roles
(runtime/catalog_checks.py)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from infra.config.common import NAME, Strict
from infra.workload_names import GPU_TAINT_KEY
from runtime.catalog_checks import catalog_instance_type, label_keys

_RESERVATION_ID = re.compile(r"^cr-[0-9a-f]{17}$")


class OnDemand(Strict):
    type: Literal["on-demand"]


class CapacityBlock(Strict):
    """An EC2 Capacity Block for ML: the node group runs inside the reserved block."""

    type: Literal["capacity-block"]
    reservation_id: str | None = None

    @model_validator(mode="after")
    def _needs_id(self) -> CapacityBlock:
        if self.reservation_id is None:
            raise ValueError("a capacity block needs reservation_id (cr- followed by 17 hex digits)")
        if not _RESERVATION_ID.match(self.reservation_id):
            raise ValueError(
                f"reservation_id={self.reservation_id!r} is not a capacity reservation id (cr-0123456789abcdef0)"
            )
        return self


class CapacityReservation(Strict):
    """An On-Demand Capacity Reservation (ODCR) the node group targets."""

    type: Literal["capacity-reservation"]
    reservation_id: str

    @field_validator("reservation_id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _RESERVATION_ID.match(value):
            raise ValueError(f"{value!r} is not a capacity reservation id (cr-0123456789abcdef0)")
        return value


Capacity = Annotated[OnDemand | CapacityBlock | CapacityReservation, Field(discriminator="type")]


class Taint(Strict):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


GPU_TAINT = Taint(key=GPU_TAINT_KEY, value="true", effect="NoSchedule")


class GpuNodeGroupConfig(Strict):
    name: str = Field(pattern=NAME)
    instance_type: str
    min_size: int = Field(default=0, ge=0)
    desired_size: int = Field(default=1, ge=0)
    max_size: int = Field(default=1, ge=1)
    capacity: Capacity = OnDemand(type="on-demand")
    placement_group: bool = True
    root_volume_gib: int = Field(default=500, ge=100, le=16384)
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=lambda: [GPU_TAINT])

    @field_validator("instance_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        return catalog_instance_type(value)

    @field_validator("labels")
    @classmethod
    def _label_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return label_keys(value)

    @model_validator(mode="after")
    def _sizes_and_capacity(self) -> GpuNodeGroupConfig:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(
                f"sizes must satisfy min_size <= desired_size <= max_size; got "
                f"min_size={self.min_size}, desired_size={self.desired_size}, max_size={self.max_size}"
            )
        if isinstance(self.capacity, CapacityBlock) and self.placement_group:
            raise ValueError(
                "placement_group=true cannot be combined with capacity type 'capacity-block': the block's placement "
                "is fixed when it is reserved, and forcing a placement group causes insufficient-capacity failures; "
                "set placement_group: false"
            )
        if isinstance(self.capacity, CapacityReservation) and self.placement_group:
            raise ValueError(
                "placement_group=true cannot be combined with capacity type 'capacity-reservation': the stack creates "
                "a new cluster placement group, and instances launched into it cannot use a reservation made outside "
                "that group; set placement_group: false"
            )
        return self
