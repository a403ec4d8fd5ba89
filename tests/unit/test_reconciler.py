"""The orphan reconciler with stand-ins for EC2 and the hub, and time injected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.reconciler import OrphanReconciler

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def instance(instance_id: str, user: str, state: str = "running", server: str = "/") -> dict:
    tags = {"ec2hub:hub": "unit-hub", "ec2hub:user": user, "ec2hub:server": server}
    return {
        "InstanceId": instance_id,
        "State": {"Name": state},
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }


class StandInInstances:
    def __init__(self, instances: list[dict]) -> None:
        self.instances = instances
        self.actions: list[tuple[str, str]] = []

    async def list(self, states) -> list[dict]:
        return [i for i in self.instances if i["State"]["Name"] in states]

    async def act(self, action: str, instance_id: str) -> None:
        self.actions.append((action, instance_id))


class StandInHub:
    """The hub's API as the reconciler reads it: active servers in bulk, then single users."""

    def __init__(self, servers: dict) -> None:
        self.hub_servers = servers
        self.asked_about: list[str] = []

    async def active_servers(self, max_age: float = 0) -> dict:
        active = {
            user: {name: s for name, s in servers.items() if not s.get("stopped")}
            for user, servers in self.hub_servers.items()
        }
        return {user: servers for user, servers in active.items() if servers}

    async def servers_of(self, names) -> dict:
        names = set(names)
        self.asked_about += sorted(names)
        return {user: servers for user, servers in self.hub_servers.items() if user in names}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def reconciler(instances, servers, clock, **kwargs) -> OrphanReconciler:
    return OrphanReconciler(
        StandInInstances(instances), StandInHub(servers), grace=300, clock=clock, **kwargs
    )


async def test_an_orphan_is_flagged_then_stopped_after_the_grace_period(clock):
    ghost = instance("i-ghost", "ghost")
    r = reconciler([ghost], {}, clock)
    assert await r.run_once() == []
    assert r.note("i-ghost") == "orphan since 2026-11-23 12:00:00 UTC; stops at 2026-11-23 12:05:00 UTC"
    clock.now = NOW + timedelta(seconds=299)
    assert await r.run_once() == []
    clock.now = NOW + timedelta(seconds=300)
    assert await r.run_once() == ["i-ghost"]
    assert r.instances.actions == [("stop", "i-ghost")]
    assert r.note("i-ghost") == ""


async def test_terminate_only_when_configured(clock):
    r = reconciler([instance("i-ghost", "ghost")], {}, clock, action="terminate")
    await r.run_once()
    assert "is terminated at" in r.note("i-ghost")
    clock.now = NOW + timedelta(hours=1)
    await r.run_once()
    assert r.instances.actions == [("terminate", "i-ghost")]


async def test_owned_and_stopped_instances_are_left_alone(clock):
    servers = {"alice": {"": {"stopped": False}}, "bob": {"": {"stopped": True}}}
    instances = [
        instance("i-alice", "alice"),  # her running server's
        instance("i-bob", "bob", state="stopped"),  # a stopped server keeps its disk
        instance("i-lost", "carol", state="stopped"),  # a lost database's user: kept for reattaching
        {  # booted ahead of demand, for whoever starts next
            "InstanceId": "i-pool",
            "State": {"Name": "running"},
            "Tags": [{"Key": "ec2hub:hub", "Value": "unit-hub"}, {"Key": "ec2hub:pool", "Value": "medium"}],
        },
    ]
    r = reconciler(instances, servers, clock)
    await r.run_once()
    clock.now = NOW + timedelta(days=1)
    assert await r.run_once() == []
    assert r.instances.actions == []


async def test_an_orphan_that_finds_its_server_again_is_forgiven(clock):
    servers: dict = {"alice": {"": {"stopped": True}}}
    r = reconciler([instance("i-alice", "alice")], servers, clock)
    await r.run_once()
    assert r.note("i-alice")
    servers["alice"][""] = {"stopped": False}  # her start was just slow to register
    clock.now = NOW + timedelta(hours=1)
    assert await r.run_once() == []
    assert r.note("i-alice") == ""


def test_only_stop_or_terminate(clock):
    with pytest.raises(ValueError, match="stop or terminate"):
        reconciler([], {}, clock, action="reboot")


async def test_only_users_whose_instances_no_active_server_explains_are_looked_up(clock):
    servers = {f"user{n}": {"": {"stopped": False}} for n in range(50)}
    servers["bob"] = {"": {"stopped": True}}
    instances = [instance(f"i-{n}", f"user{n}") for n in range(50)]
    instances += [instance("i-bob", "bob"), instance("i-ghost", "ghost")]
    r = reconciler(instances, servers, clock)
    await r.run_once()
    assert r.hub_users.asked_about == ["bob", "ghost"]
    summary = r.summary()
    assert summary.billed == 52 and summary.checked_at == NOW
    assert [(o.instance_id, o.user, o.reason) for o in summary.orphans] == [
        ("i-bob", "bob", "the hub says this server is stopped, but the instance is running"),
        ("i-ghost", "ghost", "the hub has no user 'ghost'"),
    ]
