"""What the Instances page shows about each instance: owner, size, uptime, cost so far, orphan or not."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from spawner.owner import (
    TAG_CLUSTER,
    TAG_HUB,
    TAG_JOB,
    TAG_POOL,
    TAG_PURPOSE,
    NotOwned,
    check_owner,
    owner_of,
    tags_of,
)
from spawner.profiles import Profile

# States in which EC2 bills the instance's compute (and in which it should be serving someone).
BILLED_STATES = ("pending", "running")

# The hub's view of its users: user name -> server name ("" for the default) -> the hub's server model.
HubServers = Mapping[str, Mapping[str, Mapping]]


# The page and the reconciler act on any instance of this hub (spawner/owner.py's one check).
NotThisHub = NotOwned


def check_belongs_to_hub(instance: Mapping, hub_id: str) -> None:
    """Raise NotThisHub unless the instance carries this hub's `ec2hub:hub` tag."""
    check_owner(instance, {TAG_HUB: hub_id})


def size_for(instance_type: str, profiles: Iterable[Profile]) -> Profile | None:
    """The first size whose instance type this is, or None for a type no size offers."""
    return next((p for p in profiles if p.instance_type == instance_type), None)


def hours_running(instance: Mapping, now: datetime) -> float:
    """Hours since EC2 last started the instance (LaunchTime resets at each start), 0 when not billed."""
    if instance["State"]["Name"] not in BILLED_STATES:
        return 0.0
    return max((now - instance["LaunchTime"]).total_seconds(), 0.0) / 3600


def hourly_price(instance: Mapping, profile: Profile | None) -> float | None:
    """Estimated USD per hour: the size's on-demand price, or its typical spot price for spot instances."""
    if profile is None:
        return None
    if instance.get("InstanceLifecycle") == "spot" and profile.spot:
        return profile.spot_price_per_hour
    return profile.price_per_hour


def cost_so_far(instance: Mapping, profile: Profile | None, now: datetime) -> float | None:
    """Estimated USD of compute since the current start; None when no size tells the price."""
    price = hourly_price(instance, profile)
    if price is None:
        return None
    return price * hours_running(instance, now)


def format_cost(cost: float | None) -> str:
    return "$?" if cost is None else f"${cost:.4f}"


def format_uptime(instance: Mapping, now: datetime) -> str:
    """How long the instance has been up, e.g. "2d 03h", "1h 05m", "4m 09s"; "-" when it is not up."""
    if instance["State"]["Name"] not in BILLED_STATES:
        return "-"
    seconds = int(hours_running(instance, now) * 3600)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds:02d}s"


def orphan_reason(user: str, server: str, state: str, hub_servers: HubServers) -> str:
    """Why no hub server owns this instance, or "" when one does.

    A stopped instance of an existing but stopped server is the normal "stop keeps the disk" case;
    a billed instance of a server the hub thinks is stopped is running for no one.
    """
    if user not in hub_servers:
        return f"the hub has no user {user!r}"
    servers = hub_servers[user]
    if server not in servers:
        label = "default server" if server == "" else f"server {server!r}"
        return f"{user} has no {label}"
    if state in BILLED_STATES and servers[server].get("stopped", False):
        return f"the hub says this server is stopped, but the instance is {state}"
    return ""


@dataclass(frozen=True)
class InstanceRow:
    """One line of the Instances page."""

    instance_id: str
    user: str
    server: str
    size: str
    instance_type: str
    state: str
    private_ip: str
    launched: str
    uptime: str
    cost: str
    orphan_reason: str
    purpose: str = "server"
    cluster: str = ""
    job: str = ""

    @property
    def orphan(self) -> bool:
        return bool(self.orphan_reason)

    @property
    def server_label(self) -> str:
        if self.cluster:
            role = "scheduler" if self.purpose == "dask-scheduler" else "worker"
            return f"Dask {role}, cluster {self.cluster[:8]}"
        if self.purpose == "job":
            return f"Notebook job {self.job[:8]}"
        return self.server or "default"


