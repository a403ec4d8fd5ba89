"""Safe names and the user policy: every user reaches their own data, their groups' and shared/."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from spawner.identity import (
    SAFE_NAME_MAX,
    IdentityConflict,
    UserIdentity,
    UserNames,
    safe_name,
    user_policy,
)

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


def test_long_names_end_in_a_digest_of_at_least_128_bits():
    long_name = "a" * 100
    safe = safe_name(long_name)
    digest = safe.split("--")[-1]
    assert len(digest) * 4 >= 128 and re.fullmatch(r"[0-9a-f]+", digest)
    assert safe_name("a" * 99 + "b") != safe


@pytest.fixture
def identity(account):
    return UserIdentity(
        account.iam, account.s3, boundary_arn=account.boundary, bucket="unit-data", region="us-east-1"
    )


def role_policy(account, user: str) -> dict:
    document = account.iam.get_role_policy(RoleName=UserNames.of(user).role, PolicyName="ec2hub-user-access")
    return document["PolicyDocument"]


def test_ensure_returns_the_roles_unique_id_and_follows_group_changes(account, identity):
    role = identity.ensure("alice", ["physics"])
    assert role.created
    owner_id = role.owner_id
    assert owner_id == account.iam.get_role(RoleName="ec2hub-alice")["Role"]["RoleId"]
    assert "groups/physics/" in json.dumps(role_policy(account, "alice"))
    again = identity.ensure("alice", [])
    assert (again.owner_id, again.created) == (owner_id, False), "the same account keeps its owner id"
    assert "groups/" not in json.dumps(role_policy(account, "alice"))
    profile = account.iam.get_instance_profile(InstanceProfileName="ec2hub-alice")["InstanceProfile"]
    assert [r["RoleId"] for r in profile["Roles"]] == [owner_id]
    assert identity.owner_id("alice") == owner_id


def test_a_role_that_is_someone_elses_is_never_reused(account, identity):
    # A role under the name alice's maps to, but made for another account name.
    account.iam.create_role(
        RoleName="ec2hub-alice",
        Path="/ec2hub/users/",
        AssumeRolePolicyDocument="{}",
        Tags=[{"Key": "ec2hub:user", "Value": "Alice"}],
    )
    with pytest.raises(IdentityConflict):
        identity.ensure("alice", [])
    assert identity.owner_id("alice") is None
    identity.remove("alice")
    assert account.iam.get_role(RoleName="ec2hub-alice")["Role"], "not removed either"


def test_a_name_deleted_and_created_again_is_a_new_owner_with_an_empty_prefix(account, identity):
    first = identity.ensure("bob", []).owner_id
    account.s3.put_object(Bucket="unit-data", Key="users/bob/notes.txt", Body=b"old account")
    identity.remove("bob")
    assert identity.owner_id("bob") is None
    moved = identity.move_data_aside("bob", now=datetime(2026, 11, 30, 12, 0, tzinfo=UTC))
    assert moved == "deleted/bob/20261130T120000Z/"
    second = identity.ensure("bob", []).owner_id
    assert second != first
    assert "Contents" not in account.s3.list_objects_v2(Bucket="unit-data", Prefix="users/bob/")
    kept = account.s3.get_object(Bucket="unit-data", Key="deleted/bob/20261130T120000Z/notes.txt")
    assert kept["Body"].read() == b"old account"


def test_a_deletion_cut_short_is_finished_before_the_name_starts_again(account, identity):
    first = identity.ensure("carol", []).owner_id
    account.s3.put_object(Bucket="unit-data", Key="users/carol/a/b.parquet", Body=b"x")
    identity.mark_for_removal("carol")  # ... and the hub stopped there
    again = identity.ensure("carol", [])
    assert again.created and again.owner_id != first, "a new account, with a new owner id"
    assert "Contents" not in account.s3.list_objects_v2(Bucket="unit-data", Prefix="users/carol/")
    aside = account.s3.list_objects_v2(Bucket="unit-data", Prefix="deleted/carol/")["Contents"]
    assert [o["Key"].split("/", 3)[3] for o in aside] == ["a/b.parquet"]


def test_data_put_in_a_new_users_folder_before_their_first_start_stays(account, identity):
    account.s3.put_object(Bucket="unit-data", Key="users/dan/course/data.csv", Body=b"1,2")
    assert identity.ensure("dan", []).created
    kept = account.s3.get_object(Bucket="unit-data", Key="users/dan/course/data.csv")
    assert kept["Body"].read() == b"1,2"


def test_a_deletion_mark_on_someone_elses_role_moves_nothing(account, identity):
    account.iam.create_role(
        RoleName="ec2hub-erin",
        Path="/ec2hub/users/",
        AssumeRolePolicyDocument="{}",
        Tags=[
            {"Key": "ec2hub:user", "Value": "Erin"},
            {"Key": "ec2hub:deleting", "Value": "20261130T000000Z"},
        ],
    )
    account.s3.put_object(Bucket="unit-data", Key="users/erin/notes.txt", Body=b"erin's")
    with pytest.raises(IdentityConflict):
        identity.ensure("erin", [])
    assert account.s3.get_object(Bucket="unit-data", Key="users/erin/notes.txt")["Body"].read() == b"erin's"
