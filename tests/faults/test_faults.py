"""Each fault the local cloud can inject, against the real stack: after each one, nothing runs for
nobody, no home is lost, the user is told why, and the next start works."""

from __future__ import annotations

import pytest

from localcloud.up import Stack
from tests.e2e.stack import approved_user, wait_for
from tests.faults.harness import Person, Switches, audit, check_nothing_leaked, running_fault_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_fault_stack(tmp_path_factory, subnet_base=160) as stack:
        yield stack


@pytest.fixture(scope="module")
def switches(stack):
    return Switches(stack)


@pytest.fixture(autouse=True)
def switches_off(switches):
    yield
    switches.reset()


def person(stack: Stack, name: str) -> Person:
    return Person(stack, name, approved_user(stack, name))


def with_a_home(stack: Stack, name: str, stop: bool = False) -> Person:
    """A user whose server ran and has a file in the home; stopped again if `stop`."""
    someone = person(stack, name)
    someone.start_and_wait()
    someone.write_home("work.txt", f"{name}'s work\n")
    if stop:
        someone.client.stop(name)
    return someone


def next_start_works(someone: Person) -> None:
    someone.start_and_wait()
    someone.check_home()


def test_a_failed_boot_cleans_up_says_why_and_the_next_start_works(stack, switches):
    # A new instance that cannot boot: EC2 terminates it.
    amy = person(stack, "amy")
    switches.set("boot/fail", count=1)
    told = amy.start_fails()
    assert "AWS could not boot your instance" in told, told
    assert amy.live_instances() == [], "the failed new instance is gone"
    check_nothing_leaked(stack)
    next_start_works(amy)
    amy.write_home("work.txt", "amy's work\n")
    amy.client.stop("amy")

    # An existing instance that cannot boot: it stays stopped with the home on its disk.
    first = amy.the_instance()["InstanceId"]
    switches.set("boot/fail", count=1)
    told = amy.start_fails()
    assert "AWS could not boot your instance" in told, told
    assert "Your home is on its disk" in told, told
    assert amy.the_instance()["State"]["Name"] == "stopped"
    check_nothing_leaked(stack)
    next_start_works(amy)
    assert amy.the_instance()["InstanceId"] == first


def test_a_boot_slower_than_the_start_timeout_is_stopped_and_the_next_start_works(stack, switches):
    bob = with_a_home(stack, "bob", stop=True)
    switches.set("boot/delay", seconds=120)
    told = bob.start_fails(timeout=120)
    assert "did not start in time" in told, told
    wait_for(lambda: bob.the_instance()["State"]["Name"] == "stopped", 30, "the slow instance to be stopped")
    check_nothing_leaked(stack)
    switches.reset()
    next_start_works(bob)


def test_capacity_errors_move_to_the_next_zone_and_explain_when_there_is_none(stack, switches):
    cat = person(stack, "cat")
    subnets = stack.outputs["subnet_ids"]
    # The first zone has no capacity however often botocore retries (until the switches are reset).
    switches.set(
        "api-errors", action="RunInstances", code="InsufficientInstanceCapacity", count=100, subnet=subnets[0]
    )
    cat.start_and_wait()
    assert cat.the_instance()["SubnetId"] == subnets[1], "launched in the zone with capacity"
    cat.write_home("work.txt", "cat's work\n")
    cat.client.stop("cat")
    switches.reset()

    dan = person(stack, "dan")
    switches.set("api-errors", action="RunInstances", code="InsufficientInstanceCapacity", count=100)
    told = dan.start_fails()
    assert "capacity" in told and "pick another size" in told, told
    assert dan.live_instances() == []
    check_nothing_leaked(stack)
    switches.reset()
    next_start_works(dan)
    next_start_works(cat)


def test_throttling_is_retried_with_backoff(stack, switches):
    eve = person(stack, "eve")
    switches.set("api-errors", action="RunInstances", code="RequestLimitExceeded", count=3)
    eve.start_and_wait()
    throttled = [e for e in audit(stack) if e.get("fault") == "RequestLimitExceeded"]
    assert len(throttled) == 3, "three refusals, then the launch went through"
    [instance] = eve.live_instances()
    check_nothing_leaked(stack)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("UnauthorizedOperation", "IAM policy"),
        ("InternalError", "Try again"),
    ],
)
def test_aws_refusals_are_explained_and_leave_nothing_behind(stack, switches, code, expected):
    name = f"fay{code[:4].lower()}"
    fay = with_a_home(stack, name, stop=True)
    # Start of the stopped instance refused: it must stay stopped, with its home.
    switches.set("api-errors", action="StartInstances", code=code, count=100)
    told = fay.start_fails()
    assert expected in told, told
    assert code not in told.split("Spawn failed")[-1], "AWS's error code stays in the log"
    assert fay.the_instance()["State"]["Name"] == "stopped"
    check_nothing_leaked(stack)
    switches.reset()
    next_start_works(fay)


def test_killed_processes_are_noticed_and_the_home_survives(stack, switches):
    gus = with_a_home(stack, "gus")
    instance_id = gus.the_instance()["InstanceId"]
    switches.set(f"instances/{instance_id}/kill")
    gus.wait_stopped_by_hub(timeout=60)
    told = gus.told()
    assert "stopped answering" in told, told
    wait_for(
        lambda: gus.the_instance()["State"]["Name"] == "stopped", 60, "the dead server's instance to stop"
    )
    check_nothing_leaked(stack)
    next_start_works(gus)
    assert gus.the_instance()["InstanceId"] == instance_id


def test_an_instance_terminated_outside_the_hub_is_noticed_and_replaced(stack, switches):
    hal = with_a_home(stack, "hal")
    instance_id = hal.the_instance()["InstanceId"]
    switches.set(f"instances/{instance_id}/terminate")
    hal.wait_stopped_by_hub(timeout=60)
    told = hal.told()
    assert "terminated outside the hub" in told, told
    hal.forget_home()  # terminated: the disk is gone by design; S3 keeps the data
    check_nothing_leaked(stack)
    next_start_works(hal)
    assert hal.the_instance()["InstanceId"] != instance_id


def test_a_reclaimed_spot_instance_is_explained_keeps_the_home_and_offers_on_demand(stack, switches):
    ivy = person(stack, "ivy")
    ivy.start_and_wait({"size": "medium", "spot": True})
    ivy.write_home("work.txt", "ivy's work\n")
    instance = ivy.the_instance()
    assert instance["InstanceLifecycle"] == "spot"
    switches.set(f"instances/{instance['InstanceId']}/reclaim")
    ivy.wait_stopped_by_hub(timeout=60)
    told = ivy.told()
    assert "AWS reclaimed your spot instance" in told and "your home is on its disk" in told, told
    form = ivy.client.session.get(f"{stack.settings.url}/hub/spawn/ivy", timeout=30).text
    assert "reclaimed your spot instance" in form, "the spawn form says why"
    assert 'name="spot" value="medium" checked' not in form, "on-demand is what the form offers"
    check_nothing_leaked(stack)
    next_start_works(ivy)
