"""A user's server from sign-in to stop and back, on the real stack: local cloud, hub, proxy."""

from __future__ import annotations

import re
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from localcloud.up import Stack
from tests.e2e.stack import (
    USER_PASSWORD,
    HubClient,
    admin_client,
    approved_user,
    audit_entries,
    aws_client,
    instances_of,
    processes_under,
    running_stack,
)

pytestmark = pytest.mark.e2e

HUB_MUTATIONS = {
    "RunInstances",
    "StartInstances",
    "StopInstances",
    "TerminateInstances",
    "ModifyInstanceAttribute",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory, subnet_base=210) as stack:
        yield stack


@pytest.fixture(scope="module")
def ec2(stack):
    return aws_client(stack, "ec2")


def signed_in(stack: Stack, user: str) -> HubClient:
    return approved_user(stack, user)


def refuses_connections(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((ip, port)) != 0


def test_wrong_password_is_refused(stack):
    client = HubClient(stack.settings.url)
    response = client.login("mallory", "not-the-password")
    assert response.status_code == 403
    assert "Invalid username or password" in response.text


def test_sign_ups_waiting_for_approval_come_first_and_an_approval_shows_the_account(stack):
    for name in ("zora", "zack"):
        HubClient(stack.settings.url).sign_up(name, USER_PASSWORD)
    admin = admin_client(stack)
    page = admin.session.get(f"{stack.settings.url}/hub/authorize", timeout=30)
    rows = re.findall(r'<tr id="([^"]+)"', page.text)
    waiting = int(re.search(r"(\d+) waiting for approval", page.text).group(1))
    assert waiting >= 2 and {"zack", "zora"} <= set(rows[:waiting]), "pending sign-ups are listed first"
    assert "admin" in rows[waiting:], "approved accounts follow"

    approved = admin.approve("zora")
    assert approved.url.endswith("/hub/authorize?user=zora#zora")
    assert re.findall(r'<tr id="([^"]+)"', approved.text) == ["zora"]
    assert "<td>Yes</td>" in approved.text and "1 account starting with" in approved.text


def test_alice_start_stop_start_keeps_her_instance_and_home(stack, ec2):
    alice = signed_in(stack, "alice")
    alice.start("alice")
    server = alice.wait_ready("alice")
    assert server["ready"]

    token = alice.token("alice")
    status = alice.user_api("alice", token, "GET", "/status")
    assert status.status_code == 200, status.text
    assert "started" in status.json()
    # JupyterLab's status bar: the instance's memory and CPU, against the size's (the default, medium).
    usage = alice.user_api("alice", token, "GET", "/metrics/v1")
    assert usage.status_code == 200, usage.text
    assert usage.json()["limits"]["memory"]["rss"] == 16 * 2**30
    assert "cpu_percent" in usage.json()

    [instance] = instances_of(ec2, "alice")
    assert instance["State"]["Name"] == "running"
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["ec2hub:hub"] == stack.outputs["hub_id"]
    assert tags["ec2hub:server"] == "/"
    assert instance["SubnetId"] in stack.outputs["subnet_ids"]
    instance_id, ip = instance["InstanceId"], instance["PrivateIpAddress"]

    note = {"type": "file", "format": "text", "content": "results of run 1\n"}
    saved = alice.user_api("alice", token, "PUT", "/contents/notes.txt", json=note)
    assert saved.status_code in (200, 201), saved.text
    disk = stack.cloud_dir / "instances" / instance_id
    assert (disk / "home" / "notes.txt").read_text() == "results of run 1\n"

    # The API token of the server never shows in what the instance logs.
    console = ec2.get_console_output(InstanceId=instance_id)["Output"]
    assert "starting the server of alice on port 8888" in console
    assert server_token_absent(console, stack)

    alice.stop("alice")
    [instance] = instances_of(ec2, "alice")
    assert instance["InstanceId"] == instance_id
    assert instance["State"]["Name"] == "stopped"
    assert processes_under(disk) == []
    assert refuses_connections(ip, 8888)
    assert alice.server("alice") is None

    alice.start("alice")
    alice.wait_ready("alice")
    [instance] = instances_of(ec2, "alice")
    assert instance["InstanceId"] == instance_id
    assert instance["State"]["Name"] == "running"
    again = alice.user_api("alice", token, "GET", "/contents/notes.txt")
    assert again.status_code == 200, again.text
    assert again.json()["content"] == "results of run 1\n"
    alice.stop("alice")


def server_token_absent(console: str, stack: Stack) -> bool:
    import re

    # JupyterHub API tokens are 32 hex characters; none may appear in the console output.
    return re.search(r"\b[0-9a-f]{32}\b", console) is None


def test_alice_and_bob_at_once_get_two_instances(stack, ec2):
    alice, bob = signed_in(stack, "alice"), signed_in(stack, "bob")
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda pair: pair[0].start(pair[1]), [(alice, "alice"), (bob, "bob")]))
        list(pool.map(lambda pair: pair[0].wait_ready(pair[1]), [(alice, "alice"), (bob, "bob")]))
    [a] = instances_of(ec2, "alice")
    [b] = instances_of(ec2, "bob")
    assert a["InstanceId"] != b["InstanceId"]
    assert a["PrivateIpAddress"] != b["PrivateIpAddress"]
    for client, user in ((alice, "alice"), (bob, "bob")):
        token = client.token(user)
        assert client.user_api(user, token, "GET", "/status").status_code == 200
    # Bob's token does not open Alice's server.
    assert bob.user_api("alice", bob.token("bob"), "GET", "/status").status_code == 403
    alice.stop("alice")
    bob.stop("bob")


def test_every_hub_call_was_made_as_the_hub_under_enforcement(stack):
    # A launch, a stop and a start of its own, whatever the other tests did before.
    ivy = signed_in(stack, "ivy")
    for _ in range(2):
        ivy.start("ivy")
        ivy.wait_ready("ivy")
        ivy.stop("ivy")
    hub_key = read_key(stack, "hub")
    admin_key = read_key(stack, "admin")
    ec2_calls = [e for e in audit_entries(stack) if e["service"] == "ec2" and e["key"] != admin_key]
    mutations = [e for e in ec2_calls if e["action"] in HUB_MUTATIONS]
    assert {e["action"] for e in mutations} >= {"RunInstances", "StartInstances", "StopInstances"}
    assert {e["key"] for e in ec2_calls} == {hub_key}
    assert all(e["status"] == 200 for e in mutations)

    # Enforcement is on: the hub's own credentials cannot do what its policy does not allow.
    iam = aws_client(stack, "iam", profile="hub")
    with pytest.raises(ClientError) as denied:
        iam.create_user(UserName="intruder")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    ec2_as_hub = aws_client(stack, "ec2", profile="hub")
    with pytest.raises(ClientError) as denied:
        ec2_as_hub.create_vpc(CidrBlock="10.0.0.0/16")
    assert denied.value.response["Error"]["Code"] in ("AccessDenied", "UnauthorizedOperation")


def read_key(stack: Stack, profile: str) -> str:
    from localcloud.provision import read_profile

    return read_profile(stack.cloud_dir / "aws" / "credentials", profile)["aws_access_key_id"]
