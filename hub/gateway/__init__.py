"""Dask clusters for users: dask-gateway-server as a hub service, with the platform's EC2 backend.

The hub starts and supervises the gateway (`c.JupyterHub.services`); people and their servers reach
it with JupyterHub tokens that carry `access:services!service=dask-gateway`. Its HTTP side (API, and
the clusters' dashboards under /services/dask-gateway/clusters/) and its TCP side (TLS to each
cluster's scheduler) are the gateway's own proxy, listening where user servers reach the hub
machine. People see dashboards through a second service, `dask-dashboards`, which shows a cluster's
dashboard to its owner only. Every user server gets the `DASK_GATEWAY__*` environment, so
`Gateway()` needs no argument.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping

from traitlets.config import Config

from hub.costs import costs_db_url
from hub.costs.budgets import BudgetSettings
from hub.gateway.limits import limits_for
from hub.gateway.routes import KEY_VARIABLE
from hub.instances import AWS_VARIABLES, configured_profiles
from hub.origins import cookie_environment, service_origin
from hub.settings import (
    REPO_ROOT,
    Settings,
    SettingsError,
    parse_port,
    read_or_create_secret,
    seconds_setting,
)
from spawner.launcher import LaunchSettings

SERVICE_NAME = "dask-gateway"
ROLE_NAME = "ec2hub-dask-gateway"
PREFIX = f"/services/{SERVICE_NAME}"
# What the gateway asks the hub: whether a cluster's user still has a server running, and the
# members of a group with a budget (what the group spent).
SERVICE_SCOPES = ["read:users:name", "read:servers", "read:groups"]
ACCESS_SCOPE = f"access:services!service={SERVICE_NAME}"
# Cluster dashboards, for their owners only (hub/gateway/dashboards.py).
DASHBOARDS_NAME = "dask-dashboards"
CONFIG_FILE = REPO_ROOT / "hub" / "gateway" / "gateway_config.py"

# Default ports follow the hub's API port, like the Instances page's (+101).
HTTP_PORT_OFFSET = 102
TCP_PORT_OFFSET = 103
API_PORT_OFFSET = 104
DASHBOARDS_PORT_OFFSET = 105


@dataclasses.dataclass(frozen=True)
class GatewayAddresses:
    """Where the gateway listens, and the addresses user servers and cluster instances use."""

    http_listen: str  # host:port of the gateway's proxy, HTTP (API, dashboards)
    tcp_listen: str  # host:port of the gateway's proxy, TCP (schedulers)
    api_listen: str  # host:port of the gateway's private API (behind its proxy)
    reachable_host: str  # the hub machine's address as instances reach it

    @property
    def http_url(self) -> str:
        return f"http://{self.reachable_host}:{self.http_listen.rsplit(':', 1)[1]}"

    @property
    def tcp_address(self) -> str:
        return f"gateway://{self.reachable_host}:{self.tcp_listen.rsplit(':', 1)[1]}"


def addresses(settings: Settings, env: Mapping[str, str]) -> GatewayAddresses:
    base = settings.hub_port
    http = parse_port(env, "EC2HUB_GATEWAY_PORT", base + HTTP_PORT_OFFSET)
    tcp = parse_port(env, "EC2HUB_GATEWAY_TCP_PORT", base + TCP_PORT_OFFSET)
    api = parse_port(env, "EC2HUB_GATEWAY_API_PORT", base + API_PORT_OFFSET)
    return GatewayAddresses(
        f"{settings.bind_ip}:{http}", f"{settings.bind_ip}:{tcp}", f"127.0.0.1:{api}", settings.reachable_host
    )


def limits_setting(env: Mapping[str, str], name: str, *, grouped: bool) -> dict:
    """EC2HUB_DASK_LIMITS ({"max_workers": 8, ...}) or EC2HUB_DASK_GROUP_LIMITS ({"group": {...}}),
    checked at the hub's start: SettingsError saying what is wrong."""
    raw = env.get(name, "").strip()
    try:
        value = json.loads(raw) if raw else {}
        per_group = value if grouped else {"": value}
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in per_group.values()):
            raise ValueError("not a JSON object" + (" of objects" if grouped else ""))
        for limits in per_group.values():
            if not all(isinstance(n, int | float) and n >= 1 for n in limits.values()):
                raise ValueError("limits are numbers, 1 or more")
        limits_for(per_group, {}, per_group)
    except ValueError as e:
        raise SettingsError(f"{name}: {e}") from None
    return value


def gateway_enabled(env: Mapping[str, str]) -> bool:
    value = env.get("EC2HUB_DASK_GATEWAY", "on").strip().lower()
    if value not in ("on", "off"):
        raise SettingsError(f"EC2HUB_DASK_GATEWAY must be on or off, not {value!r}")
    return value == "on"


def gateway_secret(settings: Settings, name: str) -> str:
    """A secret of the gateway's, made once and kept with the hub's other secrets: the key that
    encrypts clusters' TLS keys and tokens in its database (so a restarted gateway reads its clusters
    again), and the key of its dashboards' paths (hub/gateway/routes.py)."""
    # 32 characters: what dask-gateway takes as a 32-byte key.
    return read_or_create_secret(settings.state_dir / "hub" / name, length=24)


