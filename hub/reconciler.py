"""The orphan reconciler: an instance billed for no hub server is flagged, then stopped after a grace period.

It runs inside the Instances service, which already holds what it needs and nothing more: the
hub's AWS credentials (to list and stop the hub's instances) and a hub token that reads users and
their servers. The page shows its flags ("orphan since ..., stops at ...") from the same process.

Only billed orphans (pending or running) are acted on, and never the hot pool's instances
(spawner/pool.py), which belong to the hub until a start takes one over, nor Dask cluster
instances, which the gateway's backend (hub/gateway/) ends when their cluster is gone. A stopped instance no
server owns costs only its disk and may hold someone's home, for instance after the hub's database
was lost: it is flagged on the page, and the user's next start reattaches it by its tags.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hub.instances.inventory import BILLED_STATES, judged_by_servers, orphan_reason, servers_for
from spawner.owner import owner_of

log = logging.getLogger("ec2hub.reconciler")


@dataclass(frozen=True)
class Orphan:
    """A billed instance no hub server owns, since when, and when the reconciler acts on it."""

    instance_id: str
    user: str
    reason: str
    since: datetime
    due: datetime


@dataclass(frozen=True)
class CheckSummary:
    """What the last full check saw, for the top of the Instances page."""

    checked_at: datetime | None
    billed: int
    orphans: tuple[Orphan, ...]


class OrphanReconciler:
    """Compares the hub's tagged instances with its servers, every `every` seconds."""

    def __init__(
        self,
        instances: Any,
        hub_users: Any,
        *,
        grace: float,
        action: str = "stop",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if action not in ("stop", "terminate"):
            raise ValueError(f"action must be stop or terminate, not {action!r}")
        self.instances = instances
        self.hub_users = hub_users
        self.grace = timedelta(seconds=grace)
        self.action = action
        self.clock = clock
        self.orphans: dict[str, Orphan] = {}
        self.acted: list[tuple[str, str]] = []
        self.checked_at: datetime | None = None
        self.billed = 0

    def note(self, instance_id: str) -> str:
        """What the page says about an orphan's fate, or "" when the reconciler is not acting on it."""
        orphan = self.orphans.get(instance_id)
        if orphan is None:
            return ""
        verb = "stops" if self.action == "stop" else "is terminated"
        return (
            f"orphan since {orphan.since:%Y-%m-%d %H:%M:%S} UTC; {verb} at {orphan.due:%Y-%m-%d %H:%M:%S} UTC"
        )

    def notes(self) -> dict[str, str]:
        return {instance_id: self.note(instance_id) for instance_id in self.orphans}

    def summary(self) -> CheckSummary:
        orphans = sorted(self.orphans.values(), key=lambda o: (o.since, o.instance_id))
        return CheckSummary(self.checked_at, self.billed, tuple(orphans))

    async def _billed_orphans(self) -> dict[str, tuple[str, str]]:
        """Billed instances no hub server owns: instance id -> (user, reason), asked afresh."""
        instances = [i for i in await self.instances.list(BILLED_STATES) if judged_by_servers(i)]
        self.billed = len(instances)
        hub_servers = await servers_for(self.hub_users, instances)
        found = {}
        for instance in instances:
            reason = self._reason(instance, hub_servers)
            if reason:
                found[instance["InstanceId"]] = (owner_of(instance)[0], reason)
        return found

    async def run_once(self) -> list[str]:
        """One comparison; returns the ids of the instances acted on."""
        billed_orphans = await self._billed_orphans()
        now = self.clock()
        self.checked_at = now
        # An instance that found its server again (or stopped) is no orphan any more.
        self.orphans = {k: v for k, v in self.orphans.items() if k in billed_orphans}
        acted = []
        for instance_id, (user, reason) in billed_orphans.items():
            orphan = self.orphans.get(instance_id)
            if orphan is None:
                orphan = Orphan(instance_id, user, reason, now, now + self.grace)
                self.orphans[instance_id] = orphan
                log.warning(
                    "Instance %s is an orphan (%s); %s at %s", instance_id, reason, self.action, orphan.due
                )
            if now >= orphan.due:
                try:
                    await self.instances.act(self.action, instance_id)
                except Exception:
                    log.exception("Could not %s orphan instance %s", self.action, instance_id)
                    continue
                log.warning("Orphan instance %s: asked EC2 to %s it (%s)", instance_id, self.action, reason)
                self.orphans.pop(instance_id, None)
                self.acted.append((instance_id, self.action))
                acted.append(instance_id)
        return acted

    @staticmethod
    def _reason(instance: Mapping, hub_servers: Mapping) -> str:
        user, server = owner_of(instance)
        return orphan_reason(user, server, instance["State"]["Name"], hub_servers)

    async def run_forever(self, every: float) -> None:
        """Compare every `every` seconds until cancelled; a failed round is logged and the next one runs."""
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Orphan check failed; trying again in %.0fs", every)
            await asyncio.sleep(every)
