"""EC2Spawner: the lifecycle of one user server as one EC2 instance (launch, resume, poll, stop)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
from typing import Any, ClassVar

from botocore.exceptions import BotoCoreError, ClientError
from jupyterhub.spawner import Spawner, SpawnException
from jupyterhub.utils import AnyTimeoutError, exponential_backoff
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Integer, Unicode

from spawner import aws
from spawner.config import EC2SpawnerConfig
from spawner.identity import IdentityConflict, UserNames
from spawner.launcher import Launch, LaunchConfigError, Launcher
from spawner.owner import TAG_HUB, Owner, check_owner
from spawner.pool import HotPool
from spawner.states import InstanceStates
from spawner.stop_reasons import UNREACHABLE, InstanceEnded, why_not_running
from spawner.timing import PhaseTimer
from spawner.userdata import render_user_data

STATE_VERSION = 1

# While waiting for Jupyter to answer, how often (seconds) EC2 is asked whether the instance still runs.
EC2_CHECK_WHILE_BOOTING = 3.0


class EC2Spawner(EC2SpawnerConfig, Spawner):
    """Runs each user server on its own EC2 instance, launched from the ec2hub image.

    A stopped server keeps its instance (and the disk with the user's home) unless
    `stop_behaviour` is "terminate"; the next start boots the same instance again.
    """

    instance_id = Unicode("", help="ID of this server's instance, when known.")
    stop_reason = Unicode(
        "",
        help="""Why the server last stopped or failed to start without the user asking, for the user.
        Kept through the stop (it is about the past) and shown at the next start.""",
    )
    failed_checks = Integer(0, help="Checks in a row in which the running server did not answer.")

    # What launches and finds this server's instances (a subclass may bring a launcher of its own).
    launcher_class: ClassVar[type[Launcher]] = Launcher

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start_task: asyncio.Future | None = None
        self._events: list[dict] = []
        self._events_changed = asyncio.Event()
        # The instance this hub last stopped or terminated itself: not a stop "outside the hub".
        self._halted_by_hub = ""
        # This server's claim on instances, known once the user's role is (spawner/owner.py).
        self._owner: Owner | None = None
        self._launcher: Launcher | None = None

    # -- state --------------------------------------------------------------------------

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        # Version 1 is the first; later versions translate older states here.
        self.instance_id = state.get("instance_id", "")
        self.stop_reason = state.get("stop_reason", "")

    def get_state(self) -> dict:
        state = super().get_state()
        if self.instance_id:
            state["version"] = STATE_VERSION
            state["instance_id"] = self.instance_id
        if self.stop_reason:
            state["version"] = STATE_VERSION
            state["stop_reason"] = self.stop_reason
        return state

    def clear_state(self) -> None:
        # The stop reason survives: the hub clears the state when a server stops, which is
        # exactly when the user needs to be told why.
        super().clear_state()
        self.instance_id = ""
        self.failed_checks = 0

    # -- AWS helpers ------------------------------------------------------------------------

    @property
    def launcher(self) -> Launcher:
        if self._launcher is None:
            self._launcher = self.launcher_class(self.launch_settings())
        return self._launcher

    def _client(self, service: str) -> Any:
        return aws.client(service, self.region, self.endpoint_url)

    async def _call(self, operation: str, **kwargs: Any) -> dict:
        return await self.launcher.call(operation, **kwargs)

    async def _call_ssm(self, operation: str, **kwargs: Any) -> dict:
        return await aws.call(self._client("ssm"), operation, **kwargs)

    @property
    def names(self) -> UserNames:
        return UserNames.of(self.user.name)

    async def _prepare_identity(self) -> Owner:
        """The user's role and profile, in sync with their hub groups as of this start."""
        try:
            role = await self.launcher.ensure_identity(self.user.name, self.group_names())
        except IdentityConflict as e:
            raise SpawnException(
                "Your account's AWS identity is held by another account. An administrator needs to"
                " look at the hub log.",
                reason="identity-conflict",
                log_message=f"{self._log_name}: {e}",
                status_code=409,
            ) from e
        self._owner = self._owner_with(role.owner_id)
        if not role.created:
            for instance_id in await self.launcher.adopt_unmarked(self._owner):
                self.log.info("%s: instance %s now carries the owner id", self._log_name, instance_id)
        return self._owner

    def _owner_with(self, owner_id: str) -> Owner:
        return Owner(hub_id=self.hub_id, owner_id=owner_id, user=self.user.name, server=self.name)

    async def _known_owner(self) -> Owner | None:
        """This server's owner, asking IAM (without creating anything) when this spawner has not yet."""
        if self._owner is None:
            owner_id = await self.launcher.owner_id(self.user.name)
            if owner_id:
                self._owner = self._owner_with(owner_id)
        return self._owner

    @property
    def settings_parameter(self) -> str:
        return self.names.settings_parameter(self.name)

    async def _hand_over_settings(self) -> None:
        """What the server boots with, in one SSM SecureString readable by this user's role only:
        the API token and the environment. User-data (readable by anyone who may describe
        instances) and a pool claim's tag carry only the parameter's name."""
        settings = {"token": self.api_token, "environment": self.instance_environment()}
        await self._call_ssm(
            "put_parameter",
            Name=self.settings_parameter,
            Value=json.dumps(settings),
            Type="SecureString",
            Overwrite=True,
            Description="API token and settings of an ec2hub user server (removed when it stops)",
            # Over 4 KB (a long configured environment), SSM makes it an advanced parameter.
            Tier="Intelligent-Tiering",
        )

    def _hot_pool(self) -> HotPool | None:
        """The hub's hot pool to claim from, when one is configured (the pool keeper fills it)."""
        if not any(int(n) > 0 for n in self.hot_pool.values()):
            return None
        try:
            return HotPool(self.launcher, self.profile_list(), self.hot_pool, self.server_port)
        except ValueError as e:
            self.log.error("No hot pool: %s", e)
            return None

    async def _withdraw_token(self) -> None:
        try:
            await self._call_ssm("delete_parameter", Name=self.settings_parameter)
        except ClientError as e:
            if aws.error_code(e) != "ParameterNotFound":
                raise

    @property
    def instance_name(self) -> str:
        """The Name tag of this server's instance."""
        return f"ec2hub-{self.user.name}" + (f"-{self.name}" if self.name else "")

    async def _describe(self, instance_id: str) -> dict | None:
        return await self.launcher.describe(instance_id)

    async def _find_owned(self, owner: Owner | None) -> dict | None:
        """The live instance tagged for this server, e.g. one an interrupted start launched."""
        if owner is None:
            return None
        found = await self.launcher.owned(owner)
        if len(found) > 1:
            self.log.warning("%d instances are tagged for %s: using the newest", len(found), self._log_name)
        return found[0] if found else None

    async def _find_instance(self, owner: Owner) -> dict | None:
        if self.instance_id:
            instance = await self._describe(self.instance_id)
            if instance and instance["State"]["Name"] in aws.LIVE_STATES and owner.owns(instance):
                return instance
            self.instance_id = ""
        return await self._find_owned(owner)

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
                raise InstanceEnded(instance)
            if "running" in states and state in ("stopping", "stopped"):
                # Asked to start, it stopped again: EC2 could not boot it, or someone stopped it.
                raise InstanceEnded(instance)
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
        # MEM_LIMIT and CPU_LIMIT (the size's memory and vCPUs) feed JupyterLab's resource display.
        keep |= {"MEM_LIMIT", "CPU_LIMIT"}
        chosen = {k: v for k, v in env.items() if k.startswith("JUPYTERHUB_") or k in keep}
        # The token travels beside the environment, not in it (see _hand_over_settings).
        chosen.pop("JUPYTERHUB_API_TOKEN", None)
        chosen["EC2HUB_BUCKET"] = self.bucket
        chosen["EC2HUB_USER_PREFIX"] = self.names.prefix
        chosen["EC2HUB_SERVER_PORT"] = str(self.server_port)
        chosen["EC2HUB_SINGLEUSER_COMMAND"] = shlex.join(self.cmd + self.get_args())
        return chosen

    async def _launch(self, user_data: str, owner: Owner) -> dict:
        """A new instance for this server, with the user's profile, of the size chosen."""
        request = Launch(
            purpose="server",
            instance_type=self.instance_type,
            user_data=user_data,
            name=self.instance_name,
            owner=owner,
            spot=self.use_spot,
        )
        return await self.launcher.launch(request)

    async def _resume(self, instance: dict, user_data: str, owner: Owner) -> dict:
        """Start this server's existing instance again, with this start's user-data."""
        check_owner(instance, owner.tags())
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
        await self.launcher.ensure_profile(instance, owner)
        await self._call("start_instances", InstanceIds=[instance_id])
        return instance

    async def _halt(self, instance_id: str, owner: Owner | None) -> bool:
        """Stop or terminate this server's instance as `stop_behaviour` says, if it is exactly this
        server's; returns whether there is a stop to wait for."""
        if owner is None:
            self.log.error("%s: not halting %s, whose owner is unknown", self._log_name, instance_id)
            return False
        self._halted_by_hub = instance_id
        return await self.launcher.halt(
            instance_id, owner.tags(), terminate=self.stop_behaviour == "terminate"
        )

    # -- the Spawner API -------------------------------------------------------------------

    async def start(self) -> str:
        self._events = []
        self._start_task = asyncio.ensure_future(self._start())
        try:
            return await self._start_task
        finally:
            self._notify_progress()

    async def _start(self) -> str:
        timing = PhaseTimer()
        if self.stop_reason:
            self._emit(0, f"Your server stopped last time: {self.stop_reason}")
            self.stop_reason = ""
        self._emit(0, "Preparing your AWS identity and data access")
        try:
            owner = await self._prepare_identity()
            await self._hand_over_settings()
            timing.mark("identity")
            user_data = render_user_data({"EC2HUB_SETTINGS_PARAMETER": self.settings_parameter})
            self._emit(5, "Looking for your instance")
            instance = await self._find_instance(owner)
            pool = self._hot_pool() if instance is None and not self.use_spot else None
            claimed = await pool.claim(self.size, owner, self.instance_name) if pool else None
            if claimed:
                self.instance_id = claimed["InstanceId"]
                self._emit(20, f"Taking over instance {self.instance_id}, booted ahead for you")
                await self.launcher.ensure_profile(claimed, owner)
                await pool.signal(claimed, owner, self.settings_parameter)
                instance = claimed
            elif instance is None:
                self._emit(10, f"Launching a new {self.instance_type} instance")
                instance = await self._launch(user_data, owner)
            else:
                instance = await self._resume(instance, user_data, owner)
            self.instance_id = instance["InstanceId"]
            timing.mark("aws")
            self._emit(30, f"Instance {self.instance_id} is pending")
            instance = await self._wait_for_state(self.instance_id, {"running"}, self._boot_wait_limit())
            timing.mark("boot")
            ip = instance["PrivateIpAddress"]
            url = f"http://{ip}:{self.server_port}"
            self._emit(70, f"Instance {self.instance_id} is running at {ip}; starting Jupyter")
            await self._wait_until_jupyter_answers(ip)
            timing.mark("jupyter")
        except asyncio.CancelledError:
            # stop() cancelled this start; it takes care of the instance.
            raise
        except Exception as e:
            await self._halt_after_failed_start()
            error = self._spawn_error(e)
            if isinstance(error, SpawnException):
                # What the hub's pages and progress stream show the user (JupyterHub reads this
                # attribute; without it they show nothing, or the log message with AWS details).
                error.jupyterhub_message = error.message
                self.stop_reason = f"the last start failed: {error.message}"
            raise error from e
        self.log.info("Spawn timing of %s (seconds): %s", self._log_name, timing.report())
        return url

    def _boot_wait_limit(self) -> float:
        """How long to wait for "running": a little less than the hub's start_timeout, so that the
        spawner, not the hub's cancellation, ends a slow start, halts its instance and says why."""
        return max(self.start_timeout - min(10.0, self.start_timeout * 0.1), 1.0)

    async def _wait_until_jupyter_answers(self, ip: str) -> None:
        """Return as soon as the user's server listens, so that the hub's first check finds it up.

        After start() returns, JupyterHub checks the server with growing pauses in between; a server
        that came up just after a check waits for the next one. Trying to connect here every
        `ready_check_interval` seconds ends that idle time. A bare TCP connect costs the hub nothing
        (no HTTP client slot, which the hub's own requests to the proxy share). EC2 is asked every few
        seconds as well, so an instance that stopped or died ends the wait at once.
        """
        if self.server is None or self.ready_check_interval <= 0:
            return  # nothing to check against: the hub's own checks decide
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.http_timeout
        next_ec2_check = loop.time() + EC2_CHECK_WHILE_BOOTING
        while True:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(ip, self.server_port), 1)
            except (OSError, TimeoutError):
                pass  # not listening yet
            else:
                writer.close()
                return
            now = loop.time()
            if now >= deadline:
                raise TimeoutError(
                    f"Jupyter did not listen on {ip}:{self.server_port} within {self.http_timeout:.0f}s"
                )
            if now >= next_ec2_check:
                await self._wait_for_state(self.instance_id, {"running"}, self.start_timeout)
                next_ec2_check = now + EC2_CHECK_WHILE_BOOTING
            await asyncio.sleep(self.ready_check_interval)

    async def _halt_after_failed_start(self) -> None:
        with contextlib.suppress(ClientError, BotoCoreError):
            await self._withdraw_token()
        if not self.instance_id:
            with contextlib.suppress(ClientError, BotoCoreError):
                found = await self._find_owned(self._owner)
                self.instance_id = found["InstanceId"] if found else ""
        if not self.instance_id:
            return
        try:
            await self._halt(self.instance_id, self._owner)
        except (ClientError, BotoCoreError):
            self.log.exception("Could not halt instance %s after a failed start", self.instance_id)

    def _spawn_error(self, error: Exception) -> Exception:
        if isinstance(error, SpawnException):
            return error
        if isinstance(error, LaunchConfigError):
            return SpawnException(str(error), reason="config")
        if isinstance(error, InstanceEnded):
            return SpawnException(
                f"{why_not_running(error.instance)} Start again; if it happens again, tell an administrator.",
                reason="instance-ended",
                log_message=f"{self._log_name}: {error}",
                status_code=503,
            )
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
                reason=aws.failure_reason(error),
                log_message=f"{self._log_name}: AWS error: {error}",
                status_code=503,
            )
        return error

    async def _polled_instance(self) -> dict | None:
        """The instance as the hub's shared list has it (spawner/states.py), or asked about alone."""
        states = InstanceStates.of(
            self._client("ec2"), (TAG_HUB, self.hub_id), self.region, self.endpoint_url
        )
        instance = await states.get(self.instance_id, max_age=self.poll_interval / 2)
        if instance is None:  # launched since the list was made, or gone
            instance = await self._describe(self.instance_id)
        return instance

    async def poll(self) -> int | None:
        if not self.instance_id:
            return 0
        try:
            instance = await self._polled_instance()
        except (ClientError, BotoCoreError) as e:
            # Unable to ask is not the same as stopped: keep the server until EC2 says so.
            self.log.warning("Could not poll instance %s: %s", self.instance_id, e)
            return None
        if instance is None:
            self._ended(why_not_running(None))
            return 0
        state = instance["State"]["Name"]
        if state == "pending":
            return None
        if state == "running":
            return await self._check_server_answers(instance)
        if instance["InstanceId"] != self._halted_by_hub:
            self._ended(why_not_running(instance))
        return 0

    def _ended(self, reason: str) -> None:
        if reason != self.stop_reason:
            self.log.warning("%s is not running: %s", self._log_name, reason)
        self.stop_reason = reason

    async def _check_server_answers(self, instance: dict) -> int | None:
        """A running instance whose Jupyter server does not answer several checks in a row is dead.

        Any HTTP answer counts as alive; only no answer at all (refused, timed out) is a failure,
        and one failure is not enough: a busy instance may miss one check.
        """
        starting = self._start_task is not None and not self._start_task.done()
        if self.server is None or starting or self.unreachable_checks <= 0:
            return None  # while starting, the start itself watches the server
        # The instance's own address: the hub's record of the server is a placeholder until start() returns.
        url = f"http://{instance['PrivateIpAddress']}:{self.server_port}{self.server.base_url}api"
        try:
            await AsyncHTTPClient().fetch(
                url,
                request_timeout=self.server_check_timeout,
                connect_timeout=self.server_check_timeout,
            )
        except HTTPClientError as e:
            if e.code != 599:
                self.failed_checks = 0
                return None
            failure: Exception = e
        except OSError as e:
            failure = e
        else:
            self.failed_checks = 0
            return None
        self.failed_checks += 1
        self.log.warning(
            "%s did not answer at %s (%d/%d): %s",
            self._log_name,
            url,
            self.failed_checks,
            self.unreachable_checks,
            failure,
        )
        if self.failed_checks < self.unreachable_checks:
            return None
        self._ended(UNREACHABLE)
        return 0

    async def stop(self, now: bool = False) -> None:
        if self._start_task is not None and not self._start_task.done():
            self._start_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._start_task
        await self._withdraw_token()
        owner = await self._known_owner()
        instance_id = self.instance_id
        if not instance_id:
            found = await self._find_owned(owner)
            instance_id = found["InstanceId"] if found else ""
        if not instance_id:
            return
        if await self._halt(instance_id, owner) and not now:
            done = {"terminated"} if self.stop_behaviour == "terminate" else {"stopped", "terminated"}
            with contextlib.suppress(RuntimeError):  # disappeared or terminated: stopped enough
                await self._wait_for_state(instance_id, done, self.stop_timeout)

    async def delete_forever(self) -> None:
        """The server (or its user) is deleted: its instance and disk go.

        For the default server this means the user is being deleted: every instance of the
        account goes, then its role and instance profile (the owner id dies with the role, so
        nothing left behind can ever match a later account of the same name), and its S3 data is
        moved to `deleted/<name>/<time>/`, where only administrators reach it.
        """
        await self._withdraw_token()
        owner = await self._known_owner()
        if owner is None:
            return
        deleting_user = not self.name
        doomed = [i["InstanceId"] for i in await self.launcher.owned(owner, any_server=deleting_user)]
        if deleting_user:
            await self.launcher.mark_for_removal(self.user.name)
        try:
            await self.launcher.terminate(doomed)
        except ClientError:
            self.log.exception("%s: could not terminate %s", self._log_name, ", ".join(doomed))
        if deleting_user:
            moved = await self.launcher.remove_identity(self.user.name)
            self._owner = None
            if moved:
                self.log.info("%s: S3 data moved to %s", self._log_name, moved)

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
                await asyncio.wait_for(changed.wait(), timeout=self.patience_interval)
            except TimeoutError:
                last = self._events[-1]["progress"] if self._events else 0
                yield {"progress": last, "message": self.patience_message}
