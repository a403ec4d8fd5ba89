"""The Dask gateway's EC2 backend alone: options and limits by group, and its watch over clusters and
their instances, on in-process moto (the real gateway and instances are in tests/e2e)."""

from __future__ import annotations

import dataclasses
import json
import time
from types import SimpleNamespace

import pytest
from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.db_base import DataManager, JobStatus
from dask_gateway_server.models import User
from dask_gateway_server.workqueue import WorkQueue

from hub.costs.ledger import Ledger, Observation
from hub.costs.prices import Prices
from hub.gateway import configure_gateway_service
from hub.gateway.backend import EC2Backend
from hub.gateway.limits import DEFAULT_LIMITS, limits_for
from hub.gateway.routes import dashboard_path
from hub.instances.inventory import instance_rows
from spawner.launcher import Launcher
from spawner.profiles import DEFAULT_PROFILES, Profile
from tests.unit.test_launcher import settings_for

ALICE = User("alice", groups=[])


class WatchedBackend(EC2Backend):
    """The backend with the hub's answers about servers given by the test."""

    servers_running: set[str] = set()

    async def has_server(self, username: str) -> bool:
        return username in self.servers_running


def backend_for(account=None, **config) -> WatchedBackend:
    launch = dataclasses.asdict(settings_for(account)) if account else {}
    backend = WatchedBackend(
        profiles=DEFAULT_PROFILES, launch_settings=launch, api_url="http://hub:8183/api", **config
    )
    backend.db = DataManager(url="sqlite://")
    return backend


def configuration(backend: EC2Backend, user: User, **chosen) -> dict:
    """As the gateway does it: the user's request parsed against the options, then the handler."""
    options = backend.options_for(user)
    return options.get_configuration(options.parse_options(chosen), user)


def add_cluster(backend: EC2Backend, user: str, **config):
    values = {"cluster_max_workers": 2, "worker_cores": 2, "max_lifetime": 3600.0, **config}
    return backend.db.create_cluster(user, {}, values)


def test_a_user_gets_the_largest_limit_of_their_groups():
    limits = limits_for(
        ["physics", "ml"],
        {"max_workers": 4},
        {
            "physics": {"max_workers": 8},
            "ml": {"max_workers": 16, "max_clusters": 3},
            "other": {"max_cores": 999},
        },
    )
    assert limits == {**DEFAULT_LIMITS, "max_workers": 16, "max_clusters": 3}
    with pytest.raises(ValueError, match="unknown limit 'max_gpus'"):
        limits_for(["ml"], {}, {"ml": {"max_gpus": 1}})


def test_worker_sizes_are_those_of_the_users_groups_shown_with_their_price():
    backend = backend_for()
    plain = backend.options_for(ALICE).get_specification()
    size = next(f for f in plain if f["field"] == "worker_size")
    assert size["spec"]["options"] == ["small", "medium", "large"]
    assert size["default"] == "small"
    assert "small: 2 vCPU, 4 GiB, $0.042/h" in size["label"]
    # What the whole cluster costs: each worker at its size, and the scheduler's own instance.
    assert "; the scheduler adds $0.042/h; prices of 2026-12-01)" in size["label"]
    gpu_user = User("gina", groups=["gpu-users"])
    assert (
        "gpu"
        in next(f for f in backend.options_for(gpu_user).get_specification() if f["field"] == "worker_size")[
            "spec"
        ]["options"]
    )
    with pytest.raises(ValueError, match="'gpu' is not a valid option"):
        configuration(backend, ALICE, worker_size="gpu")


def test_the_size_decides_instance_type_threads_and_memory_and_the_limits_the_workers():
    config = configuration(backend_for(), ALICE, worker_size="medium", idle_timeout=600)
    medium = Profile.from_config(DEFAULT_PROFILES[1])
    assert config["worker_instance_type"] == medium.instance_type
    assert config["worker_cores"] == config["worker_threads"] == 4
    assert 0.8 * 16 * 2**30 < config["worker_memory"] < 16 * 2**30
    assert config["cluster_max_workers"] == 8  # 32 cores / 4, and 8 workers at most
    assert config["idle_timeout"] == 600


