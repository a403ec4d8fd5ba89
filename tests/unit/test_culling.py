"""Idle culling's wiring: the culler runs as a hub service with the fewest scopes, and only stops servers."""

from __future__ import annotations

from traitlets.config import Config

from hub.culling import SERVICE_SCOPES, configure_idle_culler
from hub.settings import Settings


def settings(tmp_path, **env) -> Settings:
    return Settings.from_env({"EC2HUB_STATE_DIR": str(tmp_path), "EC2HUB_ADMIN_PASSWORD": "x" * 16, **env})


def test_the_culler_stops_idle_servers_with_the_fewest_scopes(tmp_path):
    c = Config()
    c.JupyterHub.services = []
    c.JupyterHub.load_roles = []
    configure_idle_culler(c, settings(tmp_path, EC2HUB_IDLE_TIMEOUT="900", EC2HUB_IDLE_CHECK_EVERY="60"))
    [service] = c.JupyterHub.services
    assert "--timeout=900" in service["command"] and "--cull-every=60" in service["command"]
    assert "--cull-users=false" in service["command"], "users are never deleted"
    [role] = c.JupyterHub.load_roles
    assert role["services"] == [service["name"]]
    assert sorted(role["scopes"]) == sorted(SERVICE_SCOPES)
    assert not any(s.startswith("admin:") for s in role["scopes"])


def test_a_timeout_of_zero_turns_culling_off(tmp_path):
    c = Config()
    c.JupyterHub.services = []
    configure_idle_culler(c, settings(tmp_path, EC2HUB_IDLE_TIMEOUT="0"))
    assert c.JupyterHub.services == []
