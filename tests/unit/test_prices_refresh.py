"""The price table's refresh from AWS, on real boto3 clients answered by botocore's Stubber: the table
written from AWS's answers, spot as the median across zones, and nothing written when a price is missing
or AWS refuses; and the committed table prices every default size."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import boto3
import pytest
from botocore.stub import ANY, Stubber

from hub.costs import prices
from hub.costs.prices import Prices, PricesNotFound, fetch, main
from hub.policies import default_instance_types

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
REGION = "eu-west-1"


def product(*dimensions: tuple[str, str]) -> str:
    """One entry of get_products' PriceList (a JSON string), with on-demand (USD, unit) dimensions and
    a reserved term that is not the on-demand price."""
    on_demand = {
        f"SKU.OD.{i}": {"unit": unit, "pricePerUnit": {"USD": usd}}
        for i, (usd, unit) in enumerate(dimensions)
    }
    reserved = {"SKU.RI.0": {"unit": "Hrs", "pricePerUnit": {"USD": "0.0010000000"}}}
    terms = {
        "OnDemand": {"SKU.OD": {"priceDimensions": on_demand}},
        "Reserved": {"SKU.RI": {"priceDimensions": reserved}},
    }
    return json.dumps({"product": {"sku": "SKU"}, "terms": terms})


def instance_filters(instance_type: str) -> list[dict[str, str]]:
    attributes = {
        "instanceType": instance_type,
        "regionCode": REGION,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
    }
    return [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in attributes.items()]


GP3_FILTERS = [
    {"Type": "TERM_MATCH", "Field": "productFamily", "Value": "Storage"},
    {"Type": "TERM_MATCH", "Field": "volumeApiName", "Value": "gp3"},
    {"Type": "TERM_MATCH", "Field": "regionCode", "Value": REGION},
]


def spot(instance_type: str, zone: str, price: str, minutes_ago: int = 5) -> dict:
    return {
        "InstanceType": instance_type,
        "AvailabilityZone": zone,
        "ProductDescription": "Linux/UNIX",
        "SpotPrice": price,
        "Timestamp": NOW - timedelta(minutes=minutes_ago),
    }


@pytest.fixture
def aws():
    """Real pricing and EC2 clients that answer only what a test queued, and check every request."""
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
    pricing = session.client("pricing", region_name="us-east-1")
    ec2 = session.client("ec2", region_name=REGION)
    with Stubber(pricing) as pricing_stub, Stubber(ec2) as ec2_stub:
        yield SimpleNamespace(pricing=pricing, ec2=ec2, pricing_stub=pricing_stub, ec2_stub=ec2_stub)
        pricing_stub.assert_no_pending_responses()
        ec2_stub.assert_no_pending_responses()


def answer_list_prices(aws, on_demand: dict[str, list[str]], gp3: list[str]) -> None:
    """get_products' answers, in the order the refresh asks: each type's products, then gp3's. A type's
    first product comes on a second page, so the pages are followed."""
    for instance_type, products in on_demand.items():
        params = {"ServiceCode": "AmazonEC2", "Filters": instance_filters(instance_type)}
        aws.pricing_stub.add_response("get_products", {"PriceList": [], "NextToken": "page-2"}, params)
        aws.pricing_stub.add_response(
            "get_products", {"PriceList": products}, {**params, "NextToken": "page-2"}
        )
    aws.pricing_stub.add_response(
        "get_products", {"PriceList": gp3}, {"ServiceCode": "AmazonEC2", "Filters": GP3_FILTERS}
    )


def answer_spot(aws, instance_types: list[str], pages: list[list[dict]], start=NOW) -> None:
    params = {"InstanceTypes": instance_types, "ProductDescriptions": ["Linux/UNIX"], "StartTime": start}
    for number, offers in enumerate(pages):
        answer: dict = {"SpotPriceHistory": offers}
        if number + 1 < len(pages):
            answer["NextToken"] = f"page-{number + 2}"
        aws.ec2_stub.add_response(
            "describe_spot_price_history",
            answer,
            params | ({"NextToken": f"page-{number + 1}"} if number else {}),
        )


TYPES = ["t3.medium", "m6i.xlarge", "g5.xlarge"]
LIST_PRICES = {
    "t3.medium": [product(("0.0456000000", "Hrs"))],
    "m6i.xlarge": [product(("0.2140000000", "Hrs"))],
    "g5.xlarge": [product(("1.1240000000", "Hrs"))],
}
GP3 = [product(("0.0880000000", "GB-Mo"))]
SPOT = [
    [spot("m6i.xlarge", f"{REGION}a", "0.0801"), spot("m6i.xlarge", f"{REGION}b", "0.0790")],
    [spot("m6i.xlarge", f"{REGION}c", "0.0850"), spot("g5.xlarge", f"{REGION}a", "0.4012")],
]


def test_the_table_is_made_of_aws_answers(aws):
    answer_list_prices(aws, LIST_PRICES, GP3)
    answer_spot(aws, TYPES, SPOT)

    table = fetch(REGION, TYPES, aws.pricing, aws.ec2, NOW)

    assert table == {
        "region": REGION,
        "as_of": "2026-12-01",
        "source": table["source"],
        "on_demand": {"t3.medium": 0.0456, "m6i.xlarge": 0.214, "g5.xlarge": 1.124},
        # t3.medium has no spot answer, so no spot entry: it is priced on-demand.
        "spot": {"m6i.xlarge": 0.0801, "g5.xlarge": 0.4012},
        "ebs_gp3_gb_month": 0.088,
    }
    assert "Price List API" in table["source"] and "DescribeSpotPriceHistory" in table["source"]


def test_spot_is_the_median_across_zones_of_each_zones_latest_price(aws):
    answer_list_prices(aws, {"m6i.xlarge": LIST_PRICES["m6i.xlarge"]}, GP3)
    offers = [
        spot("m6i.xlarge", "a", "0.0700"),
        spot("m6i.xlarge", "a", "0.2000", minutes_ago=90),  # zone a's older price: not counted
        spot("m6i.xlarge", "b", "0.0900"),
        spot("m6i.xlarge", "c", "0.0800", minutes_ago=30),
        spot("m6i.xlarge", "d", "0.3000"),
    ]
    answer_spot(aws, ["m6i.xlarge"], [offers])

    table = fetch(REGION, ["m6i.xlarge"], aws.pricing, aws.ec2, NOW)

    assert table["spot"] == {"m6i.xlarge": 0.085}  # the median of 0.07, 0.08, 0.09 and 0.30


@pytest.fixture
def committed(tmp_path, monkeypatch, aws):
    """A table on disk to refresh, and the CLI's boto3 clients replaced by the stubbed ones."""
    out = tmp_path / f"prices-{REGION}.json"
    out.write_text('{"region": "eu-west-1", "as_of": "2026-01-01"}\n')
    asked = []

    def client(service: str, region_name: str):
        asked.append((service, region_name))
        return {"pricing": aws.pricing, "ec2": aws.ec2}[service]

    monkeypatch.setattr(prices.boto3, "client", client)
    return SimpleNamespace(out=out, before=out.read_bytes(), asked=asked)


