"""The Instances page without AWS or a hub: cost, uptime, sizes, orphans, admin-only access, refusals."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
from botocore.exceptions import EndpointConnectionError
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader
from jupyterhub._data import DATA_FILES_PATH
from jupyterhub.roles import get_default_roles
from jupyterhub.scopes import _expand_self_scope
from jupyterhub.services.auth import HubOAuth
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from traitlets.config import Config

from hub.instances import HUB_TEMPLATES, SERVICE_SCOPES, configure_instances_service
from hub.instances.app import HubInstances, ServiceSettings, make_app
from hub.instances.inventory import (
    NotThisHub,
    check_belongs_to_hub,
    cost_so_far,
    format_cost,
    format_uptime,
    instance_rows,
    orphan_reason,
    size_for,
    tags_of,
)
from hub.reconciler import CheckSummary, Orphan
from hub.settings import Settings
from spawner.profiles import DEFAULT_PROFILES, Profile

PROFILES = [Profile.from_config(p) for p in DEFAULT_PROFILES]
SMALL, MEDIUM = PROFILES[0], PROFILES[1]
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PREFIX = "/services/instances/"


def instance(
    instance_id="i-0123456789abcdef0",
    *,
    user="alice",
    server="/",
    hub="unit-hub",
    state="running",
    instance_type="t3.medium",
    up=timedelta(hours=2),
    **extra,
) -> dict:
    tags = {"ec2hub:hub": hub, "ec2hub:user": user, "ec2hub:server": server}
    return {
        "InstanceId": instance_id,
        "InstanceType": instance_type,
        "State": {"Name": state},
        "LaunchTime": NOW - up,
        "PrivateIpAddress": "127.0.226.10",
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items() if v is not None],
        **extra,
    }


def server(stopped=False) -> dict:
    return {"stopped": stopped, "ready": not stopped}


# -- cost, uptime, size --------------------------------------------------------------------


def test_cost_so_far_is_the_hourly_price_times_the_hours_since_launch():
    assert cost_so_far(instance(up=timedelta(hours=2)), SMALL, NOW) == pytest.approx(2 * 0.0416)
    assert cost_so_far(instance(up=timedelta(minutes=30), state="pending"), MEDIUM, NOW) == pytest.approx(
        0.096
    )
    assert format_cost(cost_so_far(instance(up=timedelta(hours=3)), SMALL, NOW)) == "$0.1248"


def test_spot_instances_cost_the_sizes_spot_estimate():
    spot = instance(instance_type="m6i.xlarge", up=timedelta(hours=10), InstanceLifecycle="spot")
    assert cost_so_far(spot, MEDIUM, NOW) == pytest.approx(10 * MEDIUM.spot_price_per_hour)


@pytest.mark.parametrize("state", ["stopping", "stopped", "shutting-down"])
def test_an_instance_that_is_not_up_costs_nothing_now_and_has_no_uptime(state):
    down = instance(state=state, up=timedelta(days=3))
    assert format_cost(cost_so_far(down, SMALL, NOW)) == "$0.0000"
    assert format_uptime(down, NOW) == "-"


def test_an_unknown_instance_type_has_no_size_and_no_price():
    assert size_for("p5.48xlarge", PROFILES) is None
    assert format_cost(cost_so_far(instance(instance_type="p5.48xlarge"), None, NOW)) == "$?"
    [row] = instance_rows([instance(instance_type="p5.48xlarge")], {"alice": {"": server()}}, PROFILES, NOW)
    assert (row.size, row.instance_type, row.cost) == ("unknown", "p5.48xlarge", "$?")


def test_size_is_the_first_profile_with_the_instance_type():
    assert size_for("m6i.xlarge", PROFILES) is MEDIUM
    twin = Profile.from_config({**DEFAULT_PROFILES[1], "slug": "twin", "display_name": "Twin"})
    assert size_for("m6i.xlarge", [twin, MEDIUM]) is twin


@pytest.mark.parametrize(
    ("up", "shown"),
    [
        (timedelta(seconds=9), "0m 09s"),
        (timedelta(minutes=4, seconds=9), "4m 09s"),
        (timedelta(hours=1, minutes=5, seconds=59), "1h 05m"),
        (timedelta(days=2, hours=3, minutes=1), "2d 03h"),
        (timedelta(seconds=-30), "0m 00s"),  # a clock a little behind EC2's
    ],
)
def test_uptime(up, shown):
    assert format_uptime(instance(up=up), NOW) == shown


# -- orphans -------------------------------------------------------------------------------


def test_an_instance_of_a_hub_server_is_not_an_orphan():
    hub = {"alice": {"": server(), "big": server(stopped=True)}}
    assert orphan_reason("alice", "", "running", hub) == ""
    assert orphan_reason("alice", "", "stopping", hub) == ""
    # Stopped with its server: the normal "a stopped server keeps its disk".
    assert orphan_reason("alice", "big", "stopped", hub) == ""


def test_orphans_are_instances_no_hub_server_owns():
    hub = {"alice": {"": server(stopped=True)}, "bob": {}}
    assert "no user 'ghost'" in orphan_reason("ghost", "", "stopped", hub)
    assert "no default server" in orphan_reason("bob", "", "stopped", hub)
    assert "no server 'big'" in orphan_reason("alice", "big", "running", hub)
    assert "stopped" in orphan_reason("alice", "", "running", hub)
    assert "stopped" in orphan_reason("alice", "", "pending", hub)


def test_a_hot_pool_instance_is_the_hubs_own_not_an_orphan():
    pooled = instance("i-00000000000000001", user=None, server=None, **{})
    pooled["Tags"].append({"Key": "ec2hub:pool", "Value": "small"})
    ghost = instance("i-00000000000000002", user=None, server=None)
    rows = {r.instance_id: r for r in instance_rows([pooled, ghost], {}, PROFILES, NOW)}
    assert not rows[pooled["InstanceId"]].orphan and rows[pooled["InstanceId"]].user == "(hot pool)"
    assert rows[ghost["InstanceId"]].orphan


def test_rows_name_the_default_server_and_list_orphans_first():
    instances = [
        instance("i-000000000000000a1", user="alice"),
        instance("i-000000000000000b1", user="bob", server="gpu", state="stopped", instance_type="g5.xlarge"),
        instance("i-000000000000000c1", user="ghost"),
    ]
    hub = {"alice": {"": server()}, "bob": {"gpu": server(stopped=True)}}
    rows = instance_rows(instances, hub, PROFILES, NOW)
    assert [r.instance_id for r in rows] == [
        "i-000000000000000c1",
        "i-000000000000000a1",
        "i-000000000000000b1",
    ]
    ghost, alice, bob = rows
    assert ghost.orphan and not alice.orphan and not bob.orphan
    assert (alice.server_label, alice.size, alice.cost, alice.uptime) == (
        "default",
        "Small",
        "$0.0832",
        "2h 00m",
    )
    assert (bob.server_label, bob.size, bob.cost) == ("gpu", "GPU", "$0.0000")
    assert alice.launched == "2025-03-01 10:00 UTC"


def test_instances_of_other_hubs_are_refused():
    check_belongs_to_hub(instance(hub="unit-hub"), "unit-hub")
    for other in ("prod-hub", "", None):
        with pytest.raises(NotThisHub):
            check_belongs_to_hub(instance(hub=other), "unit-hub")


# -- the service's hub configuration ----------------------------------------------------------


def configured(env: dict[str, str], tmp_path: Path, **settings) -> Config:
    c = Config()
    configure_instances_service(c, Settings(state_dir=tmp_path, **settings), env)
    return c


def the_service(c: Config) -> dict:
    [service] = c.JupyterHub.services.get_value([])
    return service


def test_the_service_runs_on_a_loopback_port_that_follows_the_hub(tmp_path):
    assert the_service(configured({}, tmp_path))["url"] == "http://127.0.0.1:8182"
    assert the_service(configured({}, tmp_path, hub_port=9000))["url"] == "http://127.0.0.1:9101"
    chosen = configured({"EC2HUB_INSTANCES_PORT": "8500"}, tmp_path, hub_port=9000)
    assert the_service(chosen)["url"] == "http://127.0.0.1:8500"


def test_the_service_gets_the_aws_chain_and_its_settings_but_no_passwords(tmp_path):
    env = {
        "AWS_SHARED_CREDENTIALS_FILE": "/state/aws/credentials",
        "AWS_CONFIG_FILE": "/state/aws/config",
        "AWS_PROFILE": "hub",
        "EC2HUB_ADMIN_PASSWORD": "do not pass this on",
        "EC2HUB_OAUTH_CLIENT_SECRET": "nor this",
        "EC2HUB_LDAP_SEARCH_PASSWORD": "nor this",
        "HOME": "/root",
    }
    c = configured(env, tmp_path, hub_id="unit-hub", aws_region="eu-west-1", aws_endpoint_url="http://x")
    environment = the_service(c)["environment"]
    assert environment["AWS_PROFILE"] == "hub"
    assert environment["AWS_SHARED_CREDENTIALS_FILE"] == "/state/aws/credentials"
    assert environment["AWS_CONFIG_FILE"] == "/state/aws/config"
    service = ServiceSettings.from_env(environment)
    assert (service.hub_id, service.region, service.endpoint_url) == ("unit-hub", "eu-west-1", "http://x")
    assert service.profiles == tuple(PROFILES)
    assert not set(environment) & {"EC2HUB_ADMIN_PASSWORD", "EC2HUB_OAUTH_CLIENT_SECRET", "HOME"}
    assert "EC2HUB_LDAP_SEARCH_PASSWORD" not in environment


def test_the_service_prices_with_the_spawners_configured_sizes(tmp_path):
    c = Config()
    c.EC2Spawner.profiles = [{**DEFAULT_PROFILES[0], "price_per_hour": 0.5, "groups": {"staff"}}]
    configure_instances_service(c, Settings(state_dir=tmp_path), {})
    [profile] = ServiceSettings.from_env(the_service(c)["environment"]).profiles
    assert profile.price_per_hour == 0.5 and profile.groups == {"staff"}


def test_the_service_holds_only_the_scopes_it_reads_with(tmp_path):
    c = configured({}, tmp_path)
    [role] = c.JupyterHub.load_roles.get_value([])
    assert role["services"] == ["instances"]
    assert (
        sorted(role["scopes"])
        == sorted(SERVICE_SCOPES)
        == ["list:users", "read:servers", "read:users:groups", "read:users:name"]
    )
    assert "admin" not in the_service(c)


def test_plain_users_hold_no_access_to_services_in_this_jupyterhub():
    user_role = next(r for r in get_default_roles() if r["name"] == "user")
    assert user_role["scopes"] == ["self"]
    assert not [s for s in _expand_self_scope("alice") if s.startswith("access:services")]


# -- the web app, with a stand-in hub and EC2 --------------------------------------------------


class StandInHubAuth(HubOAuth):
    """The hub's OAuth as the service sees it, but the `who` cookie says who signs in, and everyone
    shares one xsrf identity, so that a non-admin can hold a valid xsrf token."""

    def __init__(self, people: dict[str, dict]) -> None:
        super().__init__(
            api_token="unit",
            api_url="http://127.0.0.1:9/hub/api/",
            oauth_client_id="service-instances",
            base_url=PREFIX,
            access_scopes={"access:services!service=instances"},
        )
        self.people = people

    async def _get_user(self, handler):
        self._patch_xsrf(handler)
        return self.people.get(handler.get_cookie("who", ""))

    def _get_xsrf_token_id(self, handler):
        return b"unit"


class StandInEC2:
    def __init__(self, instances: list[dict]) -> None:
        self.instances = {i["InstanceId"]: i for i in instances}
        self.actions: list[tuple[str, str]] = []

    async def page(self, limit, token="", user=""):
        """EC2's paging: `limit` at a time, the token says where the next page starts."""
        mine = [
            i
            for i in self.instances.values()
            if tags_of(i)["ec2hub:hub"] == "unit-hub" and (not user or tags_of(i)["ec2hub:user"] == user)
        ]
        start = int(token or 0)
        following = start + limit
        return mine[start:following], str(following) if following < len(mine) else ""

    async def find(self, instance_id):
        return self.instances.get(instance_id)

    async def act(self, action, instance_id):
        self.actions.append((action, instance_id))


