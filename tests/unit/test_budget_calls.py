"""The local cloud's Budgets answers the calls Terraform reads a budget with, as Budgets does
(localcloud/motofixes.py)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

ACCOUNT = "123456789012"  # the unit account's (conftest)
NAME = "hub-monthly"
ARN = f"arn:aws:budgets::{ACCOUNT}:budget/{NAME}"
SPENT = {"NotificationType": "ACTUAL", "ComparisonOperator": "GREATER_THAN", "Threshold": 80}
FORECAST = {"NotificationType": "FORECASTED", "ComparisonOperator": "GREATER_THAN", "Threshold": 100}
OPS = {"SubscriptionType": "EMAIL", "Address": "ops@example.com"}
TOPIC = {"SubscriptionType": "SNS", "Address": f"arn:aws:sns:us-east-1:{ACCOUNT}:alarms"}


@pytest.fixture
def budgets(account):
    client = boto3.client("budgets", region_name="us-east-1")
    client.create_budget(
        AccountId=ACCOUNT,
        Budget={
            "BudgetName": NAME,
            "BudgetType": "COST",
            "TimeUnit": "MONTHLY",
            "BudgetLimit": {"Amount": "100", "Unit": "USD"},
        },
        NotificationsWithSubscribers=[
            {"Notification": {**SPENT, "ThresholdType": "PERCENTAGE"}, "Subscribers": [OPS]}
        ],
        ResourceTags=[{"Key": "ec2hub:deployment", "Value": "unit"}],
    )
    return client


def subscribers(budgets, notification: dict) -> list[dict]:
    return budgets.describe_subscribers_for_notification(
        AccountId=ACCOUNT, BudgetName=NAME, Notification=notification
    )["Subscribers"]


def test_each_notification_lists_the_subscribers_it_was_made_with(budgets):
    budgets.create_notification(
        AccountId=ACCOUNT, BudgetName=NAME, Notification=FORECAST, Subscribers=[OPS, TOPIC]
    )
    # As the provider asks: each notification as DescribeNotificationsForBudget gave it.
    notifications = budgets.describe_notifications_for_budget(AccountId=ACCOUNT, BudgetName=NAME)[
        "Notifications"
    ]
    assert {n["NotificationType"]: subscribers(budgets, n) for n in notifications} == {
        "ACTUAL": [OPS],
        "FORECASTED": [OPS, TOPIC],
    }
    # A threshold type left out is PERCENTAGE, and 80 is 80.0, as on AWS.
    assert subscribers(budgets, {**SPENT, "Threshold": 80.0}) == [OPS]


def test_subscribers_of_an_unknown_notification_or_budget_are_not_found(budgets):
    with pytest.raises(ClientError, match="NotFoundException"):
        subscribers(budgets, FORECAST)
    with pytest.raises(ClientError, match="NotFoundException"):
        budgets.describe_subscribers_for_notification(
            AccountId=ACCOUNT, BudgetName="no-such-budget", Notification=SPENT
        )


def test_a_budget_keeps_its_tags_until_it_is_deleted(budgets):
    def tags() -> dict[str, str]:
        listed = budgets.list_tags_for_resource(ResourceARN=ARN)["ResourceTags"]
        return {t["Key"]: t["Value"] for t in listed}

    assert tags() == {"ec2hub:deployment": "unit"}
    budgets.tag_resource(ResourceARN=ARN, ResourceTags=[{"Key": "team", "Value": "data"}])
    budgets.untag_resource(ResourceARN=ARN, ResourceTagKeys=["ec2hub:deployment"])
    assert tags() == {"team": "data"}

    budgets.delete_budget(AccountId=ACCOUNT, BudgetName=NAME)
    budgets.create_budget(
        AccountId=ACCOUNT,
        Budget={
            "BudgetName": NAME,
            "BudgetType": "COST",
            "TimeUnit": "MONTHLY",
            "BudgetLimit": {"Amount": "50", "Unit": "USD"},
        },
    )
    assert tags() == {}, "a budget made again under the same name starts with no tags"


def test_tags_of_what_is_not_a_budget_are_refused(budgets):
    with pytest.raises(ClientError, match="NotFoundException"):
        budgets.list_tags_for_resource(ResourceARN=f"arn:aws:budgets::{ACCOUNT}:budget/no-such-budget")
    with pytest.raises(ClientError, match="InvalidParameterException"):
        budgets.tag_resource(
            ResourceARN="arn:aws:s3:::unit-data", ResourceTags=[{"Key": "team", "Value": "data"}]
        )
