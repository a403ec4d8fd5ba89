"""No account reaches another's instance, home or data, on the real stack.

With a name rule an operator relaxed to admit EC2 filter patterns (`alic?`, `a*`, `*` each match
"alice" as a tag filter value), such users start, fail, stop and are deleted while alice works,
and her instance keeps its state, profile, user-data and home; whether a stop keeps the instance
or terminates it. A user deleted and signed up again starts empty: no instance, no S3 data of the
old account, which an admin still finds aside.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from localcloud.up import Stack
from tests.e2e.stack import admin_client, approved_user, aws_client, wait_for
from tests.faults.harness import Person, Switches, running_fault_stack

pytestmark = pytest.mark.e2e

PATTERN_NAMES = ["alic?", "a*", "*"]
# Relaxed on purpose: admits the wildcard characters that the default rule refuses.
RELAXED_RULE = r"^[a-z0-9*?][a-z0-9._@+*?-]{0,63}$"


# What a stop does to an instance (EC2HUB_STOP_BEHAVIOUR), and the stack's subnets for each.
STOP_BEHAVIOURS = {"stop": 170, "terminate": 254}


@pytest.fixture(scope="module", params=sorted(STOP_BEHAVIOURS))
def stack(request, tmp_path_factory):
    settings = {"EC2HUB_USERNAME_PATTERN": RELAXED_RULE, "EC2HUB_STOP_BEHAVIOUR": request.param}
    with running_fault_stack(tmp_path_factory, STOP_BEHAVIOURS[request.param], **settings) as stack:
        yield stack


@pytest.fixture(scope="module")
def switches(stack):
    yield Switches(stack)


def exactly_whose(stack: Stack, user: str) -> list[dict]:
    """Live instances whose user tag is exactly `user`."""
    return Person(stack, user, client=None).live_instances()


def instance_facts(stack: Stack, instance_id: str) -> dict:
    ec2 = aws_client(stack, "ec2")
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    user_data = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return {
        "state": instance["State"]["Name"],
        "profile": instance["IamInstanceProfile"]["Arn"],
        "tags": sorted((t["Key"], t["Value"]) for t in instance["Tags"]),
        "user_data": base64.b64decode(user_data["UserData"]["Value"]),
    }


class Admin:
    """The admin acting on users whose names need quoting in URLs."""

    def __init__(self, stack: Stack) -> None:
        self.client = admin_client(stack)

    def server(self, name: str) -> dict | None:
        response = self.client.api("GET", f"/users/{quote(name, safe='')}")
        response.raise_for_status()
        return response.json()["servers"].get("")

    def create(self, name: str) -> None:
        response = self.client.api("POST", f"/users/{quote(name, safe='')}")
        assert response.status_code == 201, response.text

    def start(self, name: str, fails: bool = False) -> None:
        response = self.client.api("POST", f"/users/{quote(name, safe='')}/server")
        if fails and response.status_code >= 400:
            return  # failed within the API call
        assert response.status_code in (201, 202), response.text

    def stop(self, name: str) -> None:
        response = self.client.api("DELETE", f"/users/{quote(name, safe='')}/server")
        assert response.status_code in (202, 204), response.text
        wait_for(lambda: self.server(name) is None, 90, f"{name}'s server to stop")

    def delete(self, name: str) -> None:
        response = self.client.api("DELETE", f"/users/{quote(name, safe='')}")
        assert response.status_code == 204, response.text


def test_names_that_are_patterns_never_reach_alices_instance_or_home(stack, switches):
    alice = Person(stack, "alice", approved_user(stack, "alice"))
    alice.start_and_wait()
    alice.write_home("mine.txt", "alice's work\n")
    [instance] = exactly_whose(stack, "alice")
    before = instance_facts(stack, instance["InstanceId"])
    admin = Admin(stack)

    for name in PATTERN_NAMES:
        admin.create(name)
        if name == "*":
            # A start that fails before any instance exists: the failure path looks one up.
            switches.set("api-errors", action="RunInstances", code="InsufficientInstanceCapacity", count=100)
        else:
            switches.set("boot/fail", count=1)  # a start whose new instance cannot boot
        admin.start(name, fails=True)
        wait_for(lambda name=name: admin.server(name) is None, 120, f"{name}'s start to fail")
        switches.reset()
        admin.start(name)
        wait_for(lambda name=name: (admin.server(name) or {}).get("ready"), 120, f"{name}'s server")
        [own] = exactly_whose(stack, name)
        assert own["InstanceId"] != instance["InstanceId"], f"{name!r} runs on an instance of its own"
        admin.stop(name)
        admin.delete(name)
        assert not exactly_whose(stack, name), f"{name!r}'s instance went with the account"

        assert instance_facts(stack, instance["InstanceId"]) == before, f"{name!r} changed alice's instance"
        alice.check_home()
    assert alice.client.server("alice")["ready"], "alice's server ran throughout"


def test_a_name_deleted_and_signed_up_again_starts_empty(stack):
    bucket = stack.outputs["bucket"]
    s3 = aws_client(stack, "s3")
    bob = Person(stack, "bob", approved_user(stack, "bob"))
    bob.start_and_wait()
    bob.write_home("old.txt", "the old account's work\n")
    s3.put_object(Bucket=bucket, Key="users/bob/notes.txt", Body=b"the old account's data")
    listing = bob.client.user_api("bob", bob.token, "GET", "/contents/s3").json()
    assert "notes.txt" in [item["name"] for item in listing["content"]], "the old account sees its data"
    [old] = exactly_whose(stack, "bob")
    Admin(stack).delete("bob")  # stops the server first, as the admin page does
    assert not exactly_whose(stack, "bob"), "the old account's instance is gone"

    again = Person(stack, "bob", approved_user(stack, "bob"))
    again.start_and_wait()
    again.token = again.client.token("bob")
    [new] = exactly_whose(stack, "bob")
    assert new["InstanceId"] != old["InstanceId"]
    listing = again.client.user_api("bob", again.token, "GET", "/contents/s3").json()
    assert [item["name"] for item in listing["content"]] == [], "~/s3 of the new account is empty"
    home = again.client.user_api("bob", again.token, "GET", "/contents/old.txt")
    assert home.status_code == 404, "the new account's home is new"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="users/bob/")

    # An admin still finds the old account's data, moved aside with the time of the deletion.
    aside = s3.list_objects_v2(Bucket=bucket, Prefix="deleted/bob/")["Contents"]
    [kept] = [o["Key"] for o in aside if o["Key"].endswith("/notes.txt")]
    assert s3.get_object(Bucket=bucket, Key=kept)["Body"].read() == b"the old account's data"
