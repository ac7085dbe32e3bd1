"""Hourly prices of the GPU instance types, per instance, On-Demand and Capacity Block, pinned with their date and
source; ``--prices FILE`` (JSON ``{"p5.48xlarge": {"on_demand": 55.04, "capacity_block": 31.46}, ...}``) overrides
any of them. Prices move (Capacity Block rates are repriced by supply and demand, On-Demand was cut in June 2025) and
differ by region: check the pages below before buying, and pass your own (or your discount's) with ``--prices``.
None: no price the sources state (the planner then reports no cost on that basis).

Sources:
- [CB] Amazon EC2 Capacity Blocks for ML pricing, https://aws.amazon.com/ec2/capacityblocks/pricing/ (the stored copy
  read 2026-12-07 shows the rates effective until 2025-01-01, US East: p5.48xlarge $39.33/h, p5e.48xlarge $43.26/h
  (Ohio), p4d.24xlarge $14.75/h; reservation fee only, the OS fee on top is $0 for Linux on these types).
- [OD] Amazon EC2 On-Demand pricing, https://aws.amazon.com/ec2/pricing/on-demand/, us-east-1 Linux, after AWS's
  June 2025 reduction of P5 (up to 45%) and P4d (up to 33%) On-Demand prices (AWS What's New, 2025-06-05):
  p5.48xlarge $55.04/h, p4d.24xlarge $21.96/h. p5e is sold through Capacity Blocks (no On-Demand price); p5en and
  p6-b200 rates were not in the sources read: pass them with ``--prices``.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

PRICES_DATE = "2026-12-07"


class InstancePrice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    on_demand: float | None = Field(default=None, gt=0, description="USD per instance-hour")
    capacity_block: float | None = Field(default=None, gt=0, description="USD per instance-hour")


PRICES: dict[str, InstancePrice] = {
    "p5.48xlarge": InstancePrice(on_demand=55.04, capacity_block=39.33),
    "p5e.48xlarge": InstancePrice(capacity_block=43.26),
    "p5en.48xlarge": InstancePrice(),
    "p6-b200.48xlarge": InstancePrice(),
    "p4d.24xlarge": InstancePrice(on_demand=21.96, capacity_block=14.75),
}


def load_prices(path: Path | None) -> dict[str, InstancePrice]:
    """The pinned table with ``path``'s entries over it (an entry replaces only the fields it names)."""
    prices = dict(PRICES)
    if path is None:
        return prices
    try:
        overrides = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"--prices {path}: {error}") from None
    if not isinstance(overrides, dict):
        raise ValueError(f"--prices {path}: expected an object of instance type -> prices")
    for name, fields in overrides.items():
        base = prices.get(name, InstancePrice())
        try:
            prices[name] = InstancePrice.model_validate({**base.model_dump(), **fields})
        except (TypeError, ValueError) as error:
            raise ValueError(f"--prices {path}: {name}: {error}") from None
    return prices
