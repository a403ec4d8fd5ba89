"""The hot pool's bookkeeping on in-process moto: what is launched, who may claim, what a claim changes."""

from __future__ import annotations

import json

from spawner.owner import TAG_CLAIM, TAG_POOL
from spawner.pool import HotPool
from tests.unit.conftest import make_spawner


def pooled_spawner(account, user: str, size: str = "small", spot: bool = False):
    spawner = make_spawner(account, user=user)
    spawner.hot_pool = {"small": 1}  # set after construction: no background refill in these tests
    spawner.size, spawner.use_spot = size, spot
    return spawner


def tags_of(instance: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def describe(account, instance_id: str) -> dict:
    return account.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


async def test_pool_instances_boot_with_no_role_and_read_their_claim_from_metadata_tags(account):
    pool = HotPool(pooled_spawner(account, "alice"))
    await pool.fill_once()
    await pool.fill_once()  # full: nothing more
    [instance] = [i for r in account.ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert tags_of(instance)[TAG_POOL] == "small" and "ec2hub:user" not in tags_of(instance)
    assert "IamInstanceProfile" not in instance
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["MetadataOptions"]["InstanceMetadataTags"] == "enabled"
    user_data = account.ec2.describe_instance_attribute(
        InstanceId=instance["InstanceId"], Attribute="userData"
    )
    assert "JUPYTERHUB" not in str(user_data), "a pool instance is nobody's until claimed"


async def test_a_claim_makes_the_instance_the_users_and_the_next_claim_finds_none(account):
    alice = pooled_spawner(account, "alice")
    pool = HotPool(alice)
    await pool.fill_once()
    owner = await alice._prepare_identity()
    claimed = await pool.claim(alice, owner)
    assert claimed is not None
    await pool.hand_over(alice, claimed, owner)
    instance = describe(account, claimed["InstanceId"])
    tags = tags_of(instance)
    assert tags["ec2hub:user"] == "alice" and TAG_POOL not in tags
    assert tags["ec2hub:owner-id"] == owner.owner_id
    assert tags[TAG_CLAIM] == alice.token_parameter
    assert instance["IamInstanceProfile"]["Arn"].endswith(alice.names.instance_profile)
    handed = account.ssm.get_parameter(Name=alice.token_parameter, WithDecryption=True)["Parameter"]
    assert handed["Type"] == "SecureString"
    assert json.loads(handed["Value"])["token"] == alice.api_token
    bob = pooled_spawner(account, "bob")
    assert await pool.claim(bob, await bob._prepare_identity()) is None, "never a second user's"


async def test_spot_starts_and_sizes_without_a_pool_launch_as_usual(account):
    pool = HotPool(pooled_spawner(account, "alice"))
    await pool.fill_once()
    spot = pooled_spawner(account, "bob", spot=True)
    assert await pool.claim(spot, await spot._prepare_identity()) is None
    large = pooled_spawner(account, "bob", size="large")
    assert await pool.claim(large, await large._prepare_identity()) is None


async def test_a_stopped_pool_instance_is_replaced(account):
    pool = HotPool(pooled_spawner(account, "alice"))
    await pool.fill_once()
    [first] = [i for r in account.ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    account.ec2.stop_instances(InstanceIds=[first["InstanceId"]])
    await pool.fill_once()
    states = {
        i["InstanceId"]: i["State"]["Name"]
        for r in account.ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
    }
    assert states.pop(first["InstanceId"]) in ("shutting-down", "terminated")
    assert list(states.values()) == ["running"]
