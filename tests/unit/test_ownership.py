"""Exact ownership on in-process moto: names that are EC2 filter patterns never reach another's instance."""

from __future__ import annotations

import base64

import pytest
from jupyterhub.spawner import SpawnException

from spawner.owner import NotOwned, Owner, check_owner, literal_filter_value
from tests.unit.conftest import make_spawner, spawner_failing

# Each one matches "alice" as an EC2 tag filter value ("*" and "?" are wildcards there).
PATTERN_NAMES = ["alic?", "a*", "*"]


# A start that fails after the identity and token are in place: AWS has no capacity.
NoCapacity = spawner_failing("run_instances", "InsufficientInstanceCapacity")


def alices_instance(account, instance_id: str) -> dict:
    instance = account.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    user_data = account.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    associations = account.ec2.describe_iam_instance_profile_associations(
        Filters=[{"Name": "instance-id", "Values": [instance_id]}]
    )["IamInstanceProfileAssociations"]
    return {
        "state": instance["State"]["Name"],
        "type": instance["InstanceType"],
        "tags": sorted((t["Key"], t["Value"]) for t in instance["Tags"]),
        "user_data": base64.b64decode(user_data["UserData"]["Value"]),
        "profiles": sorted(a["IamInstanceProfile"]["Arn"] for a in associations if a["State"] == "associated")
        or [instance["IamInstanceProfile"]["Arn"]],
    }


@pytest.mark.parametrize("stop_behaviour", ["stop", "terminate"])
async def test_pattern_names_start_fail_stop_and_are_deleted_without_touching_alice(account, stop_behaviour):
    alice = make_spawner(account, user="alice", stop_behaviour=stop_behaviour)
    await alice.start()
    before = alices_instance(account, alice.instance_id)

    for name in PATTERN_NAMES:
        failing = make_spawner(account, cls=NoCapacity, user=name, stop_behaviour=stop_behaviour)
        with pytest.raises(SpawnException):
            await failing.start()
        attacker = make_spawner(account, user=name, stop_behaviour=stop_behaviour)
        await attacker.start()
        assert attacker.instance_id != alice.instance_id, f"{name!r} got an instance of its own"
        await attacker.stop()
        attacker.clear_state()
        await attacker.stop()  # a stop with no instance in its state looks the instance up
        await attacker.delete_forever()
        assert alices_instance(account, alice.instance_id) == before, f"{name!r} changed alice's instance"

    assert await alice.poll() is None, "alice's server still runs"


async def test_a_state_pointing_at_anothers_instance_is_neither_resumed_nor_halted(account):
    alice = make_spawner(account, user="alice")
    await alice.start()
    before = alices_instance(account, alice.instance_id)
    mallory = make_spawner(account, user="mallory")
    mallory.load_state({"version": 1, "instance_id": alice.instance_id})
    await mallory.stop()
    assert alices_instance(account, alice.instance_id) == before
    await mallory.start()
    assert mallory.instance_id != alice.instance_id
    assert alices_instance(account, alice.instance_id) == before


async def stopped_instance_of(account, user: str) -> str:
    """The id of the instance a server of `user` ran on and stopped (the hub's state cleared)."""
    spawner = make_spawner(account, user=user)
    await spawner.start()
    await spawner.stop()
    return spawner.instance_id


# EC2 fails the terminate call of a deletion.
TerminateLost = spawner_failing("terminate_instances", "InternalError")


async def test_a_user_deleted_and_created_again_finds_no_instance_of_the_old_account(account):
    old = await stopped_instance_of(account, "bob")
    deleting = make_spawner(account, cls=TerminateLost, user="bob")
    await deleting.delete_forever()
    survivor = account.ec2.describe_instances(InstanceIds=[old])["Reservations"][0]["Instances"][0]
    assert survivor["State"]["Name"] == "stopped", "the old instance survived the deletion"

    new_bob = make_spawner(account, user="bob")
    await new_bob.start()
    assert new_bob.instance_id != old, "the new account does not inherit the old account's disk"


def test_only_hub_made_values_are_filter_values():
    for value in ["alic?", "a*", "*", "a\\*", "a b"]:
        with pytest.raises(ValueError):
            literal_filter_value(value)
    with pytest.raises(ValueError):
        Owner(hub_id="ec2hub", owner_id="AROA*", user="alice")
    owner = Owner(hub_id="ec2hub", owner_id="AROAEXAMPLE123", user="a*")
    values = [v for f in owner.filters(["running"]) for v in f["Values"]]
    assert "a*" not in values


def test_ownership_is_compared_tag_by_tag_exactly():
    owner = Owner(hub_id="ec2hub", owner_id="AROAEXAMPLE123", user="alice")
    mine = {"InstanceId": "i-1", "Tags": [{"Key": k, "Value": v} for k, v in owner.tags().items()]}
    check_owner(mine, owner.tags())
    for key, value in owner.tags().items():
        other = {
            "InstanceId": "i-2",
            "Tags": [t if t["Key"] != key else {"Key": key, "Value": value + "x"} for t in mine["Tags"]],
        }
        with pytest.raises(NotOwned):
            check_owner(other, owner.tags())
    pattern = Owner(hub_id="ec2hub", owner_id="AROAEXAMPLE123", user="a*")
    assert not pattern.owns(mine)


async def test_an_instance_from_before_owner_ids_is_adopted_by_its_existing_account(account):
    old = await stopped_instance_of(account, "alice")
    # As launched before owner ids: no ec2hub:owner-id tag.
    account.ec2.delete_tags(Resources=[old], Tags=[{"Key": "ec2hub:owner-id"}, {"Key": "ec2hub:purpose"}])
    again = make_spawner(account, user="alice")
    await again.start()
    assert again.instance_id == old, "the home on the old disk is found again"