def judged_by_servers(instance: Mapping) -> bool:
    """Whether the hub's servers explain the instance (a user's server, launched before purposes
    existed or since). Pool instances are the hub's own; cluster instances are the Dask gateway's,
    which terminates those of no live cluster itself."""
    tags = tags_of(instance)
    return TAG_POOL not in tags and tags.get(TAG_PURPOSE, "server") == "server"


def instance_row(
    instance: Mapping,
    hub_servers: HubServers,
    profiles: Iterable[Profile],
    now: datetime,
    orphan_note: str = "",
) -> InstanceRow:
    tags = tags_of(instance)
    user, server = owner_of(instance)
    state = instance["State"]["Name"]
    profile = size_for(instance.get("InstanceType", ""), profiles)
    # A hot-pool instance waits for a start to take it over: the hub's own, no orphan.
    pooled = TAG_POOL in tags
    judged = judged_by_servers(instance)
    reason = with_note(orphan_reason(user, server, state, hub_servers), orphan_note) if judged else ""
    return InstanceRow(
        instance_id=instance["InstanceId"],
        user="(hot pool)" if pooled else user,
        server=server,
        size=profile.display_name if profile else "unknown",
        instance_type=instance.get("InstanceType", ""),
        state=state,
        private_ip=instance.get("PrivateIpAddress", ""),
        launched=instance["LaunchTime"].strftime("%Y-%m-%d %H:%M UTC"),
        uptime=format_uptime(instance, now),
        cost=format_cost(cost_so_far(instance, profile, now)),
        orphan_reason=reason,
        purpose=tags.get(TAG_PURPOSE, "server"),
        cluster=tags.get(TAG_CLUSTER, ""),
        job=tags.get(TAG_JOB, ""),
    )


def with_note(reason: str, note: str) -> str:
    """The orphan reason, followed by what the reconciler will do about it (only for orphans)."""
    return f"{reason}; {note}" if reason and note else reason


def instance_rows(
    instances: Iterable[Mapping],
    hub_servers: HubServers,
    profiles: Iterable[Profile],
    now: datetime,
    orphan_notes: Mapping[str, str] | None = None,
) -> list[InstanceRow]:
    """The page's rows: orphans first (they need attention), then by user, server and launch time.

    `orphan_notes` (instance id -> text) says what the reconciler will do about an orphan and when.
    """
    profiles = list(profiles)
    notes = orphan_notes or {}
    rows = [instance_row(i, hub_servers, profiles, now, notes.get(i["InstanceId"], "")) for i in instances]
    return sorted(rows, key=lambda r: (not r.orphan, r.user, r.server, r.launched, r.instance_id))


def hub_servers_from_users(users: Iterable[Mapping]) -> dict[str, dict[str, Mapping]]:
    """User models of the hub REST API (with stopped servers) to user -> server name -> server model."""
    return {u["name"]: dict(u.get("servers") or {}) for u in users}


async def servers_for(hub_users: Any, instances: Iterable[Mapping], active_max_age: float = 0) -> HubServers:
    """What the hub knows about the owners of `instances`, in as few questions as the hub allows.

    The hub's active servers (one paged list, possibly `active_max_age` seconds old) explain every
    billed instance whose server is running; only the owners of the other instances (stopped ones,
    orphans) are asked about one by one, with their stopped servers. A large hub answers a page of
    running instances with no per-user question at all.
    """
    instances = list(instances)
    active = await hub_users.active_servers(max_age=active_max_age)
    unexplained = set()
    for instance in instances:
        user, server = owner_of(instance)
        if not judged_by_servers(instance) or not user:
            continue
        if orphan_reason(user, server, instance["State"]["Name"], active):
            unexplained.add(user)
    if not unexplained:
        return active
    return {**active, **(await hub_users.servers_of(unexplained))}