class StandInHubUsers:
    """The hub's API: alice's server runs; ghost and the userN are nobody the hub knows."""

    KNOWN = {"alice": {"": server()}, "admin": {}}

    def __init__(self) -> None:
        self.asked: list[set[str]] = []

    async def active_servers(self, max_age=0):
        return {"alice": self.KNOWN["alice"]}

    async def servers_of(self, names):
        self.asked.append(set(names))
        return {name: self.KNOWN[name] for name in names if name in self.KNOWN}


class StandInReconciler:
    def __init__(self) -> None:
        self.orphans: tuple[Orphan, ...] = ()

    def notes(self) -> dict[str, str]:
        return {o.instance_id: "stops soon" for o in self.orphans}

    def summary(self) -> CheckSummary:
        return CheckSummary(NOW, 7, self.orphans)


def person(name: str, admin: bool, access: bool = True) -> dict:
    scopes = ["access:services!service=instances"] if access else []
    return {"kind": "user", "name": name, "admin": admin, "scopes": scopes}


ALICE_ID, GHOST_ID, OTHER_ID = "i-000000000000000a1", "i-000000000000000c1", "i-000000000000000f1"


@pytest.fixture
async def service():
    ec2 = StandInEC2(
        [
            instance(ALICE_ID, hub="unit-hub"),
            instance(GHOST_ID, user="ghost", hub="unit-hub"),
            instance(OTHER_ID, hub="other-hub"),
        ]
    )
    # Alice holds `access:services` here, as a hub granting it to everyone would give her.
    people = {
        "admin": person("admin", True),
        "alice": person("alice", False),
        "bob": person("bob", False, False),
    }
    settings = ServiceSettings(
        hub_id="unit-hub",
        region="us-east-1",
        endpoint_url="",
        profiles=tuple(PROFILES),
        prefix=PREFIX,
        hub_prefix="/hub/",
        page_size=2,
    )
    hub_auth = StandInHubAuth(people)
    hub_users = StandInHubUsers()
    reconciler = StandInReconciler()
    app = make_app(
        settings,
        hub_auth=hub_auth,
        instances=ec2,
        hub_users=hub_users,
        clock=lambda: NOW,
        reconciler=reconciler,
    )
    sock, port = bind_unused_port()
    http_server = HTTPServer(app)
    http_server.add_sockets([sock])
    client = AsyncHTTPClient()

    async def fetch(path, who="", method="GET", form=None, xsrf=True):
        headers = {"Cookie": f"who={who}"}
        body = None
        if form is not None:
            if xsrf:
                # The token (and its cookie) from the page as the admin sees it.
                page = await client.fetch(
                    f"http://127.0.0.1:{port}{PREFIX}", headers={"Cookie": "who=admin"}, raise_error=False
                )
                token = re.search(r'name="_xsrf" value="([^"]+)"', page.body.decode())
                cookie = page.headers.get("Set-Cookie", "").split(";")[0]
                form = {"_xsrf": token.group(1) if token else "", **form}
                headers["Cookie"] += f"; {cookie}"
            body = urlencode(form)
        return await client.fetch(
            f"http://127.0.0.1:{port}{path}",
            method=method,
            headers=headers,
            body=body,
            follow_redirects=False,
            raise_error=False,
        )

    fetch.ec2 = ec2
    fetch.hub_users = hub_users
    fetch.reconciler = reconciler
    yield fetch
    http_server.stop()


