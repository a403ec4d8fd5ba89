"""The Instances service's web app: hub OAuth for admins only, the list page, and stop/terminate actions."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from botocore.exceptions import BotoCoreError, ClientError
from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated, UserNotAllowed
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from hub.instances.inventory import (
    HubServers,
    NotThisHub,
    check_belongs_to_hub,
    hub_servers_from_users,
    instance_rows,
    servers_for,
    tags_of,
)
from hub.settings import Settings
from spawner import aws
from spawner.owner import TAG_HUB, TAG_USER
from spawner.profiles import DEFAULT_PROFILES, Profile

log = logging.getLogger("ec2hub.instances")

TEMPLATES = Path(__file__).parent / "templates"

# EC2 operation of each action an admin may take from the page.
ACTIONS = {"stop": "stop_instances", "terminate": "terminate_instances"}

INSTANCE_ID = r"i-[0-9a-f]{8,17}"

NOT_TERMINATED = ["pending", "running", "shutting-down", "stopping", "stopped"]

# The largest page the hub's REST API gives (JupyterHub's api_page_max_limit default).
HUB_PAGE_LIMIT = 200

# Instances per page, and the bounds EC2 puts on DescribeInstances' MaxResults.
PAGE_SIZE = 50
MIN_PAGE, MAX_PAGE = 5, 1000
EMPTY_PAGES_FOLLOWED = 5
# EC2's page tokens are a few hundred characters; anything much longer is not one.
MAX_TOKEN = 4096

# The page may flag instances from a list of the hub's active servers this many seconds old: a
# server started since is looked up by name, one stopped since is only seen on the next list.
ACTIVE_MAX_AGE = 10.0

# A user filter is a hub user name, or an EC2 wildcard pattern ("ali*").
USER_FILTER_MAX = 255


@dataclass(frozen=True)
class ServiceSettings:
    """What the service needs to know, from the environment the hub starts it with."""

    hub_id: str
    region: str
    endpoint_url: str
    profiles: tuple[Profile, ...]
    prefix: str
    hub_prefix: str
    # The orphan reconciler (hub/reconciler.py): grace in seconds, stop or terminate, how often.
    orphan_grace: float = Settings.default("orphan_grace")
    orphan_action: str = Settings.default("orphan_action")
    reconcile_every: float = Settings.default("reconcile_every")
    page_size: int = PAGE_SIZE
    # The cost ledger (hub/costs): its database, seconds between its rounds, each instance's disk.
    costs_db_url: str = "sqlite://"
    costs_period: float = 60.0
    volume_gb: int = 50

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServiceSettings:
        env = os.environ if env is None else env
        raw_profiles = env.get("EC2HUB_INSTANCES_PROFILES")
        profiles = json.loads(raw_profiles) if raw_profiles else DEFAULT_PROFILES
        return cls(
            hub_id=env.get("EC2HUB_HUB_ID", "ec2hub"),
            region=env.get("EC2HUB_AWS_REGION", "us-east-1"),
            endpoint_url=env.get("EC2HUB_AWS_ENDPOINT_URL", ""),
            profiles=tuple(Profile.from_config(p) for p in profiles),
            prefix=env.get("JUPYTERHUB_SERVICE_PREFIX", "/services/instances/"),
            hub_prefix=url_path_join(env.get("JUPYTERHUB_BASE_URL", "/"), "hub/"),
            # The hub passes its settings (hub/instances/__init__.py); run alone, their defaults.
            orphan_grace=float(env.get("EC2HUB_ORPHAN_GRACE") or Settings.default("orphan_grace")),
            orphan_action=env.get("EC2HUB_ORPHAN_ACTION") or Settings.default("orphan_action"),
            reconcile_every=float(env.get("EC2HUB_RECONCILE_EVERY") or Settings.default("reconcile_every")),
            costs_db_url=env.get("EC2HUB_COSTS_DB_URL") or "sqlite://",
            costs_period=float(env.get("EC2HUB_COSTS_PERIOD") or 60.0),
            volume_gb=int(env.get("EC2HUB_VOLUME_SIZE") or 50),
        )


class HubInstances:
    """This hub's instances in EC2, through the hub's credentials, off the event loop."""

    def __init__(self, hub_id: str, region: str, endpoint_url: str) -> None:
        self.hub_id = hub_id
        self._client = aws.client("ec2", region, endpoint_url)

    def _filters(self, states: Sequence[str], user: str = "") -> list[dict]:
        filters = [
            {"Name": f"tag:{TAG_HUB}", "Values": [self.hub_id]},
            {"Name": "instance-state-name", "Values": list(states)},
        ]
        if user:
            filters.append({"Name": f"tag:{TAG_USER}", "Values": [user]})
        return filters

    def _describe_all(self, **kwargs: Any) -> list[dict]:
        paginator = self._client.get_paginator("describe_instances")
        return [
            i for page in paginator.paginate(**kwargs) for r in page["Reservations"] for i in r["Instances"]
        ]

    def _describe_page(self, limit: int, token: str, user: str) -> tuple[list[dict], str]:
        kwargs: dict[str, Any] = {"Filters": self._filters(NOT_TERMINATED, user), "MaxResults": limit}
        # EC2 may answer a filtered page with no instances and a token: follow a few such pages.
        for _ in range(EMPTY_PAGES_FOLLOWED):
            if token:
                kwargs["NextToken"] = token
            response = self._client.describe_instances(**kwargs)
            instances = [i for r in response["Reservations"] for i in r["Instances"]]
            token = response.get("NextToken", "")
            if instances or not token:
                break
        return instances, token

    async def list(self, states: Sequence[str] = NOT_TERMINATED) -> list[dict]:
        """Every instance of this hub in one of `states` (all pages: for the reconciler, not for pages)."""
        return await aws.run(self._describe_all, Filters=self._filters(states))

    async def page(self, limit: int, token: str = "", user: str = "") -> tuple[list[dict], str]:
        """One page of at most `limit` instances (optionally one user's) and the next page's token."""
        return await aws.run(self._describe_page, max(MIN_PAGE, min(limit, MAX_PAGE)), token, user)

    async def find(self, instance_id: str) -> dict | None:
        try:
            found = await aws.run(self._describe_all, InstanceIds=[instance_id])
        except ClientError as e:
            if aws.is_not_found(e):
                return None
            raise
        return found[0] if found else None

    async def act(self, action: str, instance_id: str) -> None:
        """Stop or terminate an instance, checked right before to be this hub's (NotThisHub if not)."""
        instance = await self.find(instance_id)
        if instance is None:
            return
        check_belongs_to_hub(instance, self.hub_id)
        await aws.call(self._client, ACTIONS[action], InstanceIds=[instance_id])


class HubUsers:
    """The hub's users and their servers, read with the service's own token, a few at a time.

    Nothing here reads every user: a hub with 10,000 users answers the page with the few users on
    it, and the reconciler with the users whose servers are active.
    """

    def __init__(self, api_url: str, api_token: str, concurrency: int = 8) -> None:
        self.api_url = api_url
        self.api_token = api_token
        self._concurrency = asyncio.Semaphore(concurrency)
        self._active: HubServers | None = None
        self._active_at = 0.0
        self._refreshing = asyncio.Lock()

    async def _get(self, path: str, query: Mapping[str, Any]) -> dict | None:
        """The hub's JSON answer, or None when it says 404 (no such user)."""
        request = HTTPRequest(
            url_path_join(self.api_url, path) + f"?{urlencode(query)}",
            headers={
                "Authorization": f"token {self.api_token}",
                "Accept": "application/jupyterhub-pagination+json",
            },
            request_timeout=30,
        )
        async with self._concurrency:
            try:
                response = await AsyncHTTPClient().fetch(request)
            except HTTPClientError as e:
                if e.code == 404:
                    return None
                raise
        return json.loads(response.body)

    async def groups_of(self, names: Iterable[str]) -> dict[str, list[str]]:
        """The named users' groups; a user the hub no longer has is left out."""
        names = sorted(set(names))
        models = await asyncio.gather(*(self._get(f"users/{quote(name, safe='')}", {}) for name in names))
        return {m["name"]: list(m.get("groups") or []) for m in models if m is not None}

    async def servers_of(self, names: Iterable[str]) -> HubServers:
        """The named users' servers, stopped ones too; a user the hub does not have is left out."""
        names = sorted(set(names))
        models = await asyncio.gather(
            *(self._get(f"users/{quote(name, safe='')}", {"include_stopped_servers": 1}) for name in names)
        )
        return hub_servers_from_users(m for m in models if m is not None)

    async def active_servers(self, max_age: float = 0) -> HubServers:
        """Users with a server starting, running or stopping, and those servers only.

        An answer at most `max_age` seconds old is reused; concurrent callers share one refresh.
        """
        async with self._refreshing:
            if self._active is None or time.monotonic() - self._active_at > max_age:
                asked_at = time.monotonic()
                self._active = await self._read_active()
                self._active_at = asked_at
            return self._active

    async def _read_active(self) -> HubServers:
        users: list[dict] = []
        offset = 0
        while True:
            page = await self._get("users", {"state": "active", "offset": offset, "limit": HUB_PAGE_LIMIT})
            if page is None:
                return hub_servers_from_users(users)
            users.extend(page["items"])
            following = page["_pagination"].get("next")
            if not following:
                return hub_servers_from_users(users)
            offset = following["offset"]


def is_admin_user(model: Mapping) -> bool:
    """Only a hub user with the admin flag set: not a service, whatever scopes it holds."""
    return model.get("kind", "user") == "user" and model.get("admin") is True


class AdminOnlyHandler(HubOAuthenticated, web.RequestHandler):
    """Base of every page of the service: signed in through the hub, and an admin, or 403.

    JupyterHub's `access:services` scope lets a user through the OAuth step; being allowed to
    reach the service is not being an admin, so the admin flag is checked here on every request.
    """

    def initialize(self) -> None:
        self.hub_auth = self.settings["hub_auth"]
        self.admin: dict | None = None

    def check_hub_user(self, model: dict) -> dict:
        model = super().check_hub_user(model)
        if not is_admin_user(model):
            raise UserNotAllowed(model)
        return model

    async def prepare(self) -> None:
        # Asking the hub here, not in tornado's synchronous get_current_user, keeps the event loop free.
        model = await self.hub_auth.get_user(self, sync=False)
        if model:
            try:
                self.admin = self.current_user = self.check_hub_user(model)
            except UserNotAllowed:
                raise web.HTTPError(403, "Only hub administrators can see and manage instances.") from None
            return
        if self.request.method not in ("GET", "HEAD"):
            raise web.HTTPError(403, "Sign in to the hub as an administrator first.")
        # Not signed in to the service yet: through the hub's OAuth, then back here.
        self.redirect(self.get_login_url())

    @property
    def service(self) -> ServiceSettings:
        return self.settings["service"]

    def render_page(self, template: str, **values: Any) -> None:
        page = self.settings["templates"].get_template(template)
        self.finish(
            page.render(
                prefix=self.service.prefix,
                hub_prefix=self.service.hub_prefix,
                user=self.admin,
                **values,
            )
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        message = error.log_message if isinstance(error, web.HTTPError) and error.log_message else ""
        self.render_page("error.html", status_code=status_code, reason=self._reason, message=message)


class InstancesPage(AdminOnlyHandler):
    """One page of the hub's instances (EC2 pages them), with the few hub users they belong to.

    The cost of a page does not grow with the hub: one DescribeInstances call of at most
    `page_size` instances, and one hub API call per user on the page. Orphans anywhere in the
    hub come from the reconciler's last full check, above the table.
    """

    async def get(self) -> None:
        user = self.get_query_argument("user", "").strip()
        token = self.get_query_argument("token", "")
        if len(user) > USER_FILTER_MAX or len(token) > MAX_TOKEN:
            raise web.HTTPError(400, "That filter or page link is too long.")
        number = self.get_query_argument("page", "1")
        number = int(number) if number.isdigit() and 0 < len(number) < 7 else 1
        instances: HubInstances = self.settings["instances"]
        try:
            found, next_token = await instances.page(self.service.page_size, token, user)
            hub_servers = await servers_for(self.settings["hub_users"], found, ACTIVE_MAX_AGE)
        except (ClientError, BotoCoreError) as e:
            if token and aws.error_code(e) in ("InvalidParameterValue", "InvalidNextToken"):
                raise web.HTTPError(
                    400, "That page link has expired: start again from the first page."
                ) from e
            log.error("Could not list instances: %s", e)
            raise web.HTTPError(503, "AWS did not answer the list of instances; reload in a minute.") from e
        except (HTTPClientError, OSError) as e:
            log.error("Could not read the hub's users: %s", e)
            raise web.HTTPError(
                503, "The hub did not answer the list of its users; reload in a minute."
            ) from e
        now = self.settings["clock"]()
        reconciler = self.settings.get("reconciler")
        notes = reconciler.notes() if reconciler is not None else {}
        rows = instance_rows(found, hub_servers, self.service.profiles, now, notes)
        done = self.get_query_argument("done", "")
        done_id = self.get_query_argument("instance", "")
        notice = ""
        if done in ACTIONS and re.fullmatch(INSTANCE_ID, done_id):
            notice = f"Asked EC2 to {done} instance {done_id}."
        self.render_page(
            "instances.html",
            rows=rows,
            notice=notice,
            hub_id=self.service.hub_id,
            xsrf=self.xsrf_token.decode("ascii"),
            user_filter=user,
            page_number=number,
            next_url=self._page_url(user, next_token, number + 1) if next_token else "",
            first_url=self._page_url(user, "", 1) if token else "",
            check=reconciler.summary() if reconciler is not None else None,
        )

    def _page_url(self, user: str, token: str, number: int) -> str:
        query = {k: v for k, v in (("user", user), ("token", token)) if v}
        if token:
            query["page"] = str(number)
        return f"{self.service.prefix}?{urlencode(query)}" if query else self.service.prefix


class InstanceAction(AdminOnlyHandler):
    async def post(self, instance_id: str) -> None:
        action = self.get_body_argument("action", "")
        if action not in ACTIONS:
            raise web.HTTPError(400, f"Unknown action {action!r}: use stop or terminate.")
        instances: HubInstances = self.settings["instances"]
        try:
            instance = await instances.find(instance_id)
        except (ClientError, BotoCoreError) as e:
            log.error("Could not describe %s: %s", instance_id, e)
            raise web.HTTPError(503, f"AWS did not answer about {instance_id}; try again in a minute.") from e
        if instance is None:
            raise web.HTTPError(404, f"There is no instance {instance_id}.")
        try:
            check_belongs_to_hub(instance, self.service.hub_id)
        except NotThisHub as e:
            raise web.HTTPError(400, str(e)) from e
        try:
            await instances.act(action, instance_id)
        except (ClientError, BotoCoreError) as e:
            log.error("%s of %s failed: %s", action, instance_id, e)
            if aws.error_code(e) == "IncorrectInstanceState":
                state = instance["State"]["Name"]
                raise web.HTTPError(409, f"Instance {instance_id} is {state}: it cannot {action} now.") from e
            raise web.HTTPError(502, f"AWS refused to {action} {instance_id}; see the service log.") from e
        log.info(
            "%s asked EC2 to %s instance %s of user %s",
            self.admin["name"],
            action,
            instance_id,
            tags_of(instance).get(TAG_USER, "?"),
        )
        self.redirect(
            f"{self.service.prefix}?{urlencode({'done': action, 'instance': instance_id})}", status=303
        )


class NotFound(AdminOnlyHandler):
    """Any other URL: 404 for admins, and, like everything else here, 403 for anyone else."""

    async def prepare(self) -> None:
        await super().prepare()
        if not self._finished:
            raise web.HTTPError(404)


class OAuthCallback(HubOAuthCallbackHandler):
    """Completes the hub's OAuth with the same HubOAuth as the pages (not the process-wide one)."""

    def initialize(self) -> None:
        self.hub_auth = self.settings["hub_auth"]


def make_app(
    service: ServiceSettings,
    *,
    hub_auth: HubOAuth,
    instances: Any,
    hub_users: Any,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    reconciler: Any = None,
    ledger: Any = None,
    budgets: Any = None,
) -> web.Application:
    from hub.instances.costs import CostsCsv, CostsMetrics, CostsPage, LiftBudget, chart_script

    prefix = service.prefix
    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    return web.Application(
        [
            (prefix, InstancesPage),
            (url_path_join(prefix, "oauth_callback"), OAuthCallback),
            (url_path_join(prefix, "costs"), CostsPage),
            (url_path_join(prefix, "costs.csv"), CostsCsv),
            (url_path_join(prefix, "costs", "lift"), LiftBudget),
            (url_path_join(prefix, "metrics"), CostsMetrics),
            (
                url_path_join(prefix, "static", "(chart.umd.min.js)"),
                web.StaticFileHandler,
                {"path": str(chart_script().parent)},
            ),
            (url_path_join(prefix, f"({INSTANCE_ID})"), InstanceAction),
            (url_path_join(prefix, ".*"), NotFound),
            (r".*", NotFound),
        ],
        service=service,
        hub_auth=hub_auth,
        instances=instances,
        hub_users=hub_users,
        clock=clock,
        reconciler=reconciler,
        ledger=ledger,
        budgets=budgets,
        templates=templates,
        # Signs the OAuth state and xsrf cookies only; a restart just sends admins through OAuth again.
        cookie_secret=secrets.token_bytes(32),
        xsrf_cookies=True,
    )
