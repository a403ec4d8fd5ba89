"""The launcher: every EC2 instance the platform starts (user servers, the hot pool, and next Dask
schedulers and workers, jobs) is launched, found, re-profiled and halted here, in one way.

It knows nothing of JupyterHub: a caller says whose instance it is (an `Owner`, or none for the
hot pool), its purpose, size and user-data; the launcher ensures the user's IAM role and instance
profile, launches with the platform's image, network, IMDSv2, encrypted gp3 disk and owner tags
(capacity fallback over the subnets, one ClientToken for botocore's retries), and finds and acts
on instances only after comparing their owner tags exactly (spawner/owner.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from botocore.exceptions import ClientError
from prometheus_client import Counter

from spawner import aws
from spawner.identity import EnsuredRole, UserIdentity, UserNames
from spawner.owner import (
    TAG_HUB,
    TAG_OWNER_ID,
    TAG_PURPOSE,
    TAG_USER,
    Owner,
    check_owner,
    is_owned,
    literal_filter_value,
    tags_of,
)

log = logging.getLogger("ec2hub.launcher")

# In the metrics of the process that launched (the hub's /hub/metrics: servers and the hot pool; the
# jobs service's: jobs).
LAUNCHES = Counter(
    "ec2hub_launches",
    "Instances asked of EC2, by purpose and outcome (launched; no-capacity in any subnet; refused by EC2)",
    ["purpose", "outcome"],
)

# Purposes whose instance holds a home: a spot reclaim stops it (the disk stays) rather than ending it.
KEEPS_DISK = ("server", "pool")


class LaunchConfigError(ValueError):
    """The platform is not configured for launches (no subnets, no bucket...); the message says what."""


@dataclass(frozen=True)
class LaunchSettings:
    """What every launch of a hub shares: where, from which image, on which network, tagged how."""

    region: str
    endpoint_url: str
    image_id: str
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    hub_id: str
    bucket: str
    user_boundary_arn: str
    volume_size: int = 50
    # Groups that Dask schedulers and workers carry beside security_group_ids (their traffic).
    cluster_security_group_ids: tuple[str, ...] = ()
    extra_tags: Mapping[str, str] = field(default_factory=dict)
    profile_propagation_timeout: float = 60.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> LaunchSettings:
        """From the EC2Spawner options of the same names (`c.EC2Spawner.*`); missing optional ones
        take their defaults."""
        values = {f.name: options[f.name] for f in fields(cls) if f.name in options}
        values["subnet_ids"] = tuple(values.get("subnet_ids", ()))
        values["security_group_ids"] = tuple(values.get("security_group_ids", ()))
        values["cluster_security_group_ids"] = tuple(values.get("cluster_security_group_ids", ()))
        values["extra_tags"] = dict(values.get("extra_tags", {}))
        return cls(**values)


@dataclass(frozen=True)
class Launch:
    """One instance to start: for whom (None: the hub's own, e.g. the hot pool), how big, booting what."""

    purpose: str
    instance_type: str
    user_data: str
    name: str
    owner: Owner | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    spot: bool = False
    # Instance tags readable through the metadata service (the hot pool learns of its claim so).
    metadata_tags: bool = False


class Launcher:
    """Launches and manages the instances of one hub. Every AWS call runs off the event loop."""

    # Root device name per (endpoint, image): an image never changes its root device.
    _root_devices: dict[tuple[str, str], str | None] = {}

    def __init__(self, settings: LaunchSettings) -> None:
        self.settings = settings

    def client(self, service: str) -> Any:
        return aws.client(service, self.settings.region, self.settings.endpoint_url)

    async def call(self, operation: str, **kwargs: Any) -> dict:
        return await aws.call(self.client("ec2"), operation, **kwargs)

    # -- the user's identity -----------------------------------------------------------------

    def identity(self) -> UserIdentity:
        if not (self.settings.bucket and self.settings.user_boundary_arn):
            raise LaunchConfigError(
                "User instances need a data bucket and a permissions boundary; an administrator needs"
                " to set c.EC2Spawner.bucket and c.EC2Spawner.user_boundary_arn."
            )
        return UserIdentity(
            self.client("iam"),
            self.client("s3"),
            boundary_arn=self.settings.user_boundary_arn,
            bucket=self.settings.bucket,
            region=self.settings.region,
        )

    async def ensure_identity(self, username: str, groups: list[str]) -> EnsuredRole:
        """The user's role and instance profile, in sync with `groups` (IdentityConflict if not theirs)."""
        return await aws.run(self.identity().ensure, username, groups)

    async def owner_id(self, username: str) -> str | None:
        """The owner id of the user's account, without creating anything; None when there is none."""
        if not (self.settings.bucket and self.settings.user_boundary_arn):
            return None
        return await aws.run(self.identity().owner_id, username)

    async def mark_for_removal(self, username: str) -> None:
        """The account is being deleted: marked first, so that an interruption is finished later."""
        await aws.run(self.identity().mark_for_removal, username)

    async def remove_identity(self, username: str) -> str | None:
        """The account is deleted: its S3 data moves aside (returns where), then its role and
        profile go, and with the role the owner id: nothing left can match a new account's."""
        identity = self.identity()
        moved = await aws.run(identity.move_data_aside, username)
        await aws.run(identity.remove, username)
        return moved

    # -- launching ----------------------------------------------------------------------------

    def tags_for(self, request: Launch) -> dict[str, str]:
        if request.owner is not None and request.owner.purpose != request.purpose:
            raise ValueError(f"a {request.purpose} launch for an owner of {request.owner.purpose} instances")
        tags = {**self.settings.extra_tags, "Name": request.name, **request.tags}
        tags[TAG_HUB] = self.settings.hub_id
        tags[TAG_PURPOSE] = request.purpose
        if request.owner is not None:
            tags.update(request.owner.tags())
        return tags

    def security_groups_for(self, purpose: str) -> list[str]:
        groups = list(self.settings.security_group_ids)
        if purpose in ("dask-scheduler", "dask-worker"):
            groups += self.settings.cluster_security_group_ids
        return groups

    async def launch(self, request: Launch) -> dict:
        """RunInstances in the first subnet with capacity for the type; the instance as EC2 returned it."""
        try:
            instance = await self._launch(request)
        except ClientError as e:
            no_capacity = aws.error_code(e) == "InsufficientInstanceCapacity"
            LAUNCHES.labels(request.purpose, "no-capacity" if no_capacity else "refused").inc()
            raise
        LAUNCHES.labels(request.purpose, "launched").inc()
        return instance

    async def _launch(self, request: Launch) -> dict:
        if not self.settings.subnet_ids:
            raise LaunchConfigError(
                "No subnets are configured for user instances; an administrator needs to set"
                " c.EC2Spawner.subnet_ids."
            )
        tags = [{"Key": k, "Value": str(v)} for k, v in self.tags_for(request).items()]
        params: dict[str, Any] = {
            "ImageId": self.settings.image_id,
            "InstanceType": request.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "SecurityGroupIds": self.security_groups_for(request.purpose),
            "UserData": request.user_data,
            # A shutdown from inside keeps a home's disk; anything else ends with it.
            "InstanceInitiatedShutdownBehavior": "stop" if request.purpose in KEEPS_DISK else "terminate",
            "MetadataOptions": {
                "HttpTokens": "required",
                "HttpEndpoint": "enabled",
                "HttpPutResponseHopLimit": 1,
                **({"InstanceMetadataTags": "enabled"} if request.metadata_tags else {}),
            },
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": tags},
            ],
        }
        if request.owner is not None:
            params["IamInstanceProfile"] = {"Name": UserNames.of(request.owner.user).instance_profile}
        if request.spot:
            if request.purpose in KEEPS_DISK:
                # A persistent request that stops on interruption: the disk survives a reclaim.
                spot = {"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"}
            else:
                # Cluster workers and jobs keep nothing on their disk: a reclaim ends them.
                spot = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
            params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot}
        root_device = await self._root_device_name()
        if root_device:
            params["BlockDeviceMappings"] = [
                {
                    "DeviceName": root_device,
                    "Ebs": {
                        "VolumeSize": self.settings.volume_size,
                        "VolumeType": "gp3",
                        "Encrypted": True,
                        "DeleteOnTermination": True,
                    },
                }
            ]
        last_error: ClientError | None = None
        for subnet_id in self.settings.subnet_ids:
            try:
                response = await self._run_instances(SubnetId=subnet_id, **params)
            except ClientError as e:
                if aws.error_code(e) != "InsufficientInstanceCapacity":
                    raise
                log.warning("No %s capacity in %s: %s", request.instance_type, subnet_id, e)
                last_error = e
                continue
            return response["Instances"][0]
        assert last_error is not None
        raise last_error

    async def _root_device_name(self) -> str | None:
        key = (self.settings.endpoint_url, self.settings.image_id)
        if key not in self._root_devices:
            response = await self.call("describe_images", ImageIds=[self.settings.image_id])
            images = response.get("Images", [])
            self._root_devices[key] = images[0].get("RootDeviceName") if images else None
        return self._root_devices[key]

    async def _run_instances(self, **params: Any) -> dict:
        """RunInstances, retried while a new instance profile is still propagating through IAM."""
        # Same token on botocore's retries of this call: never two instances.
        params["ClientToken"] = str(uuid.uuid4())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.profile_propagation_timeout
        delay = 0.5
        while True:
            try:
                return await self.call("run_instances", **params)
            except ClientError as e:
                propagating = aws.error_code(e) == "InvalidParameterValue" and "profile" in str(e).lower()
                if not propagating or loop.time() + delay > deadline:
                    raise
                log.info("Instance profile not usable yet, retrying in %.1fs: %s", delay, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 8)

    # -- finding --------------------------------------------------------------------------------

    async def describe(self, instance_id: str) -> dict | None:
        try:
            response = await self.call("describe_instances", InstanceIds=[instance_id])
        except ClientError as e:
            if aws.is_not_found(e):
                return None
            raise
        return next((i for r in response["Reservations"] for i in r["Instances"]), None)

    async def owned(self, owner: Owner, *, any_server: bool = False) -> list[dict]:
        """The live instances of `owner` (of any server and purpose of the account, if `any_server`),
        newest first. The filter narrows by hub-made values only; ownership is compared exactly."""
        response = await self.call("describe_instances", Filters=owner.filters(aws.LIVE_STATES))
        expected = owner.tags()
        if any_server:
            expected = {k: expected[k] for k in (TAG_HUB, TAG_OWNER_ID, TAG_USER)}
        found = [i for r in response["Reservations"] for i in r["Instances"] if is_owned(i, expected)]
        return sorted(found, key=lambda i: i["LaunchTime"], reverse=True)

    async def adopt_unmarked(self, owner: Owner) -> list[str]:
        """Give `owner`'s instances launched before owner ids existed (no `ec2hub:owner-id` tag) the
        owner id and purpose, so that the next start finds the home on them; returns their ids.

        Call it only while the user's role predates this start: roles die with their accounts, so
        an existing role means the account these instances were launched for. A name that would be
        a filter pattern is not looked up at all.
        """
        try:
            user = literal_filter_value(owner.user)
        except ValueError:
            return []
        filters = [
            {"Name": f"tag:{TAG_HUB}", "Values": [owner.hub_id]},
            {"Name": f"tag:{TAG_USER}", "Values": [user]},
            {"Name": "instance-state-name", "Values": list(aws.LIVE_STATES)},
        ]
        response = await self.call("describe_instances", Filters=filters)
        unmarked = {k: v for k, v in owner.tags().items() if k not in (TAG_OWNER_ID, TAG_PURPOSE)}
        adopted = []
        for instance in (i for r in response["Reservations"] for i in r["Instances"]):
            tags = tags_of(instance)
            if TAG_PURPOSE in tags or tags.get(TAG_OWNER_ID, owner.owner_id) != owner.owner_id:
                continue  # marked already, or another account's
            if not is_owned(instance, unmarked):
                continue
            marks = {TAG_OWNER_ID: owner.owner_id, TAG_PURPOSE: owner.purpose}
            await self.retag(instance, unmarked, marks)
            adopted.append(instance["InstanceId"])
        return adopted

    # -- acting -------------------------------------------------------------------------------------

    async def retag(
        self,
        instance: dict,
        expected: Mapping[str, str],
        tags: Mapping[str, str],
        remove: tuple[str, ...] = (),
    ) -> None:
        """Write `tags` (and remove the keys `remove`) on the instance and its volumes, after checking
        it carries `expected`; the instance dict is updated to match."""
        check_owner(instance, expected)
        volumes = [m["Ebs"]["VolumeId"] for m in instance.get("BlockDeviceMappings", []) if "Ebs" in m]
        resources = [instance["InstanceId"], *volumes]
        await self.call(
            "create_tags", Resources=resources, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
        )
        if remove:
            await self.call("delete_tags", Resources=resources, Tags=[{"Key": k} for k in remove])
        kept = [t for t in instance.get("Tags", []) if t["Key"] not in tags and t["Key"] not in remove]
        instance["Tags"] = kept + [{"Key": k, "Value": v} for k, v in tags.items()]

    async def ensure_profile(self, instance: dict, owner: Owner) -> None:
        """The instance gets the owner's instance profile back if it lost (or never had) it."""
        check_owner(instance, owner.tags())
        profile_name = UserNames.of(owner.user).instance_profile
        if instance.get("IamInstanceProfile", {}).get("Arn", "").endswith(f"/{profile_name}"):
            return
        associations = await self.call(
            "describe_iam_instance_profile_associations",
            Filters=[{"Name": "instance-id", "Values": [instance["InstanceId"]]}],
        )
        current = [a for a in associations["IamInstanceProfileAssociations"] if a["State"] == "associated"]
        if current and current[0]["IamInstanceProfile"]["Arn"].endswith(f"/{profile_name}"):
            return
        if current:
            await self.call(
                "replace_iam_instance_profile_association",
                AssociationId=current[0]["AssociationId"],
                IamInstanceProfile={"Name": profile_name},
            )
        else:
            await self.call(
                "associate_iam_instance_profile",
                InstanceId=instance["InstanceId"],
                IamInstanceProfile={"Name": profile_name},
            )

    async def halt(self, instance_id: str, expected: Mapping[str, str], *, terminate: bool) -> bool:
        """Stop (or terminate) the instance if it carries exactly the `expected` tags; gone already is fine.

        Returns whether EC2 was asked (or found it stopping already): only then is there
        something to wait for.
        """
        current = await self.describe(instance_id)
        if current is None or current["State"]["Name"] in ("shutting-down", "terminated"):
            return False
        if not is_owned(current, expected):
            log.error("Not halting instance %s: its owner tags are not the expected ones", instance_id)
            return False
        try:
            await self.call(
                "terminate_instances" if terminate else "stop_instances", InstanceIds=[instance_id]
            )
        except ClientError as e:
            if aws.is_not_found(e) or aws.error_code(e) == "IncorrectInstanceState":
                log.info("Instance %s is already gone or stopping: %s", instance_id, e)
                return not aws.is_not_found(e)
            raise
        return True

    async def terminate(self, instance_ids: list[str]) -> None:
        """Terminate instances found by `owned` (or a pool's members) a moment ago."""
        if instance_ids:
            await self.call("terminate_instances", InstanceIds=instance_ids)