async def test_the_admin_sees_every_instance_of_this_hub(service):
    response = await service(PREFIX, who="admin")
    assert response.code == 200
    page = response.body.decode()
    assert '<table id="instances"' in page and "<title>Instances</title>" in page
    assert f'data-instance-id="{ALICE_ID}"' in page
    assert f'<tr data-instance-id="{GHOST_ID}" class="orphan">' in page
    assert '<td class="cost">$0.0832</td>' in page


@pytest.mark.parametrize("who", ["alice", "bob"])
@pytest.mark.parametrize("path", [PREFIX, f"{PREFIX}{ALICE_ID}", f"{PREFIX}anything/else", "/elsewhere"])
async def test_a_signed_in_non_admin_gets_403_everywhere(service, who, path):
    assert (await service(path, who=who)).code == 403
    assert (await service(path, who=who, method="POST", form={"action": "stop"}, xsrf=False)).code == 403
    assert service.ec2.actions == []


async def test_a_non_admin_with_a_valid_xsrf_token_still_cannot_act(service):
    response = await service(f"{PREFIX}{ALICE_ID}", who="alice", method="POST", form={"action": "terminate"})
    assert response.code == 403
    assert service.ec2.actions == []


async def test_someone_not_signed_in_is_sent_through_the_hub_or_refused(service):
    response = await service(PREFIX)
    assert response.code == 302
    assert response.headers["Location"].startswith("/hub/api/oauth2/authorize")
    assert (
        await service(f"{PREFIX}{ALICE_ID}", method="POST", form={"action": "stop"}, xsrf=False)
    ).code == 403


