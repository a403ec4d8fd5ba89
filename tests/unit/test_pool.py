"""The hot pool's bookkeeping on in-process moto: what is launched, who may claim, what a claim changes."""

from __future__ import annotations

import json

import pytest

from spawner.owner import TAG_CLAIM, TAG_POOL
from spawner.pool import HotPool
from tests.unit.conftest import make_spawner


def pooled_spawner(account, user: str, size: str = "small", spot: bool = False):
    spawner = make_spawner(account, user=user, hot_pool={"small": 1})
    spawner.size, spawner.use_spot = size, spot
    return spawner


def pool_of(spawner) -> HotPool:
    """The pool as the keeper fills it and a start claims from it: from the hub's launch settings."""
    return HotPool(spawner.launcher, spawner.profile_list(), spawner.hot_pool, spawner.server_port)


def tags_of(instance: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def describe(account, instance_id: str) -> dict:
    return account.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


async def test_pool_instances_boot_with_no_role_and_read_their_claim_from_metadata_tags(account):
    pool = pool_of(pooled_spawner(account, "alice"))
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
    pool = pool_of(alice)
    await pool.fill_once()
    url = await alice.start()  # finds no instance of alice's: claims the pool's
    claimed = describe(account, alice.instance_id)
    assert url.endswith(":8888")
    instance = describe(account, claimed["InstanceId"])
    tags = tags_of(instance)
    assert tags["ec2hub:user"] == "alice" and TAG_POOL not in tags
    assert tags["ec2hub:owner-id"] == alice._owner.owner_id and tags["ec2hub:purpose"] == "server"
    assert tags[TAG_CLAIM] == alice.settings_parameter
    assert instance["IamInstanceProfile"]["Arn"].endswith(alice.names.instance_profile)
    handed = account.ssm.get_parameter(Name=alice.settings_parameter, WithDecryption=True)["Parameter"]
    assert handed["Type"] == "SecureString"
    assert json.loads(handed["Value"])["token"] == alice.api_token
    bob = pooled_spawner(account, "bob")
    assert await pool.claim("small", await bob._prepare_identity(), "b") is None, "never a second user's"


async def test_spot_starts_and_sizes_without_a_pool_launch_as_usual(account):
    pool = pool_of(pooled_spawner(account, "alice"))
    await pool.fill_once()
    [member] = [i for r in account.ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    spot = pooled_spawner(account, "bob", spot=True)
    await spot.start()
    assert spot.instance_id != member["InstanceId"], "a spot start launches its own instance"
    assert tags_of(describe(account, member["InstanceId"]))[TAG_POOL] == "small"
    large = pooled_spawner(account, "carol", size="large")
    assert await pool.claim("large", await large._prepare_identity(), "c") is None


async def test_a_stopped_pool_instance_is_replaced(account):
    pool = pool_of(pooled_spawner(account, "alice"))
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


def test_the_hub_starts_the_pool_keeper_with_the_spawners_launch_settings(tmp_path):
    from traitlets.config import Config

    from hub.config import configure
    from hub.settings import Settings, SettingsError
    from spawner.launcher import LaunchSettings

    env = {
        "EC2HUB_STATE_DIR": str(tmp_path),
        "EC2HUB_AMI_ID": "ami-1",
        "EC2HUB_SUBNET_IDS": "subnet-a,subnet-b",
        "EC2HUB_SECURITY_GROUP_IDS": "sg-1",
        "EC2HUB_BUCKET": "data",
        "EC2HUB_USER_BOUNDARY_ARN": "arn:aws:iam::1:policy/b",
        "EC2HUB_HOT_POOL": "small=2",
        "AWS_PROFILE": "hub",
        "EC2HUB_ADMIN_PASSWORD": "a long admin passphrase 1",
    }
    c = Config()
    configure(c, Settings.from_env(env))
    [keeper] = [s for s in c.JupyterHub.services.get_value([]) if s["name"] == "hot-pool"]
    spec = json.loads(keeper["environment"]["EC2HUB_POOL_SPEC"])
    assert LaunchSettings.from_options(spec["launch"]).subnet_ids == ("subnet-a", "subnet-b")
    assert spec["wanted"] == {"small": 2} and "EC2HUB_ADMIN_PASSWORD" not in keeper["environment"]

    with pytest.raises(SettingsError, match="do not exist: huge"):
        configure(Config(), Settings.from_env({**env, "EC2HUB_HOT_POOL": "huge=1"}))
