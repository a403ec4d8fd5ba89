"""EC2Spawner: the lifecycle of one user server as one EC2 instance (launch, resume, poll, stop)."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import uuid
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from jupyterhub.spawner import Spawner, SpawnException
from jupyterhub.utils import AnyTimeoutError, exponential_backoff
from traitlets import Unicode

from hub.identity import UserIdentity, UserNames
from spawner import aws
from spawner.config import EC2SpawnerConfig
from spawner.userdata import render_user_data

# Tag values that identify a server's instance. A server name never contains "/", so "/"
# stands for the default (unnamed) server.
TAG_HUB = "ec2hub:hub"
TAG_USER = "ec2hub:user"
TAG_SERVER = "ec2hub:server"
DEFAULT_SERVER_TAG = "/"

STATE_VERSION = 1


class EC2Spawner(EC2SpawnerConfig, Spawner):
    """Runs each user server on its own EC2 instance, launched from the ec2hub image.

    A stopped server keeps its instance (and the disk with the user's home) unless
    `stop_behaviour` is "terminate"; the next start boots the same instance again.
    """

    instance_id = Unicode("", help="ID of this server's instance, when known.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start_task: asyncio.Future | None = None
        self._events: list[dict] = []
        self._events_changed = asyncio.Event()

    # -- state --------------------------------------------------------------------------

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        # Version 1 is the first; later versions translate older states here.
        self.instance_id = state.get("instance_id", "")

    def get_state(self) -> dict:
        state = super().get_state()
        if self.instance_id:
            state["version"] = STATE_VERSION
            state["instance_id"] = self.instance_id
        return state

    def clear_state(self) -> None:
        super().clear_state()
        self.instance_id = ""

    # -- AWS helpers ------------------------------------------------------------------------

    def _client(self, service: str) -> Any:
        return aws.client(service, self.region, self.endpoint_url)

    async def _call(self, operation: str, **kwargs: Any) -> dict:
        return await aws.call(self._client("ec2"), operation, **kwargs)

    async def _call_ssm(self, operation: str, **kwargs: Any) -> dict:
        return await aws.call(self._client("ssm"), operation, **kwargs)

    @property
    def names(self) -> UserNames:
        return UserNames.of(self.user.name)

    def _identity(self) -> UserIdentity:
        if not (self.bucket and self.user_boundary_arn):
            raise SpawnException(
                "User servers need a data bucket and a permissions boundary; an administrator needs"
                " to set c.EC2Spawner.bucket and c.EC2Spawner.user_boundary_arn.",
                reason="config",
            )
        return UserIdentity(
            self._client("iam"), boundary_arn=self.user_boundary_arn, bucket=self.bucket, region=self.region
        )

    async def _prepare_identity(self) -> UserNames:
        """The user's role and profile, in sync with their hub groups as of this start."""
        return await aws.run(self._identity().ensure, self.user.name, self.group_names())

    @property
    def token_parameter(self) -> str:
        return self.names.token_parameter(self.name)

    async def _hand_over_token(self) -> None:
        """The server's API token goes to SSM, readable by this user's role only: never in user-data."""
        await self._call_ssm(
            "put_parameter",
            Name=self.token_parameter,
            Value=self.api_token,
            Type="SecureString",
            Overwrite=True,
            Description="API token of an ec2hub user server (removed when the server stops)",
        )

    async def _withdraw_token(self) -> None:
        try:
            await self._call_ssm("delete_parameter", Name=self.token_parameter)
        except ClientError as e:
            if aws.error_code(e) != "ParameterNotFound":
                raise

    def identity_tags(self) -> dict[str, str]:
        """The tags that say which hub, user and server an instance belongs to."""
        return {
            TAG_HUB: self.hub_id,
            TAG_USER: self.user.name,
            TAG_SERVER: self.name or DEFAULT_SERVER_TAG,
        }

    def _tags(self) -> list[dict[str, str]]:
        name = f"ec2hub-{self.user.name}" + (f"-{self.name}" if self.name else "")
        tags = {**self.extra_tags, "Name": name, **self.identity_tags()}
        return [{"Key": k, "Value": str(v)} for k, v in tags.items()]

    async def _describe(self, instance_id: str) -> dict | None:
        try:
            response = await self._call("describe_instances", InstanceIds=[instance_id])
        except ClientError as e:
            if aws.is_not_found(e):
                return None
            raise
        for reservation in response["Reservations"]:
            for instance in reservation["Instances"]:
                return instance
        return None

    async def _find_by_tags(self) -> dict | None:
        """The live instance tagged for this server, e.g. one an interrupted start launched."""
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in self.identity_tags().items()]
        filters.append({"Name": "instance-state-name", "Values": list(aws.LIVE_STATES)})
        response = await self._call("describe_instances", Filters=filters)
        found = [i for r in response["Reservations"] for i in r["Instances"]]
        if len(found) > 1:
            self.log.warning("%d instances are tagged for %s: using the newest", len(found), self._log_name)
        found.sort(key=lambda i: i["LaunchTime"], reverse=True)
        return found[0] if found else None

    async def _find_instance(self) -> dict | None:
        if self.instance_id:
            instance = await self._describe(self.instance_id)
            if instance and instance["State"]["Name"] in aws.LIVE_STATES:
                return instance
        return await self._find_by_tags()

    async def _wait_for_state(self, instance_id: str, states: set[str], limit: float) -> dict:
        """Wait, at most `limit` seconds, until EC2 reports the instance in one of `states`."""
        seen: dict = {}

        async def reached() -> bool:
            instance = await self._describe(instance_id)
            if instance is None:
                raise RuntimeError(f"instance {instance_id} disappeared")
            seen.update(instance)
            state = instance["State"]["Name"]
            if state == "terminated" and "terminated" not in states:
                raise RuntimeError(f"instance {instance_id} was terminated")
            return state in states

        await exponential_backoff(
            reached,
            f"instance {instance_id} did not reach {'/'.join(sorted(states))} in {limit:.0f}s",
            start_wait=0.1,
            max_wait=self.aws_poll_max_interval,
            timeout=limit,
        )
        return seen

    # -- what the instance boots with --------------------------------------------------------

    def instance_environment(self) -> dict[str, str]:
        """The environment of the user server: JupyterHub's variables and the configured ones.

        The hub's own environment (PATH, credentials, ...) never reaches the instance.
        """
        env = self.get_env()
        keep = set(self.environment)
        chosen = {k: v for k, v in env.items() if k.startswith("JUPYTERHUB_") or k in keep}
        # The token travels through SSM: user-data is readable by anyone who may describe instances.
        chosen.pop("JUPYTERHUB_API_TOKEN", None)
        chosen["EC2HUB_TOKEN_PARAMETER"] = self.token_parameter
        chosen["EC2HUB_BUCKET"] = self.bucket
        chosen["EC2HUB_USER_PREFIX"] = self.names.prefix
        chosen["EC2HUB_SERVER_PORT"] = str(self.server_port)
        chosen["EC2HUB_SINGLEUSER_COMMAND"] = shlex.join(self.cmd + self.get_args())
        return chosen

    async def _root_device_name(self) -> str | None:
        response = await self._call("describe_images", ImageIds=[self.image_id])
        images = response.get("Images", [])
        return images[0].get("RootDeviceName") if images else None

    async def _launch(self, user_data: str, names: UserNames) -> dict:
        """RunInstances in the first subnet with capacity for the instance type."""
        if not self.subnet_ids:
            raise SpawnException(
                "No subnets are configured for user servers; an administrator needs to set"
                " c.EC2Spawner.subnet_ids.",
                reason="config",
            )
        params: dict[str, Any] = {
            "ImageId": self.image_id,
            "InstanceType": self.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "SecurityGroupIds": list(self.security_group_ids),
            "UserData": user_data,
            "InstanceInitiatedShutdownBehavior": "stop",
            "IamInstanceProfile": {"Name": names.instance_profile},
            **self._market_options(),
            "MetadataOptions": {
                "HttpTokens": "required",
                "HttpEndpoint": "enabled",
                "HttpPutResponseHopLimit": 1,
            },
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": self._tags()},
                {"ResourceType": "volume", "Tags": self._tags()},
            ],
        }
        root_device = await self._root_device_name()
        if root_device:
            params["BlockDeviceMappings"] = [
                {
                    "DeviceName": root_device,
                    "Ebs": {
                        "VolumeSize": self.volume_size,
                        "VolumeType": "gp3",
                        "Encrypted": True,
                        "DeleteOnTermination": True,
                    },
                }
            ]
        last_error: ClientError | None = None
        for subnet_id in self.subnet_ids:
            try:
                response = await self._run_instances(SubnetId=subnet_id, **params)
            except ClientError as e:
                if aws.error_code(e) != "InsufficientInstanceCapacity":
                    raise
                self.log.warning("No %s capacity in %s: %s", self.instance_type, subnet_id, e)
                last_error = e
                continue
            return response["Instances"][0]
        assert last_error is not None
        raise last_error

    def _market_options(self) -> dict[str, Any]:
        if not self.use_spot:
            return {}
        # A persistent request that stops on interruption: the home survives a reclaim.
        spot = {"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"}
        return {"InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": spot}}

    async def _run_instances(self, **params: Any) -> dict:
        """RunInstances, retried while a new instance profile is still propagating through IAM."""
        # Same token on botocore's retries of this call: never two instances.
        params["ClientToken"] = str(uuid.uuid4())
        deadline = asyncio.get_running_loop().time() + self.profile_propagation_timeout
        delay = 0.5
        while True:
            try:
                return await self._call("run_instances", **params)
            except ClientError as e:
                propagating = aws.error_code(e) == "InvalidParameterValue" and "profile" in str(e).lower()
                if not propagating or asyncio.get_running_loop().time() + delay > deadline:
                    raise
                self.log.info("Instance profile not usable yet, retrying in %.1fs: %s", delay, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 8)

    async def _ensure_profile(self, instance: dict, names: UserNames) -> None:
        """An instance that lost (or never had) the user's profile gets it back before it starts."""
        profile = instance.get("IamInstanceProfile", {}).get("Arn", "")
        if profile.endswith(f"/{names.instance_profile}"):
            return
        associations = await self._call(
            "describe_iam_instance_profile_associations",
            Filters=[{"Name": "instance-id", "Values": [instance["InstanceId"]]}],
        )
        current = [a for a in associations["IamInstanceProfileAssociations"] if a["State"] == "associated"]
        if current and current[0]["IamInstanceProfile"]["Arn"].endswith(f"/{names.instance_profile}"):
            return
        if current:
            await self._call(
                "replace_iam_instance_profile_association",
                AssociationId=current[0]["AssociationId"],
                IamInstanceProfile={"Name": names.instance_profile},
            )
        else:
            await self._call(
                "associate_iam_instance_profile",
                InstanceId=instance["InstanceId"],
                IamInstanceProfile={"Name": names.instance_profile},
            )

    async def _resume(self, instance: dict, user_data: str, names: UserNames) -> dict:
        """Start this server's existing instance again, with this start's user-data."""
        instance_id = instance["InstanceId"]
        state = instance["State"]["Name"]
        if state in ("pending", "running"):
            # Left running by an interrupted start: it booted with an old token, so reboot it
            # through a stop to hand it this start's settings.
            self._emit(15, f"Restarting instance {instance_id} with new settings")
            await self._call("stop_instances", InstanceIds=[instance_id])
            state = "stopping"
        if state == "stopping":
            await self._wait_for_state(instance_id, {"stopped"}, self.stop_timeout)
        self._emit(20, f"Starting your instance {instance_id} again; your home is on its disk")
        if self.use_spot and instance.get("InstanceLifecycle") != "spot":
            self._emit(20, "Your instance keeps on-demand pricing: spot applies to new instances only")
        await self._call(
            "modify_instance_attribute",
            InstanceId=instance_id,
            UserData={"Value": user_data.encode()},
        )
        if instance.get("InstanceType") != self.instance_type:
            await self._call(
                "modify_instance_attribute",
                InstanceId=instance_id,
                InstanceType={"Value": self.instance_type},
            )
        await self._ensure_profile(instance, names)
        await self._call("start_instances", InstanceIds=[instance_id])
        return instance

    async def _halt(self, instance_id: str) -> None:
        """Stop or terminate the instance as `stop_behaviour` says; gone already is fine."""
        operation = "terminate_instances" if self.stop_behaviour == "terminate" else "stop_instances"
        try:
            await self._call(operation, InstanceIds=[instance_id])
        except ClientError as e:
            if aws.is_not_found(e) or aws.error_code(e) == "IncorrectInstanceState":
                self.log.info("Instance %s is already gone or stopping: %s", instance_id, e)
                return
            raise

    # -- the Spawner API -------------------------------------------------------------------

    async def start(self) -> str:
        self._events = []
        self._start_task = asyncio.ensure_future(self._start())
        try:
            return await self._start_task
        finally:
            self._notify_progress()

    async def _start(self) -> str:
        self._emit(0, "Preparing your AWS identity and data access")
        try:
            names = await self._prepare_identity()
            await self._hand_over_token()
            user_data = render_user_data(self.instance_environment())
            self._emit(5, "Looking for your instance")
            instance = await self._find_instance()
            if instance is None:
                self._emit(10, f"Launching a new {self.instance_type} instance")
                instance = await self._launch(user_data, names)
            else:
                instance = await self._resume(instance, user_data, names)
            self.instance_id = instance["InstanceId"]
            self._emit(30, f"Instance {self.instance_id} is pending")
            instance = await self._wait_for_state(self.instance_id, {"running"}, self.start_timeout)
        except asyncio.CancelledError:
            # stop() cancelled this start; it takes care of the instance.
            raise
        except Exception as e:
            await self._halt_after_failed_start()
            raise self._spawn_error(e) from e
        ip = instance["PrivateIpAddress"]
        self._emit(70, f"Instance {self.instance_id} is running at {ip}; starting Jupyter")
        return f"http://{ip}:{self.server_port}"

    async def _halt_after_failed_start(self) -> None:
        with contextlib.suppress(ClientError, BotoCoreError):
            await self._withdraw_token()
        if not self.instance_id:
            with contextlib.suppress(ClientError, BotoCoreError):
                found = await self._find_by_tags()
                self.instance_id = found["InstanceId"] if found else ""
        if not self.instance_id:
            return
        try:
            await self._halt(self.instance_id)
        except (ClientError, BotoCoreError):
            self.log.exception("Could not halt instance %s after a failed start", self.instance_id)

    def _spawn_error(self, error: Exception) -> Exception:
        if isinstance(error, SpawnException):
            return error
        if isinstance(error, AnyTimeoutError):
            return SpawnException(
                "Your instance did not start in time. It has been stopped; start again, and if"
                " it happens again, tell an administrator.",
                reason="timeout",
                log_message=f"{self._log_name}: {error}",
                status_code=504,
            )
        if isinstance(error, ClientError | BotoCoreError):
            return SpawnException(
                aws.user_message(error, instance_type=self.instance_type, region=self.region),
                reason=aws.error_code(error) or "aws",
                log_message=f"{self._log_name}: AWS error: {error}",
                status_code=503,
            )
        return error

    async def poll(self) -> int | None:
        if not self.instance_id:
            return 0
        try:
            instance = await self._describe(self.instance_id)
        except (ClientError, BotoCoreError) as e:
            # Unable to ask is not the same as stopped: keep the server until EC2 says so.
            self.log.warning("Could not poll instance %s: %s", self.instance_id, e)
            return None
        if instance is None:
            return 0
        if instance["State"]["Name"] in ("pending", "running"):
            return None
        return 0

    async def stop(self, now: bool = False) -> None:
        if self._start_task is not None and not self._start_task.done():
            self._start_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._start_task
        await self._withdraw_token()
        instance_id = self.instance_id
        if not instance_id:
            found = await self._find_by_tags()
            instance_id = found["InstanceId"] if found else ""
        if not instance_id:
            return
        await self._halt(instance_id)
        if not now:
            done = {"terminated"} if self.stop_behaviour == "terminate" else {"stopped", "terminated"}
            with contextlib.suppress(RuntimeError):  # disappeared or terminated: stopped enough
                await self._wait_for_state(instance_id, done, self.stop_timeout)

    async def delete_forever(self) -> None:
        """The server (or its user) is deleted: its instance and disk go; the S3 data stays.

        For the default server this means the user is being deleted: their role and instance
        profile are removed too.
        """
        found = await self._find_by_tags()
        if found:
            with contextlib.suppress(ClientError):
                await self._call("terminate_instances", InstanceIds=[found["InstanceId"]])
        await self._withdraw_token()
        if not self.name and self.bucket and self.user_boundary_arn:
            await aws.run(self._identity().remove, self.user.name)

    # -- progress ----------------------------------------------------------------------------

    def _emit(self, progress: int, message: str) -> None:
        self.log.info("%s: %s", self._log_name, message)
        self._events.append({"progress": progress, "message": message})
        self._notify_progress()

    def _notify_progress(self) -> None:
        changed, self._events_changed = self._events_changed, asyncio.Event()
        changed.set()

    async def progress(self):
        sent = 0
        while True:
            changed = self._events_changed
            while sent < len(self._events):
                yield self._events[sent]
                sent += 1
            if self._start_task is None or self._start_task.done():
                return
            try:
                await asyncio.wait_for(changed.wait(), timeout=30)
            except TimeoutError:
                last = self._events[-1]["progress"] if self._events else 0
                yield {
                    "progress": last,
                    "message": "Still waiting for AWS; a new instance can take a few minutes.",
                }
