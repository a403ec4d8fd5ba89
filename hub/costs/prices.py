"""Prices: $/hour of each instance type (on-demand and spot) and $/GB-month of gp3 volumes, from a table
in the repository for the platform's region (`prices-<region>.json`, its date shown with every price).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from spawner.profiles import Profile

HERE = Path(__file__).resolve().parent
# AWS bills a GB-month as 730 hours of a GB.
HOURS_PER_MONTH = 730
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class Prices:
    region: str
    as_of: str
    on_demand: dict[str, float]
    spot: dict[str, float]
    ebs_gb_month: float

    @classmethod
    def load(cls, region: str = DEFAULT_REGION, folder: Path = HERE) -> Prices:
        """The region's table; another region's prices are near enough to show (the page says whose)."""
        path = folder / f"prices-{region}.json"
        if not path.exists():
            path = folder / f"prices-{DEFAULT_REGION}.json"
        table = json.loads(path.read_text())
        return cls(
            region=table["region"],
            as_of=table["as_of"],
            on_demand=dict(table["on_demand"]),
            spot=dict(table.get("spot", {})),
            ebs_gb_month=float(table["ebs_gp3_gb_month"]),
        )

    def with_sizes(self, sizes: Iterable[Profile]) -> Prices:
        """The table, and for an instance type it does not know, the price of the size that has it
        (c.EC2Spawner.profiles): a size the operator added is priced as the spawn form shows it."""
        on_demand = {s.instance_type: s.price_per_hour for s in sizes} | self.on_demand
        spot = {s.instance_type: s.spot_price_per_hour for s in sizes if s.spot} | self.spot
        return replace(self, on_demand=on_demand, spot=spot)

    def hourly(self, instance_type: str, spot: bool = False) -> float | None:
        """$/hour while the instance runs; None for a type the table does not know."""
        if spot and instance_type in self.spot:
            return self.spot[instance_type]
        return self.on_demand.get(instance_type)

    def volume_hourly(self, gigabytes: float) -> float:
        """$/hour of a volume of that size, whether its instance runs or not."""
        return gigabytes * self.ebs_gb_month / HOURS_PER_MONTH