def test_spot_workers_only_for_sizes_offered_on_spot_and_idle_timeout_within_bounds():
    backend = backend_for(idle_timeout_min=60)
    assert configuration(backend, ALICE, worker_size="medium", spot=True)["worker_spot"] is True
    with pytest.raises(ValueError, match="not offered on spot"):
        configuration(backend, ALICE, worker_size="small", spot=True)
    with pytest.raises(ValueError, match="idle_timeout"):
        configuration(backend, ALICE, idle_timeout=5)
    with pytest.raises(ValueError, match="idle_timeout"):
        configuration(backend, ALICE, idle_timeout=DEFAULT_LIMITS["max_lifetime"] + 1)


async def test_cores_held_by_a_users_other_clusters_leave_fewer_workers_or_none():
    backend = backend_for(default_limits={"max_cores": 16})
    add_cluster(backend, "alice", cluster_max_workers=3, worker_cores=4)  # holds 12 of 16
    add_cluster(backend, "bob", cluster_max_workers=8, worker_cores=2)  # someone else's
    assert configuration(backend, ALICE, worker_size="small")["cluster_max_workers"] == 2
    with pytest.raises(ValueError, match="hold 12 of the 16 worker cores"):
        configuration(backend, ALICE, worker_size="large")


async def test_a_cluster_needs_an_account_and_room_under_the_clusters_limit(account):
    backend = backend_for(account, default_limits={"max_clusters": 1})
    with pytest.raises(PublicException, match="start your server once first"):
        await backend.start_cluster(ALICE, {})
    await Launcher(settings_for(account)).ensure_identity("alice", [])
    add_cluster(backend, "alice")
    with pytest.raises(PublicException, match=r"You have 1 clusters, the most your groups allow \(1\)"):
        await backend.start_cluster(ALICE, {})
    with pytest.raises(PublicException, match="Only users"):
        await backend.start_cluster(User("service:airflow"), {})


async def test_an_unattended_cluster_keeps_that_in_the_configuration_the_gateway_stores():
    backend = backend_for()
    request = {"worker_size": "small", "unattended": True}
    _, config = await backend.process_cluster_options(ALICE, request)
    assert config.to_dict()["unattended"] is True
    _, default = await backend.process_cluster_options(ALICE, {})
    assert default.to_dict()["unattended"] is False


async def test_the_watch_ends_clusters_past_their_lifetime_or_of_users_without_a_server(account):
    backend = backend_for(account)
    backend.queue = WorkQueue()
    backend.servers_running = {"alice"}
    young = add_cluster(backend, "alice")
    old = add_cluster(backend, "alice")
    backend.db.update_cluster(old, start_time=old.start_time - 3601 * 1000)
    bobs = add_cluster(backend, "bob")
    pipelines = add_cluster(backend, "bob", unattended=True)  # a pipeline's: on without his server
    stopped = await backend.watch_once()
    assert sorted(stopped) == sorted([old.name, bobs.name])
    assert young.target == pipelines.target == JobStatus.RUNNING
    assert old.target == bobs.target == JobStatus.STOPPED
    backend.db.update_cluster(pipelines, start_time=pipelines.start_time - 3601 * 1000)
    assert await backend.watch_once() == [pipelines.name], "its lifetime still ends it"


async def test_the_watch_terminates_cluster_instances_of_no_live_cluster_and_only_this_hubs(account):
    backend = backend_for(account, recent_launch_grace=0)
    backend.servers_running = {"alice"}
    await Launcher(settings_for(account)).ensure_identity("alice", [])
    live = add_cluster(backend, "alice")
    gone = SimpleNamespace(name="0" * 32, username="alice", state={})
    kept, _ = await backend.launch(live, "dask-worker", "t3.medium", ["dask", "worker"], "w1")
    orphan, _ = await backend.launch(gone, "dask-worker", "t3.medium", ["dask", "worker"], "w2")
    elsewhere = backend_for(account)
    elsewhere._launcher = Launcher(settings_for(account, hub_id="other-hub"))
    others, _ = await elsewhere.launch(gone, "dask-scheduler", "t3.medium", ["dask", "scheduler"], "s")
    await backend.watch_once()
    states = {
        i["InstanceId"]: i["State"]["Name"]
        for r in account.ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
    }
    assert states[orphan["InstanceId"]] == "terminated"
    assert states[kept["InstanceId"]] == "running"
    assert states[others["InstanceId"]] == "running"


