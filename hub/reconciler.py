"""The orphan reconciler: an instance billed for no hub server is flagged, then stopped after a grace period.

It runs inside the Instances service, which already holds what it needs and nothing more: the
hub's AWS credentials (to list and stop the hub's instances) and a hub token that reads users and
their servers. The page shows its flags ("orphan since ..., stops at ...") from the same process.

Only billed orphans (pending or running) are acted on, and never the hot pool's instances
(spawner/pool.py), which belong to the hub until a start takes one over. A stopped instance no
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

from hub.instances.inventory import BILLED_STATES, orphan_reason, server_name, tags_of
from spawner.pool import TAG_POOL
from spawner.spawner import DEFAULT_SERVER_TAG, TAG_SERVER, TAG_USER

log = logging.getLogger("ec2hub.reconciler")


@dataclass(frozen=True)
class Orphan:
    """A billed instance no hub server owns, since when, and when the reconciler acts on it."""

    instance_id: str
    reason: str
    since: datetime
    due: datetime


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

    async def run_once(self) -> list[str]:
        """One comparison; returns the ids of the instances acted on."""
        instances, hub_servers = await asyncio.gather(self.instances.list(), self.hub_users.servers())
        now = self.clock()
        billed_orphans: dict[str, str] = {}
        for instance in instances:
            state = instance["State"]["Name"]
            if state not in BILLED_STATES or TAG_POOL in tags_of(instance):
                continue  # stopped ones cost only a disk; the hot pool's instances are the hub's own
            reason = self._reason(instance, hub_servers)
            if reason:
                billed_orphans[instance["InstanceId"]] = reason
        # An instance that found its server again (or stopped) is no orphan any more.
        self.orphans = {k: v for k, v in self.orphans.items() if k in billed_orphans}
        acted = []
        for instance_id, reason in billed_orphans.items():
            orphan = self.orphans.get(instance_id)
            if orphan is None:
                orphan = Orphan(instance_id, reason, now, now + self.grace)
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
        tags = tags_of(instance)
        return orphan_reason(
            tags.get(TAG_USER, ""),
            server_name(tags.get(TAG_SERVER, DEFAULT_SERVER_TAG)),
            instance["State"]["Name"],
            hub_servers,
        )

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
