"""EC2Spawner's lifecycle against in-process moto: launch, resume, poll, stop, failures."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from botocore.exceptions import ClientError
from jupyterhub.spawner import SpawnException

from spawner import EC2Spawner
from spawner.launcher import Launcher
from tests.unit.conftest import make_spawner, spawner_failing


def the_instance(account, instance_id: str) -> dict:
    response = account.ec2.describe_instances(InstanceIds=[instance_id])
    return response["Reservations"][0]["Instances"][0]


def user_data_of(account, instance_id: str) -> str:
    value = account.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return base64.b64decode(value["UserData"]["Value"]).decode()


def aws_error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} (test)"}}, operation)


async def test_start_launches_a_tagged_imdsv2_instance_and_returns_its_address(account, spawner):
    url = await spawner.start()
    instance = the_instance(account, spawner.instance_id)
    assert url == f"http://{instance['PrivateIpAddress']}:8888"
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["SubnetId"] == account.subnets[0]
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["ec2hub:hub"] == "unit-hub"
    assert tags["ec2hub:user"] == "alice"
    assert tags["ec2hub:server"] == "/"
    assert tags["Name"] == "ec2hub-alice"
    script = user_data_of(account, spawner.instance_id)
    assert script.startswith("#!/bin/sh\n")
    assert "export EC2HUB_SETTINGS_PARAMETER=/ec2hub/users/alice/servers/default/settings" in script
    assert script.rstrip().endswith("exec ec2hub-bootstrap")
    assert "JUPYTERHUB" not in script, "user-data names the settings, it does not carry them"
    settings = json.loads(
        account.ssm.get_parameter(Name=spawner.settings_parameter, WithDecryption=True)["Parameter"]["Value"]
    )
    assert settings["token"] == spawner.api_token
    assert settings["environment"]["JUPYTERHUB_USER"] == "alice"
    assert "AWS_SECRET_ACCESS_KEY" not in settings["environment"] and "PATH" not in settings["environment"]


async def test_state_round_trips_and_clears(account, spawner):
    await spawner.start()
    state = spawner.get_state()
    assert state == {"version": 1, "instance_id": spawner.instance_id}

    restored = make_spawner(account)
    restored.load_state(state)
    assert restored.instance_id == spawner.instance_id
    assert await restored.poll() is None

    restored.clear_state()
    assert restored.instance_id == ""
    assert "instance_id" not in restored.get_state()


async def test_poll_follows_the_spawner_contract(account, spawner):
    spawner.poll_interval = 0  # every poll lists the hub's instances afresh
    assert await spawner.poll() == 0, "no instance: not running"
    await spawner.start()
    assert await spawner.poll() is None, "running: None"
    account.ec2.stop_instances(InstanceIds=[spawner.instance_id])
    assert await spawner.poll() == 0, "stopped: an exit status"
    account.ec2.terminate_instances(InstanceIds=[spawner.instance_id])
    assert await spawner.poll() == 0, "terminated: an exit status"
    spawner.instance_id = "i-0123456789abcdef0"
    assert await spawner.poll() == 0, "unknown to EC2: an exit status"


async def test_stop_keeps_the_instance_and_the_next_start_resumes_it(account, spawner):
    await spawner.start()
    first_id = spawner.instance_id
    first_script = user_data_of(account, first_id)
    await spawner.stop()
    assert the_instance(account, first_id)["State"]["Name"] == "stopped"
    spawner.clear_state()  # what the hub does after a stop

    spawner.api_token = "b" * 32
    await spawner.start()
    assert spawner.instance_id == first_id
    assert the_instance(account, first_id)["State"]["Name"] == "running"
    assert "a" * 32 not in first_script and "b" * 32 not in user_data_of(account, first_id)
    parameter = account.ssm.get_parameter(Name=spawner.settings_parameter, WithDecryption=True)
    assert json.loads(parameter["Parameter"]["Value"])["token"] == "b" * 32, "the new start's token"
    assert parameter["Parameter"]["Type"] == "SecureString"


async def test_the_settings_parameter_exists_only_while_the_server_runs(account, spawner):
    await spawner.start()
    assert account.ssm.get_parameter(Name=spawner.settings_parameter)["Parameter"]["Type"] == "SecureString"
    await spawner.stop()
    with pytest.raises(ClientError, match="ParameterNotFound"):
        account.ssm.get_parameter(Name=spawner.settings_parameter)


async def test_the_instance_carries_the_users_own_profile(account, spawner):
    await spawner.start()
    instance = the_instance(account, spawner.instance_id)
    assert instance["IamInstanceProfile"]["Arn"].endswith(":instance-profile/ec2hub/users/ec2hub-alice")
    role = account.iam.get_role(RoleName="ec2hub-alice")["Role"]
    assert role["Path"] == "/ec2hub/users/"
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == account.boundary


async def test_deleting_the_user_removes_instance_role_and_profile(account, spawner):
    await spawner.start()
    await spawner.stop()
    await spawner.delete_forever()
    assert the_instance(account, spawner.instance_id)["State"]["Name"] == "terminated"
    with pytest.raises(ClientError, match="NoSuchEntity"):
        account.iam.get_role(RoleName="ec2hub-alice")
    with pytest.raises(ClientError, match="NoSuchEntity"):
        account.iam.get_instance_profile(InstanceProfileName="ec2hub-alice")


async def test_stop_finds_a_half_created_instance_by_its_tags(account, spawner):
    # A start that was interrupted after RunInstances: the hub never saved the instance id.
    await spawner.start()
    orphan_id = spawner.instance_id
    fresh = make_spawner(account)
    assert fresh.instance_id == ""
    await fresh.stop()
    assert the_instance(account, orphan_id)["State"]["Name"] == "stopped"


async def test_stop_with_terminate_behaviour_removes_the_instance(account):
    spawner = make_spawner(account, stop_behaviour="terminate")
    await spawner.start()
    await spawner.stop()
    assert the_instance(account, spawner.instance_id)["State"]["Name"] == "terminated"


async def test_stop_of_nothing_and_of_a_vanished_instance_succeeds(account, spawner):
    await spawner.stop()  # never started: nothing to do, and no error
    assert account.ec2.describe_instances()["Reservations"] == []
    spawner.instance_id = "i-0123456789abcdef0"
    await spawner.stop()  # EC2 does not know it: stopped enough
    assert await spawner.poll() == 0
    assert account.ec2.describe_instances()["Reservations"] == [], "a stop creates nothing"


async def test_progress_rises_to_running(account, spawner):
    await spawner.start()
    events = [event async for event in spawner.progress()]
    percentages = [event["progress"] for event in events]
    assert percentages == sorted(percentages)
    assert percentages[-1] == 70
    assert "running" in events[-1]["message"]


class NoCapacityLauncher(Launcher):
    """EC2 answers InsufficientInstanceCapacity for launches in the listed subnets."""

    full_subnets: tuple[str, ...] = ()

    async def call(self, operation, **kwargs):
        if operation == "run_instances" and kwargs.get("SubnetId") in self.full_subnets:
            raise aws_error("InsufficientInstanceCapacity", "RunInstances")
        return await super().call(operation, **kwargs)


class NoCapacityIn(EC2Spawner):
    launcher_class = NoCapacityLauncher


async def test_capacity_error_tries_the_next_availability_zone(account):
    spawner = make_spawner(account, cls=NoCapacityIn)
    spawner.launcher.full_subnets = (account.subnets[0],)
    await spawner.start()
    assert the_instance(account, spawner.instance_id)["SubnetId"] == account.subnets[1]


async def test_no_capacity_anywhere_is_explained_to_the_user(account):
    spawner = make_spawner(account, cls=NoCapacityIn, instance_type="p3.2xlarge")
    spawner.launcher.full_subnets = tuple(account.subnets)
    with pytest.raises(SpawnException) as failure:
        await spawner.start()
    message = failure.value.message
    assert "no p3.2xlarge capacity" in message
    assert "pick another size" in message
    assert failure.value.reason == "capacity"
    assert account.ec2.describe_instances()["Reservations"] == []


Unauthorized = spawner_failing("run_instances", "UnauthorizedOperation")


async def test_aws_refusal_becomes_a_message_a_user_can_act_on(account):
    spawner = make_spawner(account, cls=Unauthorized)
    with pytest.raises(SpawnException) as failure:
        await spawner.start()
    assert "administrator" in failure.value.message
    assert "IAM policy" in failure.value.message
    assert "UnauthorizedOperation" not in failure.value.message
    assert failure.value.reason == "unauthorized"


async def test_the_failure_reason_is_from_a_fixed_set_whatever_aws_answers(account):
    spawner = make_spawner(account, cls=spawner_failing("run_instances", "SomeNewErrorCode.Of2027"))
    with pytest.raises(SpawnException) as failure:
        await spawner.start()
    assert failure.value.reason == "aws", "an unknown AWS code is no new metrics label"


class NeverRunning(EC2Spawner):
    """The instance launches but never reaches running within the start timeout."""

    async def _wait_for_state(self, instance_id, states, limit):
        if "running" in states:
            raise TimeoutError(f"instance {instance_id} did not reach running in {limit}s")
        return await super()._wait_for_state(instance_id, states, limit)


async def test_a_start_that_times_out_stops_its_instance(account):
    spawner = make_spawner(account, cls=NeverRunning)
    with pytest.raises(SpawnException) as failure:
        await spawner.start()
    assert failure.value.reason == "timeout"
    assert "did not start in time" in failure.value.message
    assert the_instance(account, spawner.instance_id)["State"]["Name"] == "stopped"


async def test_no_subnets_is_a_configuration_message(account):
    spawner = make_spawner(account, subnet_ids=[])
    with pytest.raises(SpawnException) as failure:
        await spawner.start()
    assert "c.EC2Spawner.subnet_ids" in failure.value.message


# -- why a server is not running, and what the user is told --------------------------------------


def set_state_reason(instance_id: str, code: str, message: str) -> None:
    """What EC2 records when it, not the hub, stops an instance (moto's backend, in-process)."""
    from moto.backends import get_backend
    from moto.ec2.models.instances import StateReason

    backend = get_backend("ec2")["123456789012"]["us-east-1"]
    backend.get_instance(instance_id).state_reason = StateReason(message, code)


async def test_a_reclaimed_spot_instance_is_explained_and_the_reason_outlives_the_stop(account):
    spawner = make_spawner(account, use_spot=True)
    await spawner.start()
    account.ec2.stop_instances(InstanceIds=[spawner.instance_id])
    set_state_reason(spawner.instance_id, "Server.SpotInstanceShutdown", "Server.SpotInstanceShutdown: Spot")
    assert await spawner.poll() == 0
    assert "AWS reclaimed your spot instance" in spawner.stop_reason
    assert "home is on its disk" in spawner.stop_reason

    await spawner.stop()
    spawner.clear_state()  # what the hub does after a stop
    state = spawner.get_state()
    restored = make_spawner(account)
    restored.load_state(state)
    assert "reclaimed" in restored.stop_reason, "the reason survives a hub restart"
    form = restored.options_form(restored)
    assert "reclaimed your spot instance" in form
    assert "checked" not in form.split('name="spot"')[1].split(">")[0], "spot is not preselected"

    await restored.start()
    events = [e async for e in restored.progress()]
    assert "reclaimed" in events[0]["message"], "the next start says what happened first"
    assert restored.stop_reason == ""


async def test_an_instance_terminated_outside_the_hub_is_explained(account, spawner):
    await spawner.start()
    account.ec2.terminate_instances(InstanceIds=[spawner.instance_id])
    assert await spawner.poll() == 0
    assert "terminated outside the hub" in spawner.stop_reason
    assert "S3 folder" in spawner.stop_reason


class BootFailsLauncher(Launcher):
    """EC2 cannot boot the instance: it goes from pending back to stopped with an internal error."""

    async def call(self, operation, **kwargs):
        response = await super().call(operation, **kwargs)
        if operation == "run_instances":
            instance_id = response["Instances"][0]["InstanceId"]
            await super().call("stop_instances", InstanceIds=[instance_id])
            set_state_reason(
                instance_id, "Server.InternalError", "Server.InternalError: Internal error on launch"
            )
        return response


class EndsWhileBooting(EC2Spawner):
    launcher_class = BootFailsLauncher


async def test_a_boot_that_ends_is_a_clear_failure_shown_by_the_hubs_pages(account):
    spawner = make_spawner(account, cls=EndsWhileBooting)
    with pytest.raises(SpawnException) as failure:
        await spawner.start()
    assert "AWS could not boot your instance" in failure.value.message
    # JupyterHub's pages and progress stream show `jupyterhub_message`, never the log message.
    assert failure.value.jupyterhub_message == failure.value.message
    assert the_instance(account, spawner.instance_id)["State"]["Name"] == "stopped"
    assert spawner.stop_reason.startswith("the last start failed")


class OnLoopback(EC2Spawner):
    """The instance's address is a loopback one where nothing listens (the server died)."""

    async def _polled_instance(self):
        instance = await super()._polled_instance()
        return None if instance is None else {**instance, "PrivateIpAddress": "127.0.0.1"}


async def test_a_running_server_that_stops_answering_is_dead_after_repeated_checks(account):
    from jupyterhub.objects import Server

    from tests.e2e.stack import listen_port

    spawner = make_spawner(account, cls=OnLoopback, unreachable_checks=2, server_check_timeout=1)
    await spawner.start()
    spawner.server_port = listen_port()  # nothing listens there
    spawner.server = Server(ip="127.0.0.1", port=spawner.server_port, base_url="/user/alice/")
    assert await spawner.poll() is None, "one missed check is not enough"
    assert await spawner.poll() == 0, "two in a row: dead"
    assert "stopped answering" in spawner.stop_reason


async def test_the_polls_of_many_servers_share_one_listing_of_the_hubs_instances(account):
    spawners = [make_spawner(account, user=f"user{n}") for n in range(4)]
    for spawner in spawners:
        await spawner.start()
    calls: list[dict] = []
    spawners[0]._client("ec2").meta.events.register(
        "provide-client-params.ec2.DescribeInstances", lambda params, **_: calls.append(params)
    )
    assert await asyncio.gather(*(s.poll() for s in spawners)) == [None] * 4
    assert len(calls) == 1 and "InstanceIds" not in calls[0], "one listing for every poll"
    # Within half a poll interval the list is reused, so a stop shows at a later poll.
    account.ec2.stop_instances(InstanceIds=[spawners[0].instance_id])
    assert await spawners[0].poll() is None and len(calls) == 1
    spawners[0].poll_interval = 0
    assert await spawners[0].poll() == 0 and len(calls) == 2
    # An instance not on the list yet (launched since) is asked about on its own.
    late = make_spawner(account, user="late")
    await late.start()
    late.poll_interval = 60
    assert await late.poll() is None
    assert calls[-1].get("InstanceIds") == [late.instance_id]


async def test_the_chosen_size_is_what_jupyterlab_measures_memory_and_cpu_against(account, spawner):
    spawner.apply_user_options(spawner, {"size": "medium"})
    await spawner.start()
    settings = json.loads(
        account.ssm.get_parameter(Name=spawner.settings_parameter, WithDecryption=True)["Parameter"]["Value"]
    )
    assert settings["environment"]["MEM_LIMIT"] == str(16 * 2**30)
    assert settings["environment"]["CPU_LIMIT"] == "4.0"
