"""The launcher alone on in-process moto: launch, capacity fallback, exact-owner find, halt, terminate."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from spawner.launcher import Launch, LaunchConfigError, Launcher, LaunchSettings
from spawner.owner import Owner
from spawner.userdata import render_user_data


def settings_for(account, **changes) -> LaunchSettings:
    values = dict(
        region="us-east-1",
        endpoint_url="",
        image_id=account.image,
        subnet_ids=tuple(account.subnets),
        security_group_ids=(account.group,),
        hub_id="unit-hub",
        bucket="unit-data",
        user_boundary_arn=account.boundary,
        extra_tags={"cost-center": "research"},
    )
    values.update(changes)
    return LaunchSettings(**values)


class CountingLauncher(Launcher):
    """Records every EC2 call; the subnets in `full` have no capacity."""

    full: tuple[str, ...] = ()

    def __init__(self, settings):
        super().__init__(settings)
        self.calls: list[tuple[str, dict]] = []

    async def call(self, operation, **kwargs):
        self.calls.append((operation, kwargs))
        if operation == "run_instances" and kwargs.get("SubnetId") in self.full:
            raise ClientError(
                {"Error": {"Code": "InsufficientInstanceCapacity", "Message": "none"}}, operation
            )
        return await super().call(operation, **kwargs)

    def count(self, operation: str) -> int:
        return sum(1 for name, _ in self.calls if name == operation)


@pytest.fixture
def launcher(account):
    Launcher._root_devices.clear()
    return CountingLauncher(settings_for(account))


async def owner_of(launcher: Launcher, user: str, server: str = "", purpose: str = "server") -> Owner:
    role = await launcher.ensure_identity(user, [])
    return Owner(launcher.settings.hub_id, role.owner_id, user, server, purpose)


def request(owner: Owner | None, purpose: str = "server", **changes) -> Launch:
    values = dict(
        purpose=purpose,
        instance_type="t3.medium",
        user_data=render_user_data({"EC2HUB_X": "1"}),
        name="ec2hub-test",
        owner=owner,
    )
    values.update(changes)
    return Launch(**values)


def tags(account, instance_id: str) -> dict[str, str]:
    instance = account.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return {t["Key"]: t["Value"] for t in instance["Tags"]}


async def test_a_launch_is_tagged_imdsv2_encrypted_and_carries_the_users_profile(account, launcher):
    alice = await owner_of(launcher, "alice")
    instance = await launcher.launch(request(alice))
    assert tags(account, instance["InstanceId"]) == {
        **alice.tags(),
        "Name": "ec2hub-test",
        "cost-center": "research",
    }
    described = await launcher.describe(instance["InstanceId"])
    assert described["MetadataOptions"]["HttpTokens"] == "required"
    assert described["IamInstanceProfile"]["Arn"].endswith("/ec2hub-alice")
    volume_id = described["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    volume = account.ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert volume["Encrypted"] and volume["VolumeType"] == "gp3"
    assert {t["Key"]: t["Value"] for t in volume["Tags"]}["ec2hub:owner-id"] == alice.owner_id


def launches(outcome: str) -> float:
    from prometheus_client import REGISTRY

    labels = {"purpose": "server", "outcome": outcome}
    return REGISTRY.get_sample_value("ec2hub_launches_total", labels) or 0.0


async def test_capacity_fallback_and_one_describe_images_per_image(account, launcher):
    launcher.full = (account.subnets[0],)
    alice = await owner_of(launcher, "alice")
    launched, no_capacity = launches("launched"), launches("no-capacity")
    first = await launcher.launch(request(alice))
    second = await launcher.launch(request(alice))
    assert first["SubnetId"] == second["SubnetId"] == account.subnets[1]
    assert launcher.count("describe_images") == 1
    launcher.full = tuple(account.subnets)
    with pytest.raises(ClientError):
        await launcher.launch(request(alice))
    # The metrics count starts by outcome: two launched, one with no capacity anywhere.
    assert (launches("launched"), launches("no-capacity")) == (launched + 2, no_capacity + 1)


class ProfileNotYetUsable(CountingLauncher):
    """The first RunInstances meets an instance profile IAM has not propagated yet."""

    async def call(self, operation, **kwargs):
        if operation == "run_instances" and self.count("run_instances") == 0:
            self.calls.append((operation, kwargs))
            message = "Value (ec2hub-alice) for parameter iamInstanceProfile.name is invalid"
            raise ClientError({"Error": {"Code": "InvalidParameterValue", "Message": message}}, operation)
        return await super().call(operation, **kwargs)


async def test_a_retried_launch_keeps_its_client_token_and_makes_one_instance(account):
    launcher = ProfileNotYetUsable(settings_for(account, profile_propagation_timeout=5.0))
    alice = await owner_of(launcher, "alice")
    await launcher.launch(request(alice))
    tokens = [kwargs["ClientToken"] for name, kwargs in launcher.calls if name == "run_instances"]
    assert len(tokens) == 2 and tokens[0] == tokens[1], "one launch, one token"
    assert len(await launcher.owned(alice)) == 1


async def test_find_is_by_exact_owner_and_purpose(account, launcher):
    alice = await owner_of(launcher, "alice")
    pattern = await owner_of(launcher, "a*")
    server = await launcher.launch(request(alice))
    worker = Owner(alice.hub_id, alice.owner_id, "alice", "", "dask-worker")
    await launcher.launch(request(worker, purpose="dask-worker"))
    await launcher.launch(request(None, purpose="pool", tags={"ec2hub:pool": "small"}))
    assert [i["InstanceId"] for i in await launcher.owned(alice)] == [server["InstanceId"]]
    assert len(await launcher.owned(alice, any_server=True)) == 2
    assert await launcher.owned(pattern) == []


async def test_halt_and_terminate_act_only_on_the_expected_owner_and_again_is_fine(account, launcher):
    alice = await owner_of(launcher, "alice")
    bob = await owner_of(launcher, "bob")
    instance_id = (await launcher.launch(request(alice)))["InstanceId"]
    assert not await launcher.halt(instance_id, bob.tags(), terminate=True), "not bob's to halt"
    assert (await launcher.describe(instance_id))["State"]["Name"] == "running"
    assert await launcher.halt(instance_id, alice.tags(), terminate=False)
    assert (await launcher.describe(instance_id))["State"]["Name"] == "stopped"
    await launcher.halt(instance_id, alice.tags(), terminate=False)  # stopped already: fine
    await launcher.terminate([instance_id])
    assert not await launcher.halt(instance_id, alice.tags(), terminate=True), "terminated: nothing to do"
    assert await launcher.describe("i-0123456789abcdef0") is None


async def test_without_subnets_or_identity_settings_the_message_says_what_to_set(account):
    launcher = Launcher(settings_for(account, subnet_ids=()))
    with pytest.raises(LaunchConfigError, match="subnet_ids"):
        await launcher.launch(request(None, purpose="pool"))
    with pytest.raises(LaunchConfigError, match="bucket"):
        await Launcher(settings_for(account, bucket="")).ensure_identity("alice", [])


async def test_cluster_instances_alone_carry_the_cluster_groups_and_end_when_shut_down_from_inside(account):
    launcher = Launcher(settings_for(account, cluster_security_group_ids=("sg-cluster",)))
    assert launcher.security_groups_for("server") == [account.group]
    assert launcher.security_groups_for("pool") == [account.group]
    assert launcher.security_groups_for("dask-worker") == [account.group, "sg-cluster"]
    assert launcher.security_groups_for("dask-scheduler") == [account.group, "sg-cluster"]
    calls = []

    async def record(operation, **kwargs):
        calls.append(kwargs)
        return {"Instances": [{"InstanceId": "i-1"}]} if operation == "run_instances" else {"Images": []}

    launcher.call = record
    for purpose, owner in (("dask-worker", None), ("pool", None)):
        await launcher.launch(
            Launch(purpose=purpose, instance_type="t3.medium", user_data="", name="x", owner=owner)
        )
    behaviours = [
        c["InstanceInitiatedShutdownBehavior"] for c in calls if "InstanceInitiatedShutdownBehavior" in c
    ]
    assert behaviours == ["terminate", "stop"], "a home's disk is kept, a worker's is not"
