"""The Instances page on the real stack: admins see, stop and terminate this hub's instances; no one else."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from tests.e2e.stack import (
    HubClient,
    admin_client,
    approved_user,
    aws_client,
    instances_of,
    running_stack,
    wait_for,
)

pytestmark = pytest.mark.e2e

CELLS = ("user", "server", "size", "state", "ip", "launched", "uptime", "cost")


class InstancesTable(HTMLParser):
    """The rows of `<table id="instances">`: instance id -> its classes, cell texts and form's xsrf token."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.rows: dict[str, dict] = {}
        self._row: dict | None = None
        self._cell: str | None = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-instance-id" in attrs:
            self._row = {"classes": (attrs.get("class") or "").split(), "text": ""}
            self.rows[attrs["data-instance-id"]] = self._row
        elif self._row is not None and tag == "td":
            self._cell = attrs.get("class")
            self._row[self._cell] = ""
        elif self._row is not None and tag == "input" and attrs.get("name") == "_xsrf":
            self._row["xsrf"] = attrs["value"]
        elif self._row is not None and tag == "button":
            self._row.setdefault("buttons", []).append(attrs.get("value"))

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._row is not None:
            self._row["text"] += data
            if self._cell in self._row:
                self._row[self._cell] += data.strip()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory, subnet_base=226) as stack:
        yield stack


@pytest.fixture(scope="module")
def ec2(stack):
    return aws_client(stack, "ec2")


@pytest.fixture(scope="module")
def alice(stack):
    alice = approved_user(stack, "alice")
    alice.start("alice")
    alice.wait_ready("alice")
    return alice


@pytest.fixture(scope="module")
def alice_instance(alice, ec2) -> dict:
    [instance] = instances_of(ec2, "alice")
    return instance


@pytest.fixture(scope="module")
def ghost_instance(stack, ec2) -> dict:
    return ghost(stack, ec2, "ghost")


def ghost(stack, ec2, name: str) -> dict:
    """An instance tagged for this hub, for a user the hub never had: what a lost database leaves."""
    tags = {
        "ec2hub:hub": stack.outputs["hub_id"],
        "ec2hub:user": name,
        "ec2hub:server": "/",
        "Name": name,
    }
    response = ec2.run_instances(
        ImageId=stack.outputs["ami_id"],
        InstanceType="t3.medium",
        MinCount=1,
        MaxCount=1,
        SubnetId=stack.outputs["subnet_ids"][0],
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )
    return response["Instances"][0]


def instances_page(client: HubClient):
    """The page as a browser gets it: through the hub's OAuth redirects on the first visit."""
    return client.session.get(f"{client.base_url}/services/instances/", timeout=30)


def state_of(ec2, instance_id: str) -> str:
    [reservation] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return reservation["Instances"][0]["State"]["Name"]


def test_the_admin_sees_alices_instance_and_the_orphan(stack, alice_instance, ghost_instance):
    admin = admin_client(stack)
    response = instances_page(admin)
    assert response.status_code == 200, response.text
    assert response.url == f"{stack.settings.url}/services/instances/"
    assert [r.status_code for r in response.history][:1] == [302], "signed in through the hub's OAuth"
    assert "<title>Instances</title>" in response.text and "<h1>Instances</h1>" in response.text
    rows = InstancesTable(response.text).rows

    alice = rows[alice_instance["InstanceId"]]
    assert "orphan" not in alice["classes"]
    assert (alice["user"], alice["server"], alice["state"]) == ("alice", "default", "running")
    assert alice["ip"] == alice_instance["PrivateIpAddress"]
    assert alice["size"] == "Medium"  # the default size, m6i.xlarge
    assert alice["cost"].startswith("$") and alice["uptime"] not in ("", "-")
    assert alice["buttons"] == ["stop", "terminate"]

    ghost = rows[ghost_instance["InstanceId"]]
    assert "orphan" in ghost["classes"]
    assert "orphan" in ghost["text"]
    assert (ghost["user"], ghost["size"]) == ("ghost", "Small")
    assert "no user 'ghost'" in ghost["text"]


