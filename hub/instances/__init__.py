"""The admin-only Instances page: a hub-managed service listing this hub's EC2 instances, orphans first."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping

from traitlets.config import Config, LazyConfigValue

from hub.costs import costs_db_url
from hub.costs.budgets import BudgetSettings
from hub.origins import cookie_environment, service_origin
from hub.settings import REPO_ROOT, Settings, SettingsError, parse_port, seconds_setting
from spawner.config import EC2SpawnerConfig
from spawner.profiles import DEFAULT_PROFILES, validate_profiles

SERVICE_NAME = "instances"
ROLE_NAME = "ec2hub-instances"

# What the service itself may ask the hub: who exists and which servers they have, running or
# not, whether a user is an admin (the `admin` field comes with `read:users:name`), and their
# groups (the Costs page's spend by group).
SERVICE_SCOPES = ["list:users", "read:users:name", "read:servers", "read:users:groups"]

# The hub's AWS credential chain: the service acts on the hub's instances as the hub does.
AWS_VARIABLES = (
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CA_BUNDLE",
)

# The hub's own template overrides (the navigation bar's link to this page is one of them).
HUB_TEMPLATES = REPO_ROOT / "hub" / "templates"

# Default port: one the default hub port (8081) leaves free, and that follows a hub moved elsewhere.
PORT_OFFSET_FROM_HUB = 101


def service_port(settings: Settings, env: Mapping[str, str]) -> int:
    """EC2HUB_INSTANCES_PORT, or the hub's API port + 101 (8182 for the default hub port)."""
    return parse_port(env, "EC2HUB_INSTANCES_PORT", settings.hub_port + PORT_OFFSET_FROM_HUB)


def configured_profiles(c: Config) -> list[dict]:
    """The sizes as configured so far (`c.EC2Spawner.profiles`, or the defaults)."""
    profiles = c.EC2Spawner.get("profiles", DEFAULT_PROFILES)
    if isinstance(profiles, LazyConfigValue):  # e.g. `c.EC2Spawner.profiles.append(...)`
        profiles = profiles.get_value([dict(p) for p in DEFAULT_PROFILES])
    try:
        validate_profiles(profiles)
    except ValueError as e:
        # At the hub's start, not at every spawn.
        raise SettingsError(f"c.EC2Spawner.profiles: {e}") from None
    return list(profiles)


def service_environment(c: Config, settings: Settings, env: Mapping[str, str]) -> dict[str, str]:
    """The service's environment: the hub's AWS credential chain and the few settings it reads.

    Only named settings are passed on, never every EC2HUB_* variable: those include the admin's,
    the LDAP search and the OAuth client passwords, which this process has no use for.
    """
    chosen = {name: env[name] for name in AWS_VARIABLES if env.get(name)}
    chosen.update(
        EC2HUB_HUB_ID=settings.hub_id,
        EC2HUB_AWS_REGION=settings.aws_region,
        EC2HUB_AWS_ENDPOINT_URL=settings.aws_endpoint_url,
        EC2HUB_INSTANCES_PROFILES=json.dumps(configured_profiles(c), default=sorted),
        EC2HUB_ORPHAN_GRACE=str(settings.orphan_grace),
        EC2HUB_ORPHAN_ACTION=settings.orphan_action,
        EC2HUB_RECONCILE_EVERY=str(settings.reconcile_every),
        # The cost ledger (hub/costs): its database, how often it looks, each instance's disk.
        EC2HUB_COSTS_DB_URL=costs_db_url(settings, env),
        EC2HUB_COSTS_PERIOD=str(seconds_setting(env, "EC2HUB_COSTS_PERIOD", 60.0)),
        EC2HUB_BUDGETS=env.get("EC2HUB_BUDGETS", "") if BudgetSettings.from_env(env) else "",
        EC2HUB_VOLUME_SIZE=str(c.EC2Spawner.get("volume_size", EC2SpawnerConfig.volume_size.default_value)),
    )
    node_modules = env.get("EC2HUB_NODE_MODULES")
    if node_modules:
        chosen["EC2HUB_NODE_MODULES"] = node_modules
    return chosen


def configure_instances_service(c: Config, settings: Settings, env: Mapping[str, str] | None = None) -> None:
    """Run the Instances page as the managed service `instances`, at /services/instances/, for admins only."""
    env = settings.env if env is None else env
    port = service_port(settings, env)
    # The navigation bar's link (hub/templates/page.html): on the service's own host with
    # EC2HUB_SUBDOMAIN_HOST, else on the hub's.
    c.JupyterHub.template_vars = {
        **c.JupyterHub.get("template_vars", {}),
        "ec2hub_instances_url": f"{service_origin(settings, SERVICE_NAME)}/services/{SERVICE_NAME}/",
    }
    c.JupyterHub.services.append(
        {
            "name": SERVICE_NAME,
            "command": [sys.executable, "-m", "hub.instances"],
            "cwd": str(REPO_ROOT),
            "url": f"http://127.0.0.1:{port}",
            "environment": {**service_environment(c, settings, env), **cookie_environment(settings)},
            # Part of the hub for its admins: no "authorize this service?" step.
            "oauth_no_confirm": True,
            # The navigation bar has its own admin-only link; the Services menu would repeat it.
            "display": False,
        }
    )
    # Users reach a service with the `access:services` scope, which only the admin role holds in
    # JupyterHub 6.1.1; the service checks the admin flag itself too, in case a role grants more.
    c.JupyterHub.load_roles.append(
        {
            "name": ROLE_NAME,
            "description": "What the Instances page reads from the hub: users and their servers.",
            "scopes": list(SERVICE_SCOPES),
            "services": [SERVICE_NAME],
        }
    )