def refresh(committed) -> None:
    main(["refresh", "--region", REGION, "--types", ",".join(TYPES), "--out", str(committed.out)])


def test_the_command_writes_the_table(aws, committed, capsys):
    answer_list_prices(aws, LIST_PRICES, GP3)
    answer_spot(aws, TYPES, SPOT, start=ANY)
    today = datetime.now(UTC).date().isoformat()

    refresh(committed)

    table = json.loads(committed.out.read_text())
    assert table["as_of"] in (today, datetime.now(UTC).date().isoformat())
    assert table["on_demand"] == {"t3.medium": 0.0456, "m6i.xlarge": 0.214, "g5.xlarge": 1.124}
    assert table["spot"] == {"m6i.xlarge": 0.0801, "g5.xlarge": 0.4012}
    assert table["ebs_gp3_gb_month"] == 0.088
    assert committed.asked == [("pricing", "us-east-1"), ("ec2", REGION)]
    assert [p.name for p in committed.out.parent.iterdir()] == [committed.out.name]  # no temporary file left
    assert f"wrote {committed.out}" in capsys.readouterr().out
    loaded = Prices.load(REGION, committed.out.parent)
    assert loaded.hourly("m6i.xlarge", spot=True) == 0.0801 and loaded.ebs_gb_month == 0.088


def test_a_missing_price_writes_nothing_and_says_which(aws, committed):
    several = [product(("1.1240000000", "Hrs")), product(("1.2000000000", "Hrs"))]
    answer_list_prices(aws, {**LIST_PRICES, "t3.medium": [], "g5.xlarge": several}, [])

    with pytest.raises(SystemExit) as exited:
        refresh(committed)

    message = str(exited.value.code)
    assert "on-demand t3.medium (none)" in message
    assert "on-demand g5.xlarge (2 different prices)" in message
    assert "EBS gp3 (none)" in message and "m6i.xlarge" not in message
    assert f"{committed.out} is unchanged" in message
    assert committed.out.read_bytes() == committed.before


def test_an_aws_error_is_one_line_and_writes_nothing(aws, committed):
    aws.pricing_stub.add_client_error(
        "get_products", service_error_code="AccessDeniedException", service_message="not authorized"
    )

    with pytest.raises(SystemExit) as exited:
        refresh(committed)

    message = str(exited.value.code)
    assert "AccessDeniedException" in message and "pricing:GetProducts" in message
    assert "\n" not in message and exited.value.__suppress_context__
    assert committed.out.read_bytes() == committed.before


def test_no_credentials_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "BOTO_CONFIG"):
        monkeypatch.setenv(name, str(tmp_path / "absent"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    out = tmp_path / "prices.json"

    with pytest.raises(SystemExit) as exited:
        main(["refresh", "--types", "t3.medium", "--out", str(out)])

    assert "Unable to locate credentials" in str(exited.value.code)
    assert not out.exists()


def test_the_committed_table_prices_every_default_size():
    table = Prices.load()
    assert table.region == "us-east-1"
    date.fromisoformat(table.as_of)  # a date, shown with every price
    assert table.ebs_gb_month > 0
    for instance_type in default_instance_types():
        assert table.on_demand.get(instance_type, 0) > 0, instance_type


def test_fetch_names_what_is_missing(aws):
    answer_list_prices(aws, {"x9.huge": []}, GP3)

    with pytest.raises(PricesNotFound, match=r"in eu-west-1 for: on-demand x9\.huge \(none\)$"):
        fetch(REGION, ["x9.huge"], aws.pricing, aws.ec2, NOW)
