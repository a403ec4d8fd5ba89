"""dask-gateway's EC2 backend: each cluster's scheduler and workers are EC2 instances of the cluster's
user, launched through the launcher with the user's own instance profile.

The gateway (dask-gateway-server) keeps clusters and workers in its database and drives them through
`do_start_*`, `do_check_*` and `do_stop_*`; this module turns those into launches and terminations.
What a cluster's instances boot with reaches them as the user's servers get theirs: one SSM
SecureString under the user's parameter path (the cluster's API token, TLS key and certificate), with
only its name and the Dask command line in user-data. The image's bootstrap starts the scheduler or
the worker on the instance's private address, as the user's server account.

Beyond the gateway's own limits (workers and cores per cluster, idle timeout), the backend enforces
per-group limits the gateway does not have (clusters per user, cores over all of a user's clusters,
lifetime), ends the clusters of users whose server stopped, and terminates cluster instances no live
cluster owns.
"""

from __future__ import annotations

import asyncio
import json
import math
import shlex
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from botocore.exceptions import ClientError
from dask_gateway_server.backends.base import ClusterConfig, PublicException
from dask_gateway_server.backends.db_base import DBBackendBase, JobStatus
from dask_gateway_server.options import Bool, Float, Options, Select
from dask_gateway_server.utils import timestamp
from traitlets import Bool as BoolTrait
from traitlets import Dict, Integer, List, Type, Unicode, default
from traitlets import Float as FloatTrait

from hub.costs.budgets import Budgets, BudgetSettings
from hub.costs.ledger import Ledger
from hub.costs.prices import DEFAULT_REGION, Prices
from hub.gateway.limits import DEFAULT_LIMITS, limits_for
from hub.gateway.routes import KEY_VARIABLE, dashboard_path
from hub.hub_api import hub_members
from spawner import aws
from spawner.identity import UserNames
from spawner.launcher import Launch, Launcher, LaunchSettings
from spawner.owner import TAG_CLUSTER, TAG_HUB, TAG_PURPOSE, Owner, is_owned, tags_of
from spawner.profiles import Profile, validate_profiles
from spawner.userdata import render_user_data

CLUSTER_PURPOSES = ("dask-scheduler", "dask-worker")

# EC2 answers that another try (later, elsewhere, or on-demand instead of spot) may not get.
RETRIED_LAUNCH_ERRORS = {
    "InsufficientInstanceCapacity",
    "RequestLimitExceeded",
    "Unavailable",
    "InternalError",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",
}
SPOT_ERRORS = {"InsufficientInstanceCapacity", "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded"}

# What stays for Dask: the worker's memory limit is this share of the instance's memory.
WORKER_MEMORY_SHARE = 0.85


def on_host(address: str, scheme: str, host: str | None) -> bool:
    """Whether `address` is `scheme://host:port` exactly (no path, user or other host)."""
    parsed = urlsplit(address)
    try:
        port = parsed.port
    except ValueError:
        return False
    return (
        bool(host)
        and parsed.scheme == scheme
        and parsed.hostname == host
        and bool(port)
        and (parsed.netloc == f"{host}:{port}" and parsed.path in ("", "/") and not parsed.query)
    )


class EC2ClusterConfig(ClusterConfig):
    """A cluster's configuration: the gateway's, plus where its scheduler and workers run."""

    scheduler_instance_type = Unicode("t3.medium", help="Instance type of the scheduler.", config=True)
    worker_instance_type = Unicode("t3.medium", help="Instance type of every worker.", config=True)
    worker_size = Unicode("", help="The size (slug) the workers were chosen by.", config=True)
    worker_spot = BoolTrait(
        False, help="Workers on spot instances (on-demand when spot has none).", config=True
    )
    max_lifetime = FloatTrait(
        DEFAULT_LIMITS["max_lifetime"], help="Seconds the cluster may live.", config=True
    )
    unattended = BoolTrait(
        False, help="Keeps running while its user's server is stopped (a pipeline's cluster).", config=True
    )