async def test_the_admin_stops_and_terminates_with_the_xsrf_token(service):
    response = await service(f"{PREFIX}{ALICE_ID}", who="admin", method="POST", form={"action": "stop"})
    assert response.code == 303
    assert response.headers["Location"] == f"{PREFIX}?done=stop&instance={ALICE_ID}"
    response = await service(f"{PREFIX}{GHOST_ID}", who="admin", method="POST", form={"action": "terminate"})
    assert response.code == 303
    assert service.ec2.actions == [("stop", ALICE_ID), ("terminate", GHOST_ID)]


async def test_an_action_without_the_xsrf_token_is_refused(service):
    response = await service(
        f"{PREFIX}{ALICE_ID}", who="admin", method="POST", form={"action": "stop"}, xsrf=False
    )
    assert response.code == 403
    assert service.ec2.actions == []


@pytest.mark.parametrize(
    ("instance_id", "action", "code"),
    [(OTHER_ID, "stop", 400), (OTHER_ID, "terminate", 400), (ALICE_ID, "reboot", 400), (ALICE_ID, "", 400)],
)
async def test_other_hubs_instances_and_unknown_actions_get_400(service, instance_id, action, code):
    response = await service(f"{PREFIX}{instance_id}", who="admin", method="POST", form={"action": action})
    assert response.code == code
    assert service.ec2.actions == []