async def test_a_refused_launch_is_tried_again_and_spot_falls_back_to_on_demand(account):
    backend = backend_for(account, launch_retry_delay=0)
    await Launcher(settings_for(account)).ensure_identity("alice", [])
    refusals = ["InsufficientInstanceCapacity", "RequestLimitExceeded"]
    requests = []
    real_launch = Launcher.launch

    async def launch(self, request):
        requests.append(request.spot)
        if refusals:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": refusals.pop(0), "Message": "no"}}, "RunInstances")
        return await real_launch(self, request)

    backend.launcher.launch = launch.__get__(backend.launcher)
    instance, _ = await backend.launch(
        add_cluster(backend, "alice"), "dask-worker", "m6i.xlarge", ["dask"], "w", spot=True
    )
    assert requests == [True, False, False]
    assert instance["State"]["Name"] in ("pending", "running")


def test_cluster_instances_are_listed_under_their_owner_and_never_judged_by_servers():
    tags = {
        "ec2hub:hub": "unit-hub",
        "ec2hub:user": "alice",
        "ec2hub:server": "/",
        "ec2hub:purpose": "dask-worker",
    }
    tags["ec2hub:cluster"] = "4f1c2e0d9a8b7c6d5e4f3a2b1c0d9e8f"
    from datetime import UTC, datetime

    worker = {
        "InstanceId": "i-0000000000000dask",
        "InstanceType": "t3.medium",
        "State": {"Name": "running"},
        "LaunchTime": datetime(2026, 11, 30, tzinfo=UTC),
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }
    profiles = [Profile.from_config(p) for p in DEFAULT_PROFILES]
    # alice has no server at all: a server instance would be an orphan, a cluster's is the gateway's.
    (row,) = instance_rows([worker], {}, profiles, datetime(2026, 11, 30, 1, tzinfo=UTC))
    assert (row.user, row.server_label, row.orphan) == ("alice", "Dask worker, cluster 4f1c2e0d", False)
    assert row.cost == "$0.0416"


def env_public(c) -> str:
    return c.EC2Spawner.environment["DASK_GATEWAY__PUBLIC_ADDRESS"]


def test_the_gateway_service_and_every_user_server_get_what_they_need(tmp_path):
    from traitlets.config import Config

    from hub.config import grant_service_access
    from hub.settings import Settings

    settings = Settings.from_env({"EC2HUB_STATE_DIR": str(tmp_path), "EC2HUB_ADMIN_PASSWORD": "x" * 16})
    launch = dataclasses.asdict(
        settings_for(SimpleNamespace(image="ami-1", subnets=["s"], group="g", boundary="b"))
    )
    c = Config()
    c.EC2Spawner = Config(launch)
    scopes = configure_gateway_service(c, settings)
    grant_service_access(c, scopes)
    service, dashboards = c.JupyterHub.services.get_value([])
    assert service["name"] == "dask-gateway" and "DASK_GATEWAY_ENCRYPT_KEYS" in service["environment"]
    assert not [k for k in service["environment"] if "PASSWORD" in k]
    # The gateway has no public route; dashboards go through the service that checks owners.
    assert "url" not in service
    assert dashboards["name"] == "dask-dashboards" and dashboards["url"].startswith("http://127.0.0.1:")
    assert env_public(c) == "http://127.0.0.1:8000/services/dask-dashboards"
    env = c.EC2Spawner.environment
    assert env["DASK_GATEWAY__ADDRESS"] == "http://127.0.0.1:8183/services/dask-gateway"
    assert env["DASK_GATEWAY__PROXY_ADDRESS"] == "gateway://127.0.0.1:8184"
    assert env["DASK_GATEWAY__AUTH__TYPE"] == "jupyterhub"
    roles = {r["name"]: r["scopes"] for r in c.JupyterHub.load_roles.get_value([])}
    assert "access:services!service=dask-gateway" in roles["user"] and "self" in roles["user"]
    assert "access:services!service=dask-gateway" in roles["server"]
    assert "access:services!service=dask-dashboards" in roles["user"]
    # The database key is made once and kept: a restarted gateway reads its clusters again.
    again = Config()
    again.EC2Spawner = Config(launch)
    configure_gateway_service(again, settings)
    assert (
        again.JupyterHub.services.get_value([])[0]["environment"]["DASK_GATEWAY_ENCRYPT_KEYS"]
        == (service["environment"]["DASK_GATEWAY_ENCRYPT_KEYS"])
    )


