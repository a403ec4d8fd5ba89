"""The hot pool on the real stack: a start takes over a booted instance, which held nothing of anyone
before, is never handed to a second user, and is replaced in the pool."""

from __future__ import annotations

import json

import pytest

from localcloud.up import Stack
from tests.e2e.kernel import Kernel
from tests.e2e.stack import approved_user, aws_client, instances_of, running_stack, wait_for

pytestmark = pytest.mark.e2e

SIZE = "small"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory, subnet_base=202, EC2HUB_HOT_POOL=f"{SIZE}=1") as stack:
        yield stack


@pytest.fixture(scope="module")
def ec2(stack):
    return aws_client(stack, "ec2")


def waiting_pool_instance(ec2, stack: Stack, other_than: set[str] = frozenset()) -> dict:
    """The pool's instance of SIZE once its bootstrap waits for a claim."""

    def waiting():
        filters = [
            {"Name": "tag:ec2hub:pool", "Values": [SIZE]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
        for reservation in ec2.describe_instances(Filters=filters)["Reservations"]:
            for instance in reservation["Instances"]:
                console = ec2.get_console_output(InstanceId=instance["InstanceId"]).get("Output", "")
                if instance["InstanceId"] not in other_than and "waiting to be claimed" in console:
                    return instance
        return None

    return wait_for(waiting, 120, "a pool instance waiting to be claimed")


def start_small(client, user: str) -> None:
    response = client.api("POST", f"/users/{user}/server", json={"size": SIZE})
    assert response.status_code in (201, 202), response.text
    client.wait_ready(user)


@pytest.fixture(scope="module")
def alices_claim(stack, ec2) -> dict:
    """alice's first start, which takes over the pool's instance; what that instance was before."""
    alice = approved_user(stack, "alice")
    pooled = waiting_pool_instance(ec2, stack)
    home = stack.settings.state_dir / "localcloud" / "instances" / pooled["InstanceId"] / "home"
    before = {
        "profile": "IamInstanceProfile" in pooled,
        "mounts": (home / "s3").exists() or (home / "shared").exists(),
        "user_tags": ec2.describe_tags(
            Filters=[
                {"Name": "resource-id", "Values": [pooled["InstanceId"]]},
                {"Name": "key", "Values": ["ec2hub:user"]},
            ]
        )["Tags"],
    }
    start_small(alice, "alice")
    return {"client": alice, "pooled": pooled, "before": before}


def test_a_start_takes_over_a_pool_instance_that_held_nothing_before(stack, ec2, alices_claim):
    before = alices_claim["before"]
    assert not before["profile"], "no role, so no data, before a claim"
    assert not before["mounts"] and before["user_tags"] == []

    alice = alices_claim["client"]
    [instance] = instances_of(ec2, "alice")
    assert instance["InstanceId"] == alices_claim["pooled"]["InstanceId"]
    assert instance["IamInstanceProfile"]["Arn"].endswith("alice")
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert "ec2hub:pool" not in tags and tags["ec2hub:user"] == "alice"
    if not alice.server("alice"):
        start_small(alice, "alice")  # another test stopped her server
    kernel = Kernel(stack.settings.url, "alice", alice.token("alice"))
    result = kernel.run(
        "import json, os; print(json.dumps({'user': os.environ['JUPYTERHUB_USER'],"
        " 'mounted': os.path.ismount(os.path.realpath(os.path.expanduser('~/s3'))),"
        " 'prefix': os.environ['EC2HUB_USER_PREFIX']}))"
    )
    kernel.shutdown()
    assert result.ok, result.errors
    seen = json.loads(result.stdout)
    assert seen["user"] == "alice" and seen["mounted"] and "alice" in seen["prefix"]


def test_the_pool_refills_and_never_hands_an_instance_to_a_second_user(stack, ec2, alices_claim):
    [alices] = instances_of(ec2, "alice")
    refill = waiting_pool_instance(ec2, stack, other_than={alices["InstanceId"]})
    bob = approved_user(stack, "bob")
    start_small(bob, "bob")
    [bobs] = instances_of(ec2, "bob")
    assert bobs["InstanceId"] == refill["InstanceId"] != alices["InstanceId"]
    [alices_now] = instances_of(ec2, "alice")
    assert {t["Key"]: t["Value"] for t in alices_now["Tags"]}["ec2hub:user"] == "alice"


def test_a_user_with_an_instance_resumes_it_rather_than_take_from_the_pool(stack, ec2, alices_claim):
    alice = alices_claim["client"]
    [before] = instances_of(ec2, "alice")
    if alice.server("alice"):
        alice.stop("alice")
    pooled = waiting_pool_instance(ec2, stack, other_than={before["InstanceId"]})
    start_small(alice, "alice")
    [after] = instances_of(ec2, "alice")
    assert after["InstanceId"] == before["InstanceId"], "her home is on her own instance"
    still_pooled = ec2.describe_instances(InstanceIds=[pooled["InstanceId"]])["Reservations"][0]["Instances"][
        0
    ]
    assert {t["Key"]: t["Value"] for t in still_pooled["Tags"]}.get("ec2hub:pool") == SIZE