async def test_an_unknown_instance_or_page_is_404_for_the_admin(service):
    response = await service(
        f"{PREFIX}i-0000000000000dead", who="admin", method="POST", form={"action": "stop"}
    )
    assert response.code == 404
    assert (await service(f"{PREFIX}nothing", who="admin")).code == 404


async def test_the_page_says_when_aws_does_not_answer(service):
    async def unreachable(*args):
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    service.ec2.page = unreachable
    response = await service(PREFIX, who="admin")
    assert response.code == 503
    assert "AWS did not answer" in response.body.decode()


# -- the hub's navigation bar ------------------------------------------------------------------


@pytest.mark.parametrize(("admin", "linked"), [(True, True), (False, False)])
def test_the_navigation_bar_links_the_page_for_admins_only(admin, linked):
    # The loaders as JupyterHub arranges them: its own templates also under "templates/".
    default = str(Path(DATA_FILES_PATH) / "templates")
    loader = ChoiceLoader(
        [
            PrefixLoader({"templates": FileSystemLoader([default])}, "/"),
            FileSystemLoader([HUB_TEMPLATES, default]),
        ]
    )
    page = Environment(loader=loader, autoescape=True).get_template("page.html")
    user = SimpleNamespace(name="someone", admin=admin, json_escaped_name="someone")
    html = page.render(
        user=user,
        base_url="/hub/",
        parsed_scopes=set(),
        static_url=lambda *a, **k: "",
        no_spawner_check=True,
        ec2hub_instances_url="/services/instances/",
    )
    assert ('<a id="ec2hub-instances-link" class="nav-link" href="/services/instances/">' in html) is linked
    assert 'href="/hub/home">Home</a>' in html