class EC2Backend(DBBackendBase):
    """Dask clusters on EC2: a scheduler instance and one instance per worker, all the user's own."""

    cluster_config_class = Type(
        "hub.gateway.backend.EC2ClusterConfig",
        klass="dask_gateway_server.backends.base.ClusterConfig",
        help="The cluster configuration class.",
        config=True,
    )
    # The bulk shutdown: one TerminateInstances for the scheduler and every worker of a cluster.
    supports_bulk_shutdown = True

    launch_settings = Dict(
        help="""Where and how instances launch: the fields of spawner.launcher.LaunchSettings (region,
        endpoint_url, image_id, subnet_ids, security_group_ids, hub_id, bucket, user_boundary_arn, ...),
        the same as the hub's EC2Spawner uses.""",
        config=True,
    )
    profiles = List(
        Dict(),
        help="""The sizes workers may have: the entries of c.EC2Spawner.profiles, with their groups
        (a size with groups is offered only to their members).""",
        config=True,
    )
    default_worker_size = Unicode(
        "",
        help="Slug of the workers' size when the user chooses none (default: the smallest allowed).",
        config=True,
    )
    default_limits = Dict(
        help=f"""Limits for everyone: {", ".join(f"{k} (default {v:g})" for k, v in DEFAULT_LIMITS.items())}.
        max_workers is per cluster, max_cores counts worker cores over all of a user's clusters (each
        cluster holds its maximum), max_lifetime is in seconds.
        Example: c.EC2Backend.default_limits = {{"max_workers": 4}}""",
        config=True,
    )
    group_limits = Dict(
        help="""Limits per group, above the defaults: a user gets the largest of their groups' values.
        Example: c.EC2Backend.group_limits = {"ml-team": {"max_workers": 32, "max_cores": 128}}""",
        config=True,
    )
    idle_timeout_default = FloatTrait(
        1800.0,
        help="Seconds a cluster with no work lives on, unless the user chooses otherwise.",
        config=True,
    )
    idle_timeout_min = FloatTrait(
        60.0, help="The shortest idle timeout a user may choose (seconds).", config=True
    )
    scheduler_instance_type = Unicode(
        "t3.medium", help="Instance type of every cluster's scheduler (on-demand).", config=True
    )
    scheduler_port = Integer(8786, help="The scheduler's port on its instance (TLS).", config=True)
    dashboard_port = Integer(8787, help="The scheduler's dashboard port on its instance.", config=True)
    scheduler_api_port = Integer(
        8788, help="The port the gateway reaches the scheduler's API at.", config=True
    )
    launch_attempts = Integer(
        4,
        help="Tries of a launch that EC2 refused for capacity or throttling, before it counts as failed.",
        config=True,
    )
    launch_retry_delay = FloatTrait(
        2.0, help="Seconds before the second try of a launch; doubles each try.", config=True
    )
    watch_period = FloatTrait(
        15.0,
        help="""Seconds between checks for clusters past their lifetime, of users whose server stopped,
        and for cluster instances no live cluster owns.""",
        config=True,
    )
    budgets = Unicode(
        "",
        help="""The hub's budgets (EC2HUB_BUDGETS, hub/costs/budgets.py): over a hard limit, a new
        cluster is refused. Empty: no budgets.""",
        config=True,
    )
    costs_db_url = Unicode("", help="The cost ledger's database (EC2HUB_COSTS_DB_URL).", config=True)
    hub_api_url = Unicode(help="The hub's API (default: $JUPYTERHUB_API_URL).", config=True)
    hub_api_token = Unicode(help="The gateway service's hub token (default: $JUPYTERHUB_API_TOKEN).")
    dashboard_route_key = Unicode(
        help=f"The key of the dashboards' paths on the gateway's proxy (default: ${KEY_VARIABLE})."
    )
    recent_launch_grace = FloatTrait(
        300.0,
        help="""Seconds a cluster instance is left alone by the orphan sweep after its launch (a cluster
        created while the sweep lists instances is not in its list of live clusters).""",
        config=True,
    )

    @default("dashboard_route_key")
    def _default_dashboard_route_key(self) -> str:
        import os

        return os.environ.get(KEY_VARIABLE, "")

    # An EC2 instance boots in a minute or two, more when capacity is retried: the gateway's own
    # default (60 s from submission to the first heartbeat) would fail clusters that are fine.
    @default("cluster_start_timeout")
    def _default_cluster_start_timeout(self) -> float:
        return 600.0

    @default("worker_start_timeout")
    def _default_worker_start_timeout(self) -> float:
        return 600.0

    @default("hub_api_url")
    def _default_hub_api_url(self) -> str:
        import os

        return os.environ.get("JUPYTERHUB_API_URL", "")

    @default("hub_api_token")
    def _default_hub_api_token(self) -> str:
        import os

        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    @default("cluster_options")
    def _default_cluster_options(self):
        return self.options_for

    # -- set-up ---------------------------------------------------------------------------------

    @property
    def launcher(self) -> Launcher:
        if not hasattr(self, "_launcher"):
            self._launcher = Launcher(LaunchSettings.from_options(self.launch_settings))
        return self._launcher

    def sizes(self) -> list[Profile]:
        return validate_profiles(self.profiles)

    async def do_setup(self) -> None:
        self.sizes()  # a wrong size stops the gateway at its start, not at a user's first cluster
        self._watching = asyncio.ensure_future(self.watch_loop())

    async def do_cleanup(self) -> None:
        watching = getattr(self, "_watching", None)
        if watching is not None:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)

    # -- options and limits -------------------------------------------------------------------------

    def allowed_sizes(self, groups: Iterable[str]) -> list[Profile]:
        groups = list(groups)
        return [p for p in self.sizes() if p.allowed_for(groups)]

    def options_for(self, user: Any) -> Options:
        """The options a user may set on a new cluster: sizes of their groups, spot, idle timeout, and
        whether it runs unattended (on while its user's server is stopped: a pipeline's cluster)."""
        sizes = self.allowed_sizes(user.groups)
        if not sizes:
            raise PublicException("None of the sizes is open to your groups; ask an administrator.")
        smallest = min(sizes, key=lambda p: (p.price_per_hour, p.slug))
        chosen = next((p for p in sizes if p.slug == self.default_worker_size), smallest)
        limits = self.limits(user.groups)
        prices = "; ".join(
            f"{p.slug}: {p.vcpu} vCPU, {p.memory_gib:g} GiB, ${p.price_per_hour:.3f}/h" for p in sizes
        )
        # What a cluster costs: its scheduler's instance, and each worker's at the chosen size.
        table = Prices.load(self.launch_settings.get("region") or DEFAULT_REGION).with_sizes(self.sizes())
        scheduler = table.hourly(self.scheduler_instance_type)
        scheduler_cost = f"; the scheduler adds ${scheduler:.3f}/h" if scheduler is not None else ""
        return Options(
            Select(
                "worker_size",
                [p.slug for p in sizes],
                default=chosen.slug,
                label=f"Worker size, per worker ({prices}{scheduler_cost}; prices of {table.as_of})",
            ),
            Bool("spot", default=False, label="Spot workers (cheaper; on-demand when spot has no capacity)"),
            Float(
                "idle_timeout",
                default=min(self.idle_timeout_default, limits["max_lifetime"]),
                min=self.idle_timeout_min,
                max=limits["max_lifetime"],
                label="Idle timeout (seconds without work before the cluster ends)",
            ),
            Bool(
                "unattended",
                default=False,
                label="Unattended: keeps running while my server is stopped (its idle timeout and lifetime"
                " still end it)",
            ),
            handler=self.configuration,
        )

    def limits(self, groups: Iterable[str]) -> dict[str, float]:
        try:
            return limits_for(groups, self.default_limits, self.group_limits)
        except ValueError as e:
            raise PublicException(
                f"The cluster limits are misconfigured; ask an administrator ({e})."
            ) from None

    def configuration(self, options: Any, user: Any) -> dict[str, Any]:
        """The cluster's configuration from the user's (validated) options and their groups' limits."""
        if not math.isfinite(options.idle_timeout):
            raise ValueError("idle_timeout must be a number of seconds")
        size = next(p for p in self.allowed_sizes(user.groups) if p.slug == options.worker_size)
        if options.spot and not size.spot:
            raise ValueError(f"Size {size.slug} is not offered on spot; choose spot=False or another size.")
        limits = self.limits(user.groups)
        held = sum(
            c.config.get("cluster_max_workers", 0) * c.config.get("worker_cores", 1)
            for c in self.db.list_clusters(username=user.name)
        )
        free_cores = int(limits["max_cores"] - held)
        max_workers = min(int(limits["max_workers"]), free_cores // size.vcpu)
        if max_workers < 1:
            raise ValueError(
                f"Your clusters hold {held:g} of the {limits['max_cores']:g} worker cores your groups allow,"
                f" and one {size.slug} worker needs {size.vcpu}: stop a cluster or choose a smaller size."
            )
        return {
            "worker_size": size.slug,
            "worker_instance_type": size.instance_type,
            "worker_spot": bool(options.spot),
            "worker_cores": size.vcpu,
            "worker_threads": size.vcpu,
            "worker_memory": int(size.memory_gib * 2**30 * WORKER_MEMORY_SHARE),
            "scheduler_instance_type": self.scheduler_instance_type,
            "idle_timeout": float(options.idle_timeout),
            "unattended": bool(options.unattended),
            # Workers only: the scheduler has an instance of its own.
            "cluster_max_workers": max_workers,
            "max_lifetime": float(limits["max_lifetime"]),
        }

    async def start_cluster(self, user: Any, cluster_options: Mapping) -> str:
        """A new cluster, after the checks the gateway does not make: a hub user with an account
        on the platform, and fewer clusters than their groups allow."""
        if ":" in user.name:
            raise PublicException("Only users have clusters; a service's token cannot start one.")
        if await self.launcher.owner_id(user.name) is None:
            raise PublicException("You have no account on the platform yet: start your server once first.")
        limits = self.limits(user.groups)
        running = len(self.db.list_clusters(username=user.name))
        if running >= limits["max_clusters"]:
            raise PublicException(
                f"You have {running} clusters, the most your groups allow ({limits['max_clusters']:g}):"
                " stop one first (cluster.shutdown(), or Gateway().stop_cluster(name))."
            )
        await self.check_budget(user)
        return await super().start_cluster(user, cluster_options)

    async def check_budget(self, user: Any) -> None:
        """PublicException when the user or one of their groups is over its hard budget this month."""
        if not self.budgets:
            return
        if not hasattr(self, "_budgets"):
            prices = Prices.load(self.launcher.settings.region).with_sizes(self.sizes())
            settings = BudgetSettings.from_env({"EC2HUB_BUDGETS": self.budgets})
            self._budgets = Budgets(settings, Ledger(self.costs_db_url, prices))
            self._members_of = hub_members(self.hub_api_url, self.hub_api_token)
        groups = list(user.groups)
        budgeted = [g for g in groups if g in self._budgets.settings.groups]
        members = {g: await self._members_of(g) for g in budgeted}
        refusal = (await self._budgets.standing(user.name, groups, members)).refusal("a new cluster")
        if refusal:
            await self._budgets.refused(user.name, "cluster")
            raise PublicException(refusal)

    # -- what the instances boot with ---------------------------------------------------------------

    def parameter(self, cluster: Any) -> str:
        return f"{UserNames.of(cluster.username).parameter_path}clusters/{cluster.name}/settings"

    def instance_environment(self, cluster: Any) -> dict[str, str]:
        names = UserNames.of(cluster.username)
        env = dict(cluster.config.environment)
        env.update(
            DASK_GATEWAY_API_URL=self.api_url,
            DASK_GATEWAY_CLUSTER_NAME=cluster.name,
            DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION="True",
            EC2HUB_TLS_CERT=cluster.tls_cert.decode(),
            EC2HUB_TLS_KEY=cluster.tls_key.decode(),
            EC2HUB_BUCKET=self.launcher.settings.bucket,
            EC2HUB_USER_PREFIX=names.prefix,
            JUPYTERHUB_USER=cluster.username,
        )
        return env

    async def hand_over_settings(self, cluster: Any) -> None:
        """The cluster's token, TLS key and environment, readable by the user's role only."""
        settings = {"token": cluster.token, "environment": self.instance_environment(cluster)}
        await aws.call(
            self.launcher.client("ssm"),
            "put_parameter",
            Name=self.parameter(cluster),
            Value=json.dumps(settings),
            Type="SecureString",
            Overwrite=True,
            Description="API token and TLS key of an ec2hub Dask cluster (removed when it stops)",
            Tier="Intelligent-Tiering",
        )

    async def withdraw_settings(self, cluster: Any) -> None:
        try:
            await aws.call(self.launcher.client("ssm"), "delete_parameter", Name=self.parameter(cluster))
        except ClientError as e:
            if aws.error_code(e) != "ParameterNotFound":
                raise

    def scheduler_command(self, cluster: Any) -> list[str]:
        # {private_ip} is the instance's own address, which only the bootstrap knows.
        return [
            "dask",
            "scheduler",
            "--protocol",
            "tls",
            "--port",
            str(self.scheduler_port),
            "--dashboard-address",
            f"{{private_ip}}:{self.dashboard_port}",
            "--preload",
            "dask_gateway.scheduler_preload",
            "--dg-api-address",
            f"{{private_ip}}:{self.scheduler_api_port}",
            "--dg-heartbeat-period",
            str(self.cluster_heartbeat_period),
            "--dg-adaptive-period",
            str(cluster.config.adaptive_period),
            "--dg-idle-timeout",
            str(cluster.config.idle_timeout),
        ]

    def worker_command(self, worker: Any) -> list[str]:
        cluster = worker.cluster
        return [
            "dask",
            "worker",
            cluster.scheduler_address,
            "--name",
            worker.name,
            "--nthreads",
            str(cluster.config.worker_threads),
            "--memory-limit",
            str(cluster.config.worker_memory),
            "--no-dashboard",
        ]

    def owner(self, cluster: Any, owner_id: str, purpose: str) -> Owner:
        return Owner(self.launcher.settings.hub_id, owner_id, cluster.username, purpose=purpose)

    def expected_tags(self, cluster: Any, owner_id: str, purpose: str) -> dict[str, str]:
        return {**self.owner(cluster, owner_id, purpose).tags(), TAG_CLUSTER: cluster.name}

    async def launch(
        self,
        cluster: Any,
        purpose: str,
        instance_type: str,
        command: list[str],
        name: str,
        *,
        spot: bool = False,
    ) -> tuple[dict, str]:
        """Launch one instance of the cluster, retrying capacity and throttling with backoff (spot
        falls back to on-demand); returns the instance and the owner id it was tagged with."""
        owner_id = await self.launcher.owner_id(cluster.username)
        if owner_id is None:
            raise RuntimeError(f"user {cluster.username} has no account role any more")
        started_as = (cluster.state or {}).get("owner_id") if purpose == "dask-worker" else None
        if started_as and started_as != owner_id:
            # The account was deleted and its name used again: the old cluster is not the new one's.
            raise RuntimeError(
                f"cluster {cluster.name} belongs to an earlier account named {cluster.username}"
            )
        user_data = render_user_data(
            {
                "EC2HUB_SETTINGS_PARAMETER": self.parameter(cluster),
                "EC2HUB_PURPOSE": purpose,
                "EC2HUB_COMMAND": shlex.join(command),
            }
        )
        delay = self.launch_retry_delay
        for attempt in range(1, self.launch_attempts + 1):
            request = Launch(
                purpose=purpose,
                instance_type=instance_type,
                user_data=user_data,
                name=name,
                owner=self.owner(cluster, owner_id, purpose),
                tags={TAG_CLUSTER: cluster.name},
                spot=spot,
            )
            try:
                return await self.launcher.launch(request), owner_id
            except ClientError as e:
                code = aws.error_code(e)
                if code not in RETRIED_LAUNCH_ERRORS or attempt == self.launch_attempts:
                    raise
                if spot and code in SPOT_ERRORS:
                    self.log.warning("No spot %s for %s (%s): on-demand instead", instance_type, name, code)
                    spot = False
                self.log.warning(
                    "Launch of %s refused (%s), try %d of %d in %.0fs",
                    name,
                    code,
                    attempt,
                    self.launch_attempts,
                    delay,
                )
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    # -- the gateway's calls ------------------------------------------------------------------------

    async def do_start_cluster(self, cluster: Any):
        await self.hand_over_settings(cluster)
        instance, owner_id = await self.launch(
            cluster,
            "dask-scheduler",
            cluster.config.scheduler_instance_type,
            self.scheduler_command(cluster),
            f"ec2hub-{cluster.username}-dask-{cluster.name[:8]}-scheduler",
        )
        self.log.info(
            "Cluster %s of %s: scheduler instance %s", cluster.name, cluster.username, instance["InstanceId"]
        )
        yield {
            "instance_id": instance["InstanceId"],
            "owner_id": owner_id,
            "private_ip": instance.get("PrivateIpAddress", ""),
        }

    async def on_cluster_heartbeat(self, cluster_name: str, msg: dict) -> None:
        """The scheduler's heartbeat; its first names the addresses the gateway's proxy routes to.

        The cluster's token is readable by its user (it is in their SSM parameter, for their
        scheduler), so a user could send that first heartbeat themselves and make the proxy on the
        hub machine forward to any address it reaches. Only addresses on the scheduler's own
        instance are taken.
        """
        cluster = self.db.get_cluster(cluster_name)
        if cluster is not None and cluster.status != JobStatus.RUNNING:
            expected = (cluster.state or {}).get("private_ip")
            named = {
                "scheduler_address": ("tls", msg.get("scheduler_address", "")),
                "dashboard_address": ("http", msg.get("dashboard_address", "")),
                "api_address": ("http", msg.get("api_address", "")),
            }
            wrong = [k for k, (scheme, a) in named.items() if not on_host(a, scheme, expected)]
            if wrong:
                self.log.warning(
                    "Cluster %s of %s: a heartbeat named %s off the scheduler's instance (%s); ignored",
                    cluster_name,
                    cluster.username,
                    ", ".join(wrong),
                    expected,
                )
                return
        await super().on_cluster_heartbeat(cluster_name, msg)

    # -- the gateway's proxy --------------------------------------------------------------------

    async def _check_cluster_proxied(self, cluster: Any) -> None:
        """The scheduler's TLS route by the cluster's name, as the gateway makes it; the dashboard
        under a keyed path only the dashboards service can name (hub/gateway/routes.py), instead
        of the gateway's /clusters/<name>/, which anyone reaching the proxy could open."""
        if cluster.added_to_proxies:
            return
        if cluster.dashboard_address and self.dashboard_route_key:
            path = dashboard_path(self.dashboard_route_key, cluster.name)
            await self.proxy.add_route(kind="PATH", path=path, target=cluster.dashboard_address)
        await self.proxy.add_route(kind="SNI", sni=cluster.name, target=cluster.scheduler_address)
        cluster.added_to_proxies = True

    async def _cluster_to_stopped(self, cluster: Any) -> None:
        await super()._cluster_to_stopped(cluster)
        if self.dashboard_route_key:
            await self.proxy.remove_route(
                kind="PATH", path=dashboard_path(self.dashboard_route_key, cluster.name)
            )

    async def do_stop_cluster(self, cluster: Any) -> None:
        state = cluster.state or {}
        owner_id = state.get("owner_id")
        try:
            if owner_id:
                found = await self.cluster_instances(cluster.name)
                ids = [
                    i["InstanceId"]
                    for purpose in CLUSTER_PURPOSES
                    for i in found
                    if is_owned(i, self.expected_tags(cluster, owner_id, purpose))
                ]
                await self.launcher.terminate(ids)
                self.log.info("Cluster %s: terminated %s", cluster.name, ", ".join(ids) or "nothing")
        finally:
            # The token and TLS key go whatever happened to the instances (the sweep ends those).
            await self.withdraw_settings(cluster)

    async def do_check_clusters(self, clusters: list) -> list[bool]:
        states = await self.instance_states([(c.state or {}).get("instance_id") for c in clusters])
        return [states.get((c.state or {}).get("instance_id")) in ("pending", "running") for c in clusters]

    async def do_start_worker(self, worker: Any):
        cluster = worker.cluster
        instance, owner_id = await self.launch(
            cluster,
            "dask-worker",
            cluster.config.worker_instance_type,
            self.worker_command(worker),
            f"ec2hub-{cluster.username}-dask-{cluster.name[:8]}-worker",
            spot=cluster.config.worker_spot,
        )
        self.log.info(
            "Worker %s of cluster %s: instance %s", worker.name, cluster.name, instance["InstanceId"]
        )
        yield {"instance_id": instance["InstanceId"], "owner_id": owner_id}

    async def do_stop_worker(self, worker: Any) -> None:
        state = worker.state or {}
        if state.get("instance_id") and state.get("owner_id"):
            expected = self.expected_tags(worker.cluster, state["owner_id"], "dask-worker")
            await self.launcher.halt(state["instance_id"], expected, terminate=True)

    async def do_check_workers(self, workers: list) -> list[bool]:
        states = await self.instance_states([(w.state or {}).get("instance_id") for w in workers])
        alive = []
        for w in workers:
            state = states.get((w.state or {}).get("instance_id"))
            if state not in ("pending", "running"):
                self.log.warning(
                    "Worker %s of cluster %s failed to boot (instance %s)",
                    w.name,
                    w.cluster.name,
                    state or "not found",
                )
            alive.append(state in ("pending", "running"))
        return alive

    # -- EC2 ------------------------------------------------------------------------------------------

    async def instance_states(self, instance_ids: list[str | None]) -> dict[str, str]:
        """The state of each instance, in one DescribeInstances; missing ones are absent."""
        ids = sorted({i for i in instance_ids if i})
        if not ids:
            return {}
        response = await self.launcher.call(
            "describe_instances", Filters=[{"Name": "instance-id", "Values": ids}]
        )
        return {i["InstanceId"]: i["State"]["Name"] for r in response["Reservations"] for i in r["Instances"]}

    async def cluster_instances(self, cluster_name: str | None = None) -> list[dict]:
        """This hub's live cluster instances (of one cluster, if named); owners are compared by callers."""
        filters = [
            {"Name": f"tag:{TAG_HUB}", "Values": [self.launcher.settings.hub_id]},
            {"Name": f"tag:{TAG_PURPOSE}", "Values": list(CLUSTER_PURPOSES)},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
        response = await self.launcher.call("describe_instances", Filters=filters)
        found = [i for r in response["Reservations"] for i in r["Instances"]]
        if cluster_name is not None:
            found = [i for i in found if tags_of(i).get(TAG_CLUSTER) == cluster_name]
        return found

    # -- the watch ------------------------------------------------------------------------------------

    async def watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.watch_period)
            try:
                await self.watch_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("Cluster watch failed; next try in %.0fs", self.watch_period)

    async def watch_once(self) -> list[str]:
        """Stop the clusters past their lifetime or whose user has no server running; terminate
        cluster instances of no live cluster. Returns the names of the clusters stopped. Each step
        runs whatever happened to the one before."""
        stopped: list[str] = []
        for step in (self.stop_expired, self.stop_serverless, self.terminate_strays):
            try:
                stopped += await step()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("Cluster watch: %s failed", step.__name__)
        return stopped

    async def stop_expired(self) -> list[str]:
        stopped = []
        now = timestamp()
        for cluster in list(self.db.active_clusters()):
            lifetime = cluster.config.get("max_lifetime")
            if lifetime and now - cluster.start_time > lifetime * 1000:
                self.log.info(
                    "Cluster %s of %s reached its lifetime of %.0fs", cluster.name, cluster.username, lifetime
                )
                await self.stop_cluster(cluster.name)
                stopped.append(cluster.name)
        return stopped

    async def stop_serverless(self) -> list[str]:
        """Stop the clusters of users with no server running, but for unattended ones (a pipeline's)."""
        stopped = []
        attended = [c for c in self.db.active_clusters() if not c.config.get("unattended")]
        for username in sorted({c.username for c in attended}):
            if not await self.has_server(username):
                for cluster in [c for c in attended if c.username == username]:
                    self.log.info("Cluster %s: its user %s has no server running", cluster.name, username)
                    await self.stop_cluster(cluster.name)
                    stopped.append(cluster.name)
        return stopped

    async def terminate_strays(self) -> list[str]:
        found = await self.cluster_instances()
        # Live clusters as they are once EC2 has answered, and a grace after each launch: a cluster
        # created meanwhile is not a stray.
        live = {c.name for c in self.db.active_clusters()}
        now = time.time()
        orphans = [
            i["InstanceId"]
            for i in found
            if tags_of(i).get(TAG_CLUSTER) not in live
            and i["State"]["Name"] != "stopping"
            and now - i["LaunchTime"].timestamp() > self.recent_launch_grace
        ]
        if orphans:
            self.log.warning("Terminating cluster instances of no live cluster: %s", ", ".join(orphans))
            await self.launcher.terminate(orphans)
        return []

    async def has_server(self, username: str) -> bool:
        """Whether the hub has a server of the user running or starting (False for a deleted user)."""
        url = f"{self.hub_api_url.rstrip('/')}/users/{quote(username, safe='')}"
        headers = {"Authorization": f"token {self.hub_api_token}"}
        async with self.session.get(url, headers=headers, timeout=10) as response:
            if response.status == 404:
                return False
            response.raise_for_status()
            model = await response.json()
        servers = model.get("servers") or {}
        return any(s.get("ready") or s.get("pending") == "spawn" for s in servers.values())
