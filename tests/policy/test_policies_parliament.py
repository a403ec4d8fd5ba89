"""The generated IAM policies, linted by parliament (duo-labs): no findings but the listed ones."""

from __future__ import annotations

import json
from typing import Any

import pytest
from parliament import analyze_policy_string

from hub.policies import hub_policy, render_policy
from spawner.identity import UserNames, trust_policy, user_policy

ACCOUNT = "123456789012"
REGION = "us-east-1"
BUCKET = "ec2hub-local"

HUB_POLICY = hub_policy(
    region=REGION,
    account_id=ACCOUNT,
    hub_id="ec2hub",
    bucket=BUCKET,
    boundary_name="ec2hub-user-boundary",
    subnet_ids=["subnet-0a", "subnet-0b"],
    security_group_ids=["sg-0users", "sg-0cluster"],
    image_ids=["ami-0ec2hub"],
    instance_types=["t3.medium", "g5.xlarge"],
)
USER_BOUNDARY = render_policy("user-boundary", region=REGION, account_id=ACCOUNT, bucket=BUCKET)


def _normal(detail: Any) -> Any:
    if isinstance(detail, list):
        return sorted(detail, key=lambda d: json.dumps(d, sort_keys=True))
    return detail


def findings(policy: str) -> list[tuple[str, Any]]:
    """parliament's findings as (issue, detail), without the (column-based) location."""
    return [(f.issue, _normal(f.detail)) for f in analyze_policy_string(policy).findings]


def without(found: list[tuple[str, Any]], *ignored: tuple[str, Any]) -> list[tuple[str, Any]]:
    rest = list(found)
    for finding in ignored:
        assert finding in rest, f"ignored finding no longer reported, drop it from the test: {finding}"
        rest.remove(finding)
    return rest


def run_instances_needs(*formats: str) -> list[dict[str, str]]:
    return _normal([{"action": "ec2:RunInstances", "required_format": f} for f in formats])


# The resources parliament requires of one RunInstances statement (a volume is optional to it).
RUN_INSTANCES_RESOURCES = {
    "instance": "arn:*:ec2:*:*:instance/*",
    "network-interface": "arn:*:ec2:*:*:network-interface/*",
    "security-group": "arn:*:ec2:*:*:security-group/*",
    "subnet": "arn:*:ec2:*:*:subnet/*",
    "image": "arn:*:ec2:*::image/*",
}


def run_instances_split(own: str | None) -> tuple[str, Any]:
    """parliament's finding on a RunInstances statement of one resource type (`own`; None: a volume)."""
    return (
        "RESOURCE_MISMATCH",
        run_instances_needs(*(f for kind, f in RUN_INSTANCES_RESOURCES.items() if kind != own)),
    )


def test_hub_policy_has_no_findings():
    rest = without(
        findings(HUB_POLICY),
        # RunInstances is split on purpose (AWS's documented pattern), one statement per resource type,
        # each with its own limit (the instance's tags, size and IMDSv2, the volume's encryption, the
        # hub's subnets, groups and images); parliament judges each statement alone.
        *(run_instances_split(kind) for kind in [*RUN_INSTANCES_RESOURCES, None]),
        # StringEquals on iam:PermissionsBoundary is the form AWS documents for boundaries (and works).
        (
            "MISMATCHED_TYPE_BUT_USABLE",
            "Type mismatch: StringEquals requires a value of type String but given Arn",
        ),
    )
    assert rest == []


def test_user_boundary_has_no_findings():
    assert findings(USER_BOUNDARY) == []


@pytest.mark.parametrize("groups", [[], ["physics", "chemistry"]], ids=["no-groups", "groups"])
def test_user_policy_has_no_findings(groups):
    policy = user_policy(UserNames.of("alice"), groups, bucket=BUCKET, region=REGION, account_id=ACCOUNT)
    assert findings(json.dumps(policy)) == []


def test_trust_policy_has_no_findings():
    assert (
        without(
            findings(json.dumps(trust_policy())),
            # A trust policy is a resource policy: it has a Principal and must not have a Resource element.
            ("MALFORMED", "Statement contains neither Resource nor NotResource"),
        )
        == []
    )
