"""Where people reach the hub, users' servers and the hub's services: one origin each, or the hub's."""

from __future__ import annotations

import json
from urllib.parse import urlparse

from jupyterhub.utils import subdomain_hook_idna
from traitlets.config import Config
from traitlets.log import get_logger

from hub.settings import Settings

SHARED_ORIGIN_WARNING = (
    "EC2HUB_SUBDOMAIN_HOST is not set: every user's server shares the hub's origin (%s). A page"
    " served from any user's server runs as the hub's own pages do for whoever opens it: it can"
    " read the hub's pages and ask the hub for a token of an admin who follows a link to it. Run a"
    " hub like this only when all its users are trusted admins; otherwise set"
    " EC2HUB_SUBDOMAIN_HOST (https://hub.example.org, with a wildcard DNS record and certificate;"
    " locally http://hub.localhost:%d) so that each server gets an origin of its own."
)


SECURE_COOKIES = {"secure": True}


def configure_origins(c: Config, settings: Settings) -> None:
    """Give each user's server and each service a host of its own under EC2HUB_SUBDOMAIN_HOST,
    with `__Host-` cookies (which no sibling host can set or overwrite); without it, say in the
    hub's log what sharing one origin means."""
    if not settings.subdomain_host:
        get_logger().warning(SHARED_ORIGIN_WARNING, settings.url, settings.port)
        return
    c.JupyterHub.subdomain_host = settings.subdomain_host
    # The hook service_origin() names hosts with (the hub's default), written down.
    c.JupyterHub.subdomain_hook = subdomain_hook_idna
    c.JupyterHub.cookie_host_prefix_enabled = True
    # Browsers refuse a `__Host-` cookie that is not Secure, and JupyterHub 6.1.1 marks a user server's
    # OAuth state cookie Secure only when the public URL is https: every cookie is Secure (http is
    # allowed for *.localhost only, which browsers count as a secure context).
    tornado_settings = c.JupyterHub.get("tornado_settings", {})
    c.JupyterHub.tornado_settings = {
        **tornado_settings,
        "cookie_options": {**tornado_settings.get("cookie_options", {}), **SECURE_COOKIES},
    }


def service_origin(settings: Settings, name: str) -> str:
    """The origin of the hub service `name` as browsers see it (`https://name--service.hub.example.org`),
    or "" when services share the hub's origin."""
    if not settings.subdomain_host:
        return ""
    host = urlparse(settings.subdomain_host)
    origin = f"{host.scheme}://{subdomain_hook_idna(name, host.hostname, 'service')}"
    return f"{origin}:{host.port}" if host.port else origin


def cookie_environment(settings: Settings) -> dict[str, str]:
    """What a hub service that signs people in needs beside JupyterHub's own variables: the hub
    passes its `__Host-` and Secure cookie choices to user servers but not to services."""
    if not settings.subdomain_host:
        return {}
    return {
        "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED": "1",
        "JUPYTERHUB_COOKIE_OPTIONS": json.dumps(SECURE_COOKIES),
    }
