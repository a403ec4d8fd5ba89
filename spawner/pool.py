"""The hot pool: instances booted ahead of demand, per size, that a start claims instead of launching.

A pool instance runs the image's bootstrap in pool mode: it boots with no instance profile, no
user, no data and no token, loads the Jupyter server's code into memory, and waits. A start that
finds no instance of the user's own (their home lives on it) and asked for an on-demand size with
pool instances claims one:

1. under the pool's lock, the instance is re-tagged as the user's (it leaves the pool: no second
   start can pick it);
2. the user's instance profile is associated (the instance now has the user's role, and only now);
3. the server's token and settings go to the user's SSM parameter (readable by that role only);
4. the tag `ec2hub:claim` names the parameter. The bootstrap sees the tag through the instance
   metadata service (instance tags in IMDS are on for pool instances), reads the parameter with
   the role's credentials, mounts the user's S3 prefix and starts the server in the process that
   has the code loaded already.

From then on the instance is the user's like any other (stop keeps it, a later start resumes it).
Claims happen in the hub, in the spawner's start; refills happen in the pool keeper, a service the
hub starts (hub/pool.py), which checks every few seconds that each size has its instances.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import ClassVar

from spawner.launcher import Launch, Launcher
from spawner.owner import TAG_CLAIM, TAG_HUB, TAG_POOL, TAG_PURPOSE, Owner
from spawner.profiles import Profile
from spawner.userdata import render_user_data

# The tags a claim writes (besides removing the pool's): the instance becomes the owner's.
CLAIM_TAGS = ("Name", "ec2hub:user", "ec2hub:server", "ec2hub:owner-id", TAG_PURPOSE)

log = logging.getLogger("ec2hub.pool")


class HotPool:
    """`wanted` (size slug -> count) instances of a hub, booted and unclaimed.

    Claims of one hub's pool are made one at a time (a lock per hub, in the hub's process).
    """

    _locks: ClassVar[dict[tuple[str, asyncio.AbstractEventLoop], asyncio.Lock]] = {}

    def __init__(
        self, launcher: Launcher, profiles: list[Profile], wanted: Mapping[str, int], server_port: int
    ):
        self.launcher = launcher
        self.hub_id = launcher.settings.hub_id
        self.sizes = {p.slug: p for p in profiles}
        unknown = sorted(set(wanted) - set(self.sizes))
        if unknown:
            raise ValueError(f"the hot pool names sizes that do not exist: {', '.join(unknown)}")
        self.wanted = {slug: int(n) for slug, n in wanted.items() if int(n) > 0}
        self.server_port = server_port

    def _lock(self) -> asyncio.Lock:
        return self._locks.setdefault((self.hub_id, asyncio.get_running_loop()), asyncio.Lock())

    # -- claiming (in the hub) ---------------------------------------------------------------

    async def claim(self, size: str, owner: Owner, name: str) -> dict | None:
        """A booted pool instance of `size`, now tagged as `owner`'s (Name `name`); None if none."""
        if size not in self.wanted:
            return None
        async with self._lock():
            waiting = await self._members(size, states=["running"])
            if not waiting:
                return None
            instance = min(waiting, key=lambda i: i["LaunchTime"])
            tags = {**owner.tags(), "Name": name}
            await self.launcher.retag(
                instance,
                {TAG_HUB: self.hub_id, TAG_POOL: size},
                {k: v for k, v in tags.items() if k in CLAIM_TAGS},
                remove=(TAG_POOL,),
            )
        log.info("%s claimed pool instance %s (%s)", owner.user, instance["InstanceId"], size)
        return instance

    async def signal(self, instance: dict, owner: Owner, parameter: str) -> None:
        """Tell the claimed instance where its settings are (after they are written there)."""
        await self.launcher.retag(instance, owner.tags(), {TAG_CLAIM: parameter})

    # -- filling (in the pool keeper) -----------------------------------------------------------

    async def _members(self, slug: str, states: list[str]) -> list[dict]:
        filters = [
            {"Name": f"tag:{TAG_HUB}", "Values": [self.hub_id]},
            {"Name": f"tag:{TAG_POOL}", "Values": [slug]},
            {"Name": "instance-state-name", "Values": states},
        ]
        response = await self.launcher.call("describe_instances", Filters=filters)
        return [i for r in response["Reservations"] for i in r["Instances"]]

    async def _launch(self, slug: str) -> None:
        environment = {"EC2HUB_POOL": slug, "EC2HUB_SERVER_PORT": str(self.server_port)}
        request = Launch(
            purpose="pool",
            instance_type=self.sizes[slug].instance_type,
            user_data=render_user_data(environment),
            name=f"ec2hub-pool-{slug}",
            tags={TAG_POOL: slug},
            # The bootstrap learns of its claim from its tags, read through the metadata service.
            metadata_tags=True,
        )
        instance = await self.launcher.launch(request)
        log.info("Hot pool: launched %s for size %s", instance["InstanceId"], slug)

    async def fill_once(self) -> None:
        """Launch what each size is short of (pending and running pool instances count).

        A pool instance found stopped (stopped from outside, or by a restart of the local cloud)
        is no longer waiting for a claim: it held nothing, so it is terminated and replaced.
        """
        for slug, wanted in self.wanted.items():
            stopped = [i["InstanceId"] for i in await self._members(slug, states=["stopping", "stopped"])]
            await self.launcher.terminate(stopped)
            have = len(await self._members(slug, states=["pending", "running"]))
            for _ in range(wanted - have):
                await self._launch(slug)
