"""Hub restarts and a lost hub database, against the real stack: servers carry on, starts cut short by
a restart leave neither a leak nor a second instance, orphans are flagged then stopped, and a hub that
lost its database finds its users' instances again by their tags."""

from __future__ import annotations

import pytest

from localcloud.up import Stack
from tests.e2e.stack import admin_client, approved_user, wait_for
from tests.faults.harness import LEDGER, Person, Switches, audit, check_nothing_leaked, running_fault_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # A grace period long enough to see the orphan flagged on the page before it is stopped.
    with running_fault_stack(tmp_path_factory, subnet_base=164, EC2HUB_ORPHAN_GRACE="30") as stack:
        yield stack


@pytest.fixture(scope="module")
def switches(stack):
    return Switches(stack)


def running_with_a_home(stack: Stack, name: str) -> Person:
    someone = Person(stack, name, approved_user(stack, name))
    someone.start_and_wait()
    someone.write_home("work.txt", f"{name}'s work\n")
    return someone


def launches(stack: Stack) -> int:
    return sum(1 for e in audit(stack) if e["action"] == "RunInstances" and e["status"] == 200)


def test_a_hub_restart_keeps_running_servers_and_a_cut_short_start_leaves_one_stopped_instance(
    stack, switches
):
    jon = running_with_a_home(stack, "jon")
    jons_instance = jon.the_instance()["InstanceId"]
    # lee's start is under way (her instance boots slowly) when the hub goes down.
    lee = Person(stack, "lee", approved_user(stack, "lee"))
    switches.set("boot/delay", seconds=60)
    assert lee.start().status_code in (201, 202)
    wait_for(lambda: lee.live_instances(), 30, "lee's instance to be launched")
    launched = launches(stack)

    stack.stop_hub()
    switches.reset()
    stack.start_hub()
    LEDGER["faults tried"] += 1

    jon.client = approved_user(stack, "jon")
    server = jon.client.server("jon")
    assert server and server["ready"], "jon's server is still there"
    jon.check_home()  # through the proxy, on the same instance
    assert jon.the_instance()["InstanceId"] == jons_instance
    assert launches(stack) == launched, "no instance was launched by the restart"

    lee.client = approved_user(stack, "lee")
    wait_for(lambda: lee.client.server("lee") is None, 30, "the hub to drop the cut-short start")
    check_nothing_leaked(stack)
    [first] = lee.instances()
    lee.start_and_wait()
    assert [i["InstanceId"] for i in lee.instances()] == [first["InstanceId"]], "no second instance"
    lee.write_home("work.txt", "lee's work\n")
    lee.check_home()


def test_orphans_are_flagged_then_stopped_and_a_lost_database_reattaches_them(stack):
    mia = running_with_a_home(stack, "mia")
    instance_id = mia.the_instance()["InstanceId"]

    # The hub's database is lost while mia's instance runs: no hub server owns it any more.
    stack.stop_hub()
    (stack.settings.state_dir / "hub" / "jupyterhub.sqlite").unlink()
    stack.start_hub()
    LEDGER["faults tried"] += 1

    admin = admin_client(stack)

    def flagged():
        page = admin.session.get(f"{stack.settings.url}/services/instances/", timeout=30)
        assert page.status_code == 200, page.text
        return page.text if "orphan since" in page.text else None

    # The reconciler checks every 2 s; the grace (30 s) leaves the page ample time to show its plan.
    page = wait_for(flagged, 20, "the orphan to be flagged on the Instances page")
    assert instance_id in page and "stops at" in page, "the reconciler's plan is shown"
    assert "the hub has no user &#39;mia&#39;" in page or "the hub has no user 'mia'" in page
    wait_for(lambda: mia.the_instance()["State"]["Name"] == "stopped", 90, "the orphan to be stopped")
    check_nothing_leaked(stack)

    # mia comes back (signs up again): her start finds her instance by its tags, home and all.
    mia.client = approved_user(stack, "mia")
    mia.token = ""
    mia.start_and_wait()
    assert mia.the_instance()["InstanceId"] == instance_id, "reattached, not launched anew"
    mia.token = mia.client.token("mia")
    mia.check_home()
    check_nothing_leaked(stack)
