"""Notebook jobs: a notebook run now or on a schedule, on an instance of its own, as its owner.

The hub starts and supervises the jobs service (`python -m hub.jobs`, the managed service `jobs`). It
owns jobs, job definitions and their schedules in its own database, launches one instance per run
through the launcher (purpose `job`, the owner's instance profile), and follows each run to its end,
whether or not its owner's server runs. JupyterLab's notebook jobs (jupyter-scheduler) are its
user interface: the user image replaces jupyter-scheduler's scheduler with a client of this service
(images/bootstrap/ec2hub_scheduler.py), reached at EC2HUB_JOBS_URL with the server's hub token.

Settings (environment of the hub):
- EC2HUB_JOBS=on|off (default on).
- EC2HUB_JOBS_PORT: where the service listens on the hub machine (default the hub's API port + 106);
  user instances reach it there, to submit jobs and to report their runs.
- EC2HUB_JOBS_DB_URL: its database (default SQLite in the hub's state folder).
- EC2HUB_JOBS_LIMITS ({"max_concurrent": 4, "max_queued": 50, "max_timeout": 86400}) and
  EC2HUB_JOBS_GROUP_LIMITS ({"group": {...}}): jobs running at once per user, jobs waiting to run
  (created or queued) per user, and the longest timeout in seconds; a user gets the largest of their
  groups' values. The sizes a user's jobs may have are the sizes of their groups
  (c.EC2Spawner.profiles).
- EC2HUB_JOBS_PERIOD: seconds between the service's rounds (schedules, runs, queue; default 10).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping

from traitlets.config import Config

from hub.costs import costs_db_url
from hub.costs.budgets import BudgetSettings
from hub.instances import AWS_VARIABLES, configured_profiles
from hub.settings import REPO_ROOT, Settings, SettingsError, parse_port, seconds_setting
from spawner.launcher import LaunchSettings

SERVICE_NAME = "jobs"
ROLE_NAME = "ec2hub-jobs"
PREFIX = f"/services/{SERVICE_NAME}/"
# What the service asks the hub: a user's groups (their sizes and quotas, for scheduled runs too),
# and the members of a group with a budget (what the group spent).
SERVICE_SCOPES = ["read:users:name", "read:users:groups", "read:groups"]
ACCESS_SCOPE = f"access:services!service={SERVICE_NAME}"
PORT_OFFSET = 106
LIMIT_NAMES = ("max_concurrent", "max_queued", "max_timeout")


def jobs_enabled(env: Mapping[str, str]) -> bool:
    value = env.get("EC2HUB_JOBS", "on").strip().lower()
    if value not in ("on", "off"):
        raise SettingsError(f"EC2HUB_JOBS must be on or off, not {value!r}")
    return value == "on"


def jobs_limits(env: Mapping[str, str], name: str, *, grouped: bool) -> dict:
    """EC2HUB_JOBS_LIMITS or EC2HUB_JOBS_GROUP_LIMITS, checked at the hub's start."""
    raw = env.get(name, "").strip()
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        value = None
    per_group = value if grouped else {"": value}
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in per_group.values()):
        raise SettingsError(f"{name}: not a JSON object" + (" of objects" if grouped else ""))
    for limits in per_group.values():
        unknown = set(limits) - set(LIMIT_NAMES)
        if unknown:
            known = ", ".join(LIMIT_NAMES)
            raise SettingsError(f"{name}: unknown limits {', '.join(sorted(unknown))} (known: {known})")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in limits.values()):
            raise SettingsError(f"{name}: limits are whole numbers, 1 or more")
    return value


def service_url(settings: Settings, env: Mapping[str, str]) -> str:
    port = parse_port(env, "EC2HUB_JOBS_PORT", settings.hub_port + PORT_OFFSET)
    return f"http://{settings.reachable_host}:{port}"


def configure_jobs_service(c: Config, settings: Settings, env: Mapping[str, str] | None = None) -> list[str]:
    """Run the jobs service (unless EC2HUB_JOBS=off); returns the scopes users and servers need."""
    env = settings.env if env is None else env
    if not jobs_enabled(env):
        return []
    url = service_url(settings, env)
    spec = {
        "launch": dataclasses.asdict(LaunchSettings.from_options(c.EC2Spawner)),
        "profiles": configured_profiles(c),
        "db_url": env.get("EC2HUB_JOBS_DB_URL", "").strip()
        or f"sqlite:///{settings.state_dir / 'hub' / 'jobs.sqlite'}",
        "limits": jobs_limits(env, "EC2HUB_JOBS_LIMITS", grouped=False),
        "group_limits": jobs_limits(env, "EC2HUB_JOBS_GROUP_LIMITS", grouped=True),
        "period": seconds_setting(env, "EC2HUB_JOBS_PERIOD", 10.0),
        "report_url": f"{url}{PREFIX}api/runs",
        # Budgets (hub/costs/budgets.py), checked at the hub's start, against the Instances
        # service's ledger.
        "budgets": env.get("EC2HUB_BUDGETS", "") if BudgetSettings.from_env(env) else "",
        "costs_db_url": costs_db_url(settings, env),
    }
    environment = {name: env[name] for name in AWS_VARIABLES if env.get(name)}
    environment["EC2HUB_JOBS_SPEC"] = json.dumps(spec, default=sorted)
    c.JupyterHub.services.append(
        {
            "name": SERVICE_NAME,
            "command": [sys.executable, "-m", "hub.jobs"],
            "cwd": str(REPO_ROOT),
            # The hub's proxy routes /services/jobs/ here; user instances come directly.
            "url": url,
            "environment": environment,
            "display": False,
        }
    )
    c.JupyterHub.load_roles.append(
        {
            "name": ROLE_NAME,
            "description": "What the jobs service reads from the hub: users and their groups.",
            "scopes": list(SERVICE_SCOPES),
            "services": [SERVICE_NAME],
        }
    )
    c.EC2Spawner.environment = {**c.EC2Spawner.get("environment", {}), "EC2HUB_JOBS_URL": f"{url}{PREFIX}"}
    return [ACCESS_SCOPE]