def configure_gateway_service(
    c: Config, settings: Settings, env: Mapping[str, str] | None = None
) -> list[str]:
    """Run dask-gateway-server as the managed service `dask-gateway` (unless EC2HUB_DASK_GATEWAY=off);
    returns the scopes users and their servers need for it."""
    env = settings.env if env is None else env
    if not gateway_enabled(env):
        return []
    where = addresses(settings, env)
    launch = LaunchSettings.from_options(c.EC2Spawner)
    spec = {
        "launch": dataclasses.asdict(launch),
        "profiles": configured_profiles(c),
        "http_listen": where.http_listen,
        "tcp_listen": where.tcp_listen,
        "api_listen": where.api_listen,
        "api_url": f"{where.http_url}{PREFIX}/api",
        "db_url": f"sqlite:///{settings.state_dir / 'hub' / 'dask-gateway.sqlite'}",
        "limits": limits_setting(env, "EC2HUB_DASK_LIMITS", grouped=False),
        "group_limits": limits_setting(env, "EC2HUB_DASK_GROUP_LIMITS", grouped=True),
        "watch_period": seconds_setting(env, "EC2HUB_DASK_WATCH_PERIOD", 15.0),
        "idle_timeout_min": seconds_setting(env, "EC2HUB_DASK_IDLE_TIMEOUT_MIN", 60.0),
        "status_period": seconds_setting(env, "EC2HUB_DASK_STATUS_PERIOD", 5.0),
        # Budgets (hub/costs/budgets.py), checked at the hub's start, against the cost ledger.
        "budgets": env.get("EC2HUB_BUDGETS", "") if BudgetSettings.from_env(env) else "",
        "costs_db_url": costs_db_url(settings, env),
    }
    shortest_lifetime = min(
        limits_for(groups, spec["limits"], spec["group_limits"])["max_lifetime"]
        for groups in ([], *[[g] for g in spec["group_limits"]])
    )
    if shortest_lifetime < spec["idle_timeout_min"]:
        raise SettingsError("A cluster's max_lifetime must be at least EC2HUB_DASK_IDLE_TIMEOUT_MIN")
    environment = {name: env[name] for name in AWS_VARIABLES if env.get(name)}
    environment["EC2HUB_GATEWAY_SPEC"] = json.dumps(spec, default=sorted)
    environment["DASK_GATEWAY_ENCRYPT_KEYS"] = gateway_secret(settings, "dask-gateway-key")
    route_key = gateway_secret(settings, "dask-dashboard-route-key")
    environment[KEY_VARIABLE] = route_key
    # No route from the hub's proxy: user servers and cluster instances reach the gateway directly,
    # and people reach dashboards through the dashboards service, which checks whose they are.
    c.JupyterHub.services.append(
        {
            "name": SERVICE_NAME,
            "command": [sys.executable, "-m", "dask_gateway_server", "-f", str(CONFIG_FILE)],
            "cwd": str(REPO_ROOT),
            "environment": environment,
            "display": False,
        }
    )
    local_gateway = where.http_listen.replace("0.0.0.0", "127.0.0.1")  # noqa: S104
    dashboards_port = parse_port(env, "EC2HUB_DASHBOARDS_PORT", settings.hub_port + DASHBOARDS_PORT_OFFSET)
    c.JupyterHub.services.append(
        {
            "name": DASHBOARDS_NAME,
            "command": [sys.executable, "-m", "hub.gateway.dashboards"],
            "cwd": str(REPO_ROOT),
            "url": f"http://127.0.0.1:{dashboards_port}",
            "environment": {
                "EC2HUB_GATEWAY_API_URL": f"http://{local_gateway}{PREFIX}/api",
                KEY_VARIABLE: route_key,
                **cookie_environment(settings),
            },
            # The token people sign in with also asks the gateway, as them, whose a cluster is.
            "oauth_client_allowed_scopes": [ACCESS_SCOPE],
            "oauth_no_confirm": True,
            "display": False,
        }
    )
    c.JupyterHub.load_roles.append(
        {
            "name": ROLE_NAME,
            "description": "What the Dask gateway reads from the hub: whether a user's server runs.",
            "scopes": list(SERVICE_SCOPES),
            "services": [SERVICE_NAME],
        }
    )
    c.EC2Spawner.environment = {
        **c.EC2Spawner.get("environment", {}),
        "DASK_GATEWAY__ADDRESS": f"{where.http_url}{PREFIX}",
        "DASK_GATEWAY__PROXY_ADDRESS": where.tcp_address,
        # Dashboards on the relay's own host with EC2HUB_SUBDOMAIN_HOST, else on the hub's.
        "DASK_GATEWAY__PUBLIC_ADDRESS": (
            f"{service_origin(settings, DASHBOARDS_NAME) or settings.url}/services/{DASHBOARDS_NAME}"
        ),
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
    }
    return [ACCESS_SCOPE, f"access:services!service={DASHBOARDS_NAME}"]
