"""Idle culling: jupyterhub-idle-culler as a hub-managed service that stops (never deletes) idle servers."""

from __future__ import annotations

import sys

from traitlets.config import Config

from hub.settings import Settings

SERVICE_NAME = "idle-culler"
ROLE_NAME = "ec2hub-idle-culler"

# The fewest scopes the culler needs to stop idle servers: see users and their servers with their
# last activity, and stop servers. No admin:users (it never deletes users), no servers' state.
SERVICE_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]


def culler_command(settings: Settings) -> list[str]:
    """A stopped server keeps its instance and home: the culler stops servers and nothing else."""
    return [
        sys.executable,
        "-m",
        "jupyterhub_idle_culler",
        f"--timeout={int(settings.idle_timeout)}",
        f"--cull-every={max(int(settings.idle_check_every), 1)}",
        "--cull-users=false",
        "--remove-named-servers=false",
    ]


def configure_idle_culler(c: Config, settings: Settings) -> None:
    """Run the culler when EC2HUB_IDLE_TIMEOUT is above 0 (the default is one hour)."""
    if settings.idle_timeout <= 0:
        return
    c.JupyterHub.services.append({"name": SERVICE_NAME, "command": culler_command(settings)})
    c.JupyterHub.load_roles.append(
        {
            "name": ROLE_NAME,
            "description": "Stops servers idle for longer than EC2HUB_IDLE_TIMEOUT.",
            "scopes": list(SERVICE_SCOPES),
            "services": [SERVICE_NAME],
        }
    )