def listed(page: str) -> list[str]:
    return re.findall(r'<tr data-instance-id="([^"]+)"', page)


async def test_a_large_hub_is_paged_and_each_page_asks_only_about_its_unexplained_owners(service):
    for n in range(5):
        service.ec2.instances[f"i-00000000000000b{n}"] = instance(f"i-00000000000000b{n}", user=f"user{n}")
    seen: list[str] = []
    url = PREFIX
    pages = 0
    while url:
        response = await service(url.replace("&amp;", "&"), who="admin")
        assert response.code == 200
        page = response.body.decode()
        rows = listed(page)
        assert 0 < len(rows) <= 2
        seen += rows
        pages += 1
        # Alice's running server explains her instance; only the others' owners are asked about.
        users = {tags_of(service.ec2.instances[i])["ec2hub:user"] for i in rows} - {"alice"}
        assert service.hub_users.asked[-1] == users
        following = re.search(r'id="next-page" href="([^"]+)"', page)
        url = following.group(1) if following else ""
        if pages > 1:
            assert 'id="first-page"' in page and f"Page {pages}:" in page
    assert pages == 4
    assert sorted(seen) == sorted(i for i in service.ec2.instances if i != OTHER_ID)


async def test_the_admin_finds_one_users_instances(service):
    response = await service(f"{PREFIX}?user=ghost", who="admin")
    page = response.body.decode()
    assert listed(page) == [GHOST_ID]
    assert "1 instance of ghost" in page and 'value="ghost"' in page


async def test_orphans_anywhere_in_the_hub_are_listed_above_the_page(service):
    service.reconciler.orphans = (
        Orphan("i-00000000000000d1", "dora", "the hub has no user 'dora'", NOW, NOW + timedelta(hours=1)),
    )
    page = (await service(PREFIX, who="admin")).body.decode()
    banner = page[page.index('id="orphans"') : page.index('id="filter"')]
    assert (
        "1 orphan</strong>" in banner
        and "i-00000000000000d1" in banner
        and "no user &#39;dora&#39;" in banner
    )
    assert f'href="{PREFIX}?user=dora"' in banner
    assert "7 billed in the whole hub at the last check, 12:00:00 UTC" in page


@pytest.mark.parametrize("query", ["user=" + "x" * 300, "token=" + "t" * 5000])
async def test_a_forged_filter_or_page_link_gets_400(service, query):
    response = await service(f"{PREFIX}?{query}", who="admin")
    assert response.code == 400


async def test_ec2_pages_of_this_hubs_instances_and_one_users(account):
    def launch(hub: str, user: str) -> None:
        tags = [{"Key": "ec2hub:hub", "Value": hub}, {"Key": "ec2hub:user", "Value": user}]
        account.ec2.run_instances(
            ImageId=account.image,
            MinCount=1,
            MaxCount=1,
            SubnetId=account.subnets[0],
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )

    for n in range(7):
        launch("unit-hub", f"user{n}")
    launch("other-hub", "user0")
    ec2 = HubInstances("unit-hub", "us-east-1", "")
    first, token = await ec2.page(5)
    rest, last = await ec2.page(5, token)
    assert len(first) == 5 and token and len(rest) == 2 and last == ""
    assert {tags_of(i)["ec2hub:user"] for i in first + rest} == {f"user{n}" for n in range(7)}
    only, _ = await ec2.page(50, user="user0")
    assert [tags_of(i)["ec2hub:hub"] for i in only] == ["unit-hub"]
