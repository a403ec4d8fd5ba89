"""Safe names and the user policy: every user reaches their own data, their groups' and shared/."""

from __future__ import annotations

import json
import re

import pytest

from hub.identity import SAFE_NAME_MAX, UserIdentity, UserNames, safe_name, user_policy

STRANGE_NAMES = [
    "alice",
    "ALICE",
    "Alice",
    "bob",
    "Bob.Smith@example.org",
    "bob.smith@example.org",
    "alice/../bob",
    "alice-2f",
    "a" * 100,
    "a" * 99 + "b",
    "émile",
    "用户",
    "x--y",
]

IAM_NAME = re.compile(r"^[a-z0-9-]+$")


def test_strange_names_map_to_distinct_valid_stable_names():
    mapped = {name: safe_name(name) for name in STRANGE_NAMES}
    assert len(set(mapped.values())) == len(STRANGE_NAMES), mapped
    for name, safe in mapped.items():
        assert IAM_NAME.match(safe), safe
        assert len(safe) <= SAFE_NAME_MAX
        assert len(UserNames.of(name).role) <= 64
        assert safe_name(name) == safe, "stable"
        assert "/" not in safe and ".." not in safe


def test_no_prefix_is_inside_another_users_prefix():
    prefixes = [UserNames.of(name).prefix for name in STRANGE_NAMES]
    for a in prefixes:
        for b in prefixes:
            assert a == b or not b.startswith(a)


def test_empty_name_is_refused():
    with pytest.raises(ValueError):
        safe_name("")


def statements(policy: dict) -> dict[str, dict]:
    return {s["Sid"]: s for s in policy["Statement"]}


def test_user_policy_grants_own_prefix_shared_and_groups_only():
    names = UserNames.of("alice")
    policy = statements(user_policy(names, ["physics"], bucket="data", region="us-east-1", account_id="1"))
    assert policy["ReadWriteOwnPrefix"]["Resource"] == "arn:aws:s3:::data/users/alice/*"
    assert policy["ReadShared"]["Action"] == "s3:GetObject"
    assert policy["ReadWriteOwnGroups"]["Resource"] == ["arn:aws:s3:::data/groups/physics/*"]
    listing = policy["ListOnlyOwnSharedAndGroupPrefixes"]["Condition"]["StringLike"]["s3:prefix"]
    assert "users/alice/*" in listing and "groups/physics/*" in listing and "shared/*" in listing
    assert not any(p.startswith("users/") and "alice" not in p for p in listing)
    token = policy["ReadOwnServerTokens"]["Resource"]
    assert token == "arn:aws:ssm:us-east-1:1:parameter/ec2hub/users/alice/*"


def test_user_policy_without_groups_has_no_group_access():
    policy = user_policy(UserNames.of("bob"), [], bucket="data", region="us-east-1", account_id="1")
    assert "groups/" not in json.dumps(policy)


class RecordingIam:
    """Stands in for boto3's IAM client to show the order of calls an update makes."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def record(**kwargs):
            self.calls.append(name)
            if name == "get_instance_profile":
                return {"InstanceProfile": {"Roles": [{"RoleName": "ec2hub-alice"}]}}
            return {}

        return record


def test_group_changes_rewrite_the_policy_at_the_next_ensure():
    iam = RecordingIam()
    identity = UserIdentity(iam, boundary_arn="arn:aws:iam::1:policy/b", bucket="data", region="us-east-1")
    assert identity.ensure("alice", ["physics"]) == UserNames.of("alice")
    assert iam.calls == ["create_role", "put_role_policy", "get_instance_profile"]
