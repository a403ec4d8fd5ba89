"""Prices: $/hour of each instance type (on-demand and spot) and $/GB-month of gp3 volumes, from a table
in the repository for the platform's region (`prices-<region>.json`, its date shown with every price).

`python -m hub.costs.prices refresh [--region R] [--types t3.medium,...] [--out PATH]` rewrites the table
from AWS (the Price List API and the spot price history), with the standard boto3 credentials.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from hub.policies import default_instance_types
from spawner.profiles import Profile

HERE = Path(__file__).resolve().parent
# AWS bills a GB-month as 730 hours of a GB.
HOURS_PER_MONTH = 730
DEFAULT_REGION = "us-east-1"
# The Price List API answers in a few regions only, with the prices of every region.
PRICE_LIST_REGION = "us-east-1"


def table_path(region: str, folder: Path = HERE) -> Path:
    return folder / f"prices-{region}.json"


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
        path = table_path(region, folder)
        if not path.exists():
            path = table_path(DEFAULT_REGION, folder)
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


class PricesNotFound(Exception):
    """Prices AWS did not give, named in one line."""


def fetch(
    region: str, instance_types: Iterable[str], pricing: Any, ec2: Any, now: datetime
) -> dict[str, Any]:
    """The region's table from AWS: on-demand and gp3 list prices from the Price List API (`pricing`, a
    client in PRICE_LIST_REGION), spot prices from the region's `ec2`. PricesNotFound naming every
    on-demand or gp3 price not found (or found twice, at different prices)."""
    types = list(dict.fromkeys(instance_types))
    found = {
        f"on-demand {instance_type}": _list_prices(
            pricing,
            "Hrs",
            instanceType=instance_type,
            regionCode=region,
            operatingSystem="Linux",
            tenancy="Shared",
            preInstalledSw="NA",
            capacitystatus="Used",
            licenseModel="No License required",
        )
        for instance_type in types
    }
    found["EBS gp3"] = _list_prices(
        pricing, "GB-Mo", productFamily="Storage", volumeApiName="gp3", regionCode=region
    )
    problems = [
        f"{name} ({f'{len(prices)} different prices' if prices else 'none'})"
        for name, prices in found.items()
        if len(prices) != 1
    ]
    if problems:
        raise PricesNotFound(f"AWS gave no single price in {region} for: {', '.join(problems)}")
    price = {name: prices.pop() for name, prices in found.items()}
    today = now.date().isoformat()
    return {
        "region": region,
        "as_of": today,
        "source": f"AWS Price List API for {region} (pricing:GetProducts), Linux, shared tenancy: on-demand"
        " per instance-hour and EBS gp3 per GB-month; spot: the median across availability zones of the"
        f" latest Linux/UNIX price (ec2:DescribeSpotPriceHistory) on {today}",
        "on_demand": {instance_type: price[f"on-demand {instance_type}"] for instance_type in types},
        "spot": _spot_prices(ec2, types, now),
        "ebs_gp3_gb_month": price["EBS gp3"],
    }


def _list_prices(pricing: Any, unit: str, **attributes: str) -> set[float]:
    """The distinct on-demand USD prices per `unit` of the EC2 products with exactly these attributes."""
    filters = [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in attributes.items()]
    prices: set[float] = set()
    for page in pricing.get_paginator("get_products").paginate(ServiceCode="AmazonEC2", Filters=filters):
        for product in map(json.loads, page["PriceList"]):
            for term in product["terms"].get("OnDemand", {}).values():
                for dimension in term["priceDimensions"].values():
                    if dimension["unit"] == unit:
                        prices.add(float(dimension["pricePerUnit"]["USD"]))
    return prices


def _spot_prices(ec2: Any, instance_types: list[str], now: datetime) -> dict[str, float]:
    """$/hour of each type on spot: the median across availability zones of each zone's latest price.
    A type with no spot price in the region has no entry (it is priced on-demand)."""
    latest: dict[tuple[str, str], tuple[datetime, float]] = {}
    pages = ec2.get_paginator("describe_spot_price_history").paginate(
        InstanceTypes=instance_types, ProductDescriptions=["Linux/UNIX"], StartTime=now
    )
    for page in pages:
        for offer in page["SpotPriceHistory"]:
            zone = (offer["InstanceType"], offer["AvailabilityZone"])
            if zone not in latest or offer["Timestamp"] > latest[zone][0]:
                latest[zone] = (offer["Timestamp"], float(offer["SpotPrice"]))
    by_type: dict[str, list[float]] = defaultdict(list)
    for (instance_type, _zone), (_when, price) in latest.items():
        by_type[instance_type].append(price)
    return {t: round(median(by_type[t]), 6) for t in instance_types if t in by_type}


def write(table: dict[str, Any], out: Path) -> None:
    """The table to `out`, whole or not at all: a reader (the hub starting) sees the old table or the
    new one, never half of one."""
    text = json.dumps(table, indent=2) + "\n"
    with tempfile.NamedTemporaryFile("w", dir=out.parent, prefix=f".{out.name}.", delete=False) as file:
        temporary = Path(file.name)
        try:
            file.write(text)
        except OSError:
            temporary.unlink()
            raise
    temporary.chmod(0o644)
    os.replace(temporary, out)


def default_types(region: str) -> list[str]:
    """The instance types of the region's table, if it has one, and of the default sizes."""
    path = table_path(region)
    known = list(json.loads(path.read_text())["on_demand"]) if path.exists() else []
    return list(dict.fromkeys([*known, *default_instance_types()]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hub.costs.prices", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("refresh", help="rewrite the region's price table from AWS")
    command.add_argument(
        "--region", default=DEFAULT_REGION, help=f"the prices' region (default {DEFAULT_REGION})"
    )
    command.add_argument(
        "--types",
        type=lambda text: [t.strip() for t in text.split(",") if t.strip()],
        help="comma-separated instance types (default: the table's and the default sizes')",
    )
    command.add_argument(
        "--out", type=Path, help="the table to write (default hub/costs/prices-<region>.json)"
    )
    args = parser.parse_args(argv)
    out = args.out or table_path(args.region)
    try:
        pricing = boto3.client("pricing", region_name=PRICE_LIST_REGION)
        ec2 = boto3.client("ec2", region_name=args.region)
        table = fetch(args.region, args.types or default_types(args.region), pricing, ec2, datetime.now(UTC))
    except (BotoCoreError, ClientError) as error:
        raise SystemExit(
            f"prices refresh: {error} (a refresh needs AWS credentials allowing pricing:GetProducts and"
            f" ec2:DescribeSpotPriceHistory); {out} is unchanged"
        ) from None
    except PricesNotFound as error:
        raise SystemExit(f"prices refresh: {error}; {out} is unchanged") from None
    write(table, out)
    print(
        f"wrote {out}: {len(table['on_demand'])} on-demand and {len(table['spot'])} spot prices and gp3,"
        f" as of {table['as_of']}"
    )


if __name__ == "__main__":
    main()
