"""Turns Settings into JupyterHub configuration; jupyterhub_config.py calls `configure` and nothing else."""

from __future__ import annotations

from traitlets.config import Config

from hub.auth import configure_authentication
from hub.origins import configure_origins
from hub.settings import Settings, SettingsError

# JupyterHub's own scopes of a user server's token, which access to the hub's services joins.
SERVER_SCOPES = ["users:activity!user", "access:servers!server"]


def grant_service_access(c: Config, scopes: list[str]) -> None:
    """Every user, and the token of every user server, may use the services of `scopes`
    (`access:services!service=...`): JupyterHub gives users access to no service by default."""
    if not scopes:
        return
    c.JupyterHub.load_roles.append({"name": "user", "scopes": ["self", *scopes]})
    c.JupyterHub.load_roles.append({"name": "server", "scopes": [*SERVER_SCOPES, *scopes]})


def configure(c: Config, settings: Settings) -> None:
    """Apply `settings` to the JupyterHub config object `c`."""
    missing = [
        name
        for name, value in (
            ("EC2HUB_AMI_ID", settings.ami_id),
            ("EC2HUB_SUBNET_IDS", settings.subnet_ids),
            ("EC2HUB_SECURITY_GROUP_IDS", settings.security_group_ids),
            ("EC2HUB_BUCKET", settings.bucket),
            ("EC2HUB_USER_BOUNDARY_ARN", settings.user_boundary_arn),
        )
        if not value
    ]
    if missing:
        raise SettingsError(
            f"{', '.join(missing)} not set: run the platform with `make up` (local cloud) or export"
            " the outputs of `terraform apply`"
        )
    hub_dir = settings.state_dir / "hub"
    hub_dir.mkdir(parents=True, exist_ok=True)

    c.JupyterHub.bind_url = settings.url
    # The hub API listens where user instances can reach it: loopback locally, the VPC on AWS
    # (EC2HUB_BIND_IP=0.0.0.0 in the hub image, with EC2HUB_HUB_CONNECT_URL its private address).
    c.JupyterHub.hub_bind_url = f"http://{settings.bind_ip}:{settings.hub_port}"
    if settings.hub_connect_url:
        c.JupyterHub.hub_connect_url = settings.hub_connect_url
    c.JupyterHub.db_url = settings.database_url or f"sqlite:///{hub_dir / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(hub_dir / "jupyterhub_cookie_secret")
    # Instances outlive a hub restart: a restart must not stop every user's server.
    c.JupyterHub.cleanup_servers = False
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
    c.ConfigurableHTTPProxy.command = list(settings.proxy_command)
    c.ConfigurableHTTPProxy.pid_file = str(hub_dir / "proxy.pid")
    if settings.proxy_auth_token:
        c.ConfigurableHTTPProxy.auth_token = settings.proxy_auth_token

    configure_origins(c, settings)
    configure_authentication(c, settings)

    c.JupyterHub.spawner_class = "ec2"
    c.EC2Spawner.region = settings.aws_region
    c.EC2Spawner.endpoint_url = settings.aws_endpoint_url
    c.EC2Spawner.image_id = settings.ami_id
    c.EC2Spawner.subnet_ids = list(settings.subnet_ids)
    c.EC2Spawner.security_group_ids = list(settings.security_group_ids)
    c.EC2Spawner.cluster_security_group_ids = list(settings.cluster_security_group_ids)
    c.EC2Spawner.hub_id = settings.hub_id
    c.EC2Spawner.bucket = settings.bucket
    c.EC2Spawner.user_boundary_arn = settings.user_boundary_arn
    # Only what the environment sets: EC2Spawner's own defaults hold the rest.
    chosen = {
        "instance_type": settings.instance_type,
        "stop_behaviour": settings.stop_behaviour,
        "start_timeout": None if settings.start_timeout is None else int(settings.start_timeout),
        "http_timeout": None if settings.http_timeout is None else int(settings.http_timeout),
        "poll_interval": settings.poll_interval,
    }
    for option, value in chosen.items():
        if value is not None:
            c.EC2Spawner[option] = value
    if settings.hot_pool:
        c.EC2Spawner.hot_pool = settings.hot_pool
    c.EC2Spawner.environment = {
        **c.EC2Spawner.get("environment", {}),
        "JUPYTERHUB_ACTIVITY_INTERVAL": str(int(settings.activity_interval)),
    }

    from hub.culling import configure_idle_culler

    configure_idle_culler(c, settings)

    from hub.instances import HUB_TEMPLATES, configure_instances_service

    configure_instances_service(c, settings)

    from hub.pool import configure_pool_service

    configure_pool_service(c, settings)

    from hub.gateway import configure_gateway_service
    from hub.jobs import configure_jobs_service

    grant_service_access(c, configure_gateway_service(c, settings) + configure_jobs_service(c, settings))

    from hub.costs import costs_db_url
    from hub.costs.budgets import BudgetSettings
    from hub.costs.in_hub import HubCosts

    budgets = BudgetSettings.from_env(settings.env)
    costs = HubCosts(budgets, costs_db_url(settings, settings.env), settings.aws_region)
    # The spawn form shows the month's spend (and the budgets) above the sizes.
    c.EC2Spawner.options_form = costs.spawn_form
    if budgets is not None:
        # Over a hard limit, the larger sizes do not start (checked after the size is chosen); over
        # a soft one, every hub page has a banner (hub/templates/page.html).
        c.EC2Spawner.pre_spawn_hook = costs.check_server
        c.Authenticator.post_auth_hook = costs.post_auth_hook
        c.JupyterHub.template_vars = {
            **c.JupyterHub.get("template_vars", {}),
            "ec2hub_budget_notice": costs.banner,
        }
    c.JupyterHub.template_paths = [str(HUB_TEMPLATES), *c.JupyterHub.get("template_paths", [])]