async def test_a_first_heartbeat_naming_addresses_off_the_schedulers_instance_is_ignored():
    """The user can read their cluster's token: a forged first heartbeat must not point the
    gateway's proxy (on the hub machine) at the metadata service or the hub's own ports."""
    backend = backend_for()
    backend.queue = WorkQueue()
    cluster = add_cluster(backend, "alice")
    backend.db.update_cluster(cluster, status=JobStatus.SUBMITTED, state={"private_ip": "10.0.3.7"})
    beat = {
        "scheduler_address": "tls://10.0.3.7:8786",
        "dashboard_address": "http://10.0.3.7:8787",
        "api_address": "http://10.0.3.7:8788",
        "count": 0,
        "active_workers": [],
        "closing_workers": [],
        "closed_workers": [],
    }
    for forged in (
        {"dashboard_address": "http://169.254.169.254"},
        {"api_address": "http://127.0.0.1:8081"},
        {"scheduler_address": "tls://10.0.3.8:8786"},
        {"dashboard_address": "http://10.0.3.7:8787@10.0.9.9"},
        {"dashboard_address": "http://10.0.3.7:8787/../../hub"},
    ):
        await backend.on_cluster_heartbeat(cluster.name, {**beat, **forged})
        assert cluster.dashboard_address == cluster.api_address == ""
    await backend.on_cluster_heartbeat(cluster.name, beat)
    assert cluster.dashboard_address == "http://10.0.3.7:8787"


async def test_a_dashboard_is_routed_under_a_keyed_path_not_under_the_clusters_name():
    class Routes:
        def __init__(self) -> None:
            self.routes: dict = {}

        async def add_route(self, kind, sni=None, path=None, target=None):
            self.routes[(kind, sni or path)] = target

        async def remove_route(self, kind, sni=None, path=None):
            self.routes.pop((kind, sni or path), None)

    backend = backend_for(dashboard_route_key="k" * 32)
    backend.proxy = Routes()
    cluster = add_cluster(backend, "alice")
    cluster.dashboard_address, cluster.scheduler_address = "http://10.0.3.7:8787", "tls://10.0.3.7:8786"
    await backend._check_cluster_proxied(cluster)
    paths = {name for kind, name in backend.proxy.routes if kind == "PATH"}
    assert paths == {dashboard_path("k" * 32, cluster.name)}
    assert not [p for p in paths if cluster.name in p], "the name alone finds no dashboard"
    assert backend.proxy.routes[("SNI", cluster.name)] == "tls://10.0.3.7:8786"


async def test_over_a_groups_hard_budget_a_new_cluster_is_refused_with_the_spend(account, tmp_path):
    url = f"sqlite:///{tmp_path}/costs.sqlite"
    budgets = json.dumps({"groups": {"ml": {"hard": 0.0001}}, "contact": "the platform team"})
    backend = backend_for(account, budgets=budgets, costs_db_url=url)
    await Launcher(settings_for(account)).ensure_identity("alice", [])
    ledger = Ledger(url, Prices.load())
    now = int(time.time())
    # bob, alice's team-mate, has run a medium server for the last ten minutes.
    ledger.observe([Observation("i-1", "bob", "server", "m6i.xlarge", False, 0, "running", since=now - 600)])

    async def members_of(group: str) -> list[str]:
        return {"ml": ["alice", "bob"]}[group]

    await backend.check_budget(ALICE)  # alice in no group with a budget: nothing to check
    backend._members_of = members_of
    with pytest.raises(
        PublicException, match=r"group ml has spent \$0\.0\d+ of its \$0\.0001 budget\. A new cluster"
    ):
        await backend.start_cluster(User("alice", groups=["ml"]), {})