def test_a_plain_user_gets_403_everywhere_in_the_service(stack, alice, alice_instance):
    page = instances_page(alice)
    assert page.status_code == 403
    posted = alice.session.post(
        f"{stack.settings.url}/services/instances/{alice_instance['InstanceId']}",
        data={"action": "terminate"},
        allow_redirects=False,
        timeout=30,
    )
    assert posted.status_code == 403
    elsewhere = alice.session.get(f"{stack.settings.url}/services/instances/anything", timeout=30)
    assert elsewhere.status_code == 403
    assert instances_of(aws_client(stack, "ec2"), "alice")[0]["State"]["Name"] == "running"


def test_only_admins_have_the_instances_link_in_the_navigation_bar(stack, alice):
    admin_home = admin_client(stack).session.get(f"{stack.settings.url}/hub/home", timeout=30)
    assert admin_home.status_code == 200
    assert 'id="ec2hub-instances-link"' in admin_home.text
    assert 'href="/services/instances/"' in admin_home.text
    alice_home = alice.session.get(f"{stack.settings.url}/hub/home", timeout=30)
    assert alice_home.status_code == 200
    assert "ec2hub-instances-link" not in alice_home.text


def test_the_admin_stops_a_users_instance_and_terminates_an_orphan(stack, ec2):
    # A user and an orphan of this test's own: alice's and the ghost's stay as the other tests expect.
    bea = approved_user(stack, "bea")
    bea.start("bea")
    bea.wait_ready("bea")
    [beas_instance] = instances_of(ec2, "bea")
    admin = admin_client(stack)
    beas_id, ghost_id = beas_instance["InstanceId"], ghost(stack, ec2, "phantom")["InstanceId"]
    rows = InstancesTable(instances_page(admin).text).rows

    def act(instance_id: str, action: str, xsrf: str):
        return admin.session.post(
            f"{stack.settings.url}/services/instances/{instance_id}",
            data={"_xsrf": xsrf, "action": action},
            allow_redirects=False,
            timeout=30,
        )

    # Without the page's xsrf token, nothing happens.
    assert act(beas_id, "stop", "").status_code == 403
    assert act(beas_id, "reboot", rows[beas_id]["xsrf"]).status_code == 400
    assert state_of(ec2, beas_id) == "running"

    stopped = act(beas_id, "stop", rows[beas_id]["xsrf"])
    assert stopped.status_code == 303, stopped.text
    assert stopped.headers["Location"].startswith("/services/instances/?")
    assert state_of(ec2, beas_id) in ("stopping", "stopped")
    wait_for(lambda: state_of(ec2, beas_id) == "stopped", 60, "bea's instance to stop")

    terminated = act(ghost_id, "terminate", rows[ghost_id]["xsrf"])
    assert terminated.status_code == 303, terminated.text
    assert state_of(ec2, ghost_id) in ("shutting-down", "terminated")
    wait_for(lambda: state_of(ec2, ghost_id) == "terminated", 60, "the orphan to be terminated")

    after = admin.session.get(f"{stack.settings.url}{stopped.headers['Location']}", timeout=30)
    assert after.status_code == 200
    rows = InstancesTable(after.text).rows
    assert rows[beas_id]["state"] == "stopped" and rows[beas_id]["cost"] == "$0.0000"
    assert ghost_id not in rows, "a terminated instance is no longer listed"


def test_instances_of_another_hub_are_refused(stack, ec2, alice_instance):
    response = ec2.run_instances(
        ImageId=stack.outputs["ami_id"],
        InstanceType="t3.medium",
        MinCount=1,
        MaxCount=1,
        SubnetId=stack.outputs["subnet_ids"][1],
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "ec2hub:hub", "Value": "another-hub"}]}
        ],
    )
    other = response["Instances"][0]["InstanceId"]
    admin = admin_client(stack)
    page = instances_page(admin)
    rows = InstancesTable(page.text).rows
    assert other not in rows
    xsrf = next(iter(rows.values()))["xsrf"]
    refused = admin.session.post(
        f"{stack.settings.url}/services/instances/{other}",
        data={"_xsrf": xsrf, "action": "terminate"},
        allow_redirects=False,
        timeout=30,
    )
    assert refused.status_code == 400
    assert state_of(ec2, other) in ("pending", "running")
    ec2.terminate_instances(InstanceIds=[other])
