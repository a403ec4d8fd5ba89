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
The pool refills in the background, in the hub's event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from spawner.owner import TAG_CLAIM, TAG_HUB, TAG_OWNER_ID, TAG_POOL, TAG_SERVER, TAG_USER, Owner, check_owner
from spawner.userdata import render_user_data

if TYPE_CHECKING:
    from spawner.spawner import EC2Spawner

# The tags a claim writes: the instance becomes the owner's like one launched for them.
CLAIM_TAGS = ("Name", TAG_USER, TAG_SERVER, TAG_OWNER_ID)
# Seconds between two checks that the pool is full, when no claim asks for a refill sooner.
REFILL_INTERVAL = 30.0
# After a failed launch, the next try waits this long (AWS said no: capacity, limits, throttling).
RETRY_AFTER_FAILURE = 60.0

log = logging.getLogger("JupyterHub")


class HotPool:
    """Keeps `c.EC2Spawner.hot_pool` (size slug -> count) instances booted and unclaimed.

    One per hub (hub_id): the spawners of a hub share it. The spawner that creates it lends its
    configuration (image, network, tags) for the pool's launches.
    """

    _pools: dict[str, HotPool] = {}

    def __init__(self, template: EC2Spawner) -> None:
        self.template = template
        self.hub_id = template.hub_id
        self.sizes = {p.slug: p for p in template.profile_list()}
        wanted = {slug: int(n) for slug, n in template.hot_pool.items() if int(n) > 0}
        unknown = sorted(set(wanted) - set(self.sizes))
        if unknown:
            log.error("c.EC2Spawner.hot_pool names sizes that do not exist, left out: %s", ", ".join(unknown))
        self.wanted = {slug: n for slug, n in wanted.items() if slug in self.sizes}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    @classmethod
    def of(cls, spawner: EC2Spawner) -> HotPool | None:
        """The hub's pool (started on first use), or None when no pool is configured."""
        if not any(int(n) > 0 for n in spawner.hot_pool.values()):
            return None
        pool = cls._pools.get(spawner.hub_id)
        if pool is None:
            pool = cls._pools[spawner.hub_id] = cls(spawner)
        pool.start()
        return pool

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._keep_filled())

    # -- claiming ------------------------------------------------------------------------------

    async def claim(self, spawner: EC2Spawner, owner: Owner) -> dict | None:
        """A booted pool instance of the spawner's size, now tagged as `owner`'s; None if none."""
        if spawner.use_spot or spawner.size not in self.wanted:
            return None
        async with self._lock:
            waiting = await self._members(spawner.size, states=["running"])
            if not waiting:
                self._wake.set()
                return None
            instance = min(waiting, key=lambda i: i["LaunchTime"])
            instance_id = instance["InstanceId"]
            check_owner(instance, {TAG_HUB: self.hub_id, TAG_POOL: spawner.size})
            volumes = [m["Ebs"]["VolumeId"] for m in instance.get("BlockDeviceMappings", []) if "Ebs" in m]
            # The hub may change only these tags, and only on its own instances (hub policy).
            tags = [t for t in spawner.owner_tags(owner) if t["Key"] in CLAIM_TAGS]
            await spawner._call("create_tags", Resources=[instance_id, *volumes], Tags=tags)
            await spawner._call("delete_tags", Resources=[instance_id, *volumes], Tags=[{"Key": TAG_POOL}])
            written = {t["Key"]: t["Value"] for t in tags}
            kept = [t for t in instance.get("Tags", []) if t["Key"] != TAG_POOL and t["Key"] not in written]
            instance["Tags"] = kept + tags
        self._wake.set()
        log.info("%s claimed pool instance %s (%s)", spawner._log_name, instance_id, spawner.size)
        return instance

    async def hand_over(self, spawner: EC2Spawner, instance: dict, owner: Owner) -> None:
        """Give a claimed instance the user's role, then their token and settings, then the go."""
        await spawner._ensure_profile(instance, spawner.names, owner)
        settings = {"token": spawner.api_token, "environment": spawner.instance_environment()}
        await spawner._call_ssm(
            "put_parameter",
            Name=spawner.token_parameter,
            Value=json.dumps(settings),
            Type="SecureString",
            Overwrite=True,
            Description="API token and settings of an ec2hub user server (removed when it stops)",
        )
        await spawner._call(
            "create_tags",
            Resources=[instance["InstanceId"]],
            Tags=[{"Key": TAG_CLAIM, "Value": spawner.token_parameter}],
        )

    # -- filling -------------------------------------------------------------------------------

    async def _members(self, slug: str, states: list[str]) -> list[dict]:
        filters = [
            {"Name": f"tag:{TAG_HUB}", "Values": [self.hub_id]},
            {"Name": f"tag:{TAG_POOL}", "Values": [slug]},
            {"Name": "instance-state-name", "Values": states},
        ]
        response = await self.template._call("describe_instances", Filters=filters)
        return [i for r in response["Reservations"] for i in r["Instances"]]

    async def _launch(self, slug: str) -> None:
        profile = self.sizes[slug]
        template = self.template
        tags = {**template.extra_tags, "Name": f"ec2hub-pool-{slug}", TAG_HUB: self.hub_id, TAG_POOL: slug}
        environment = {"EC2HUB_POOL": slug, "EC2HUB_SERVER_PORT": str(template.server_port)}
        params = await template.instance_params(
            render_user_data(environment),
            [{"Key": k, "Value": v} for k, v in tags.items()],
            profile.instance_type,
        )
        # The bootstrap learns of its claim from its tags, read through the metadata service.
        params["MetadataOptions"]["InstanceMetadataTags"] = "enabled"
        instance = await template.run_in_first_subnet_with_capacity(params)
        log.info("Hot pool: launched %s for size %s", instance["InstanceId"], slug)

    async def fill_once(self) -> None:
        """Launch what each size is short of (pending and running pool instances count).

        A pool instance found stopped (stopped from outside, or by a restart of the local cloud)
        is no longer waiting for a claim: it held nothing, so it is terminated and replaced.
        """
        for slug, wanted in self.wanted.items():
            stopped = [i["InstanceId"] for i in await self._members(slug, states=["stopping", "stopped"])]
            if stopped:
                await self.template._call("terminate_instances", InstanceIds=stopped)
            have = len(await self._members(slug, states=["pending", "running"]))
            for _ in range(wanted - have):
                await self._launch(slug)

    async def _keep_filled(self) -> None:
        while True:
            wait = REFILL_INTERVAL
            try:
                async with self._lock:
                    await self.fill_once()
            except asyncio.CancelledError:
                raise
            except (ClientError, BotoCoreError) as e:
                log.warning("Hot pool: could not refill (next try in %.0fs): %s", RETRY_AFTER_FAILURE, e)
                wait = RETRY_AFTER_FAILURE
            except Exception:
                log.exception("Hot pool: refill failed (next try in %.0fs)", RETRY_AFTER_FAILURE)
                wait = RETRY_AFTER_FAILURE
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass
