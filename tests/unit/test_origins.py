"""EC2HUB_SUBDOMAIN_HOST: each user's server and each service on a host of its own, or a warning."""

from __future__ import annotations

import json
import logging

import pytest
from traitlets.config import Config

from hub.config import configure
from hub.settings import Settings, SettingsError


def hub_env(tmp_path, **more: str) -> dict[str, str]:
    return {
        "EC2HUB_STATE_DIR": str(tmp_path),
        "EC2HUB_AMI_ID": "ami-1",
        "EC2HUB_SUBNET_IDS": "subnet-a",
        "EC2HUB_SECURITY_GROUP_IDS": "sg-1",
        "EC2HUB_BUCKET": "data",
        "EC2HUB_USER_BOUNDARY_ARN": "arn:aws:iam::1:policy/b",
        "EC2HUB_ADMIN_PASSWORD": "a long admin passphrase 1",
        **more,
    }


def configured(tmp_path, **more: str) -> Config:
    c = Config()
    configure(c, Settings.from_env(hub_env(tmp_path, **more)))
    return c


def service(c: Config, name: str) -> dict:
    [spec] = [s for s in c.JupyterHub.services.get_value([]) if s["name"] == name]
    return spec


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://hub.example.org", "https://hub.example.org"),
        ("https://Hub.Example.org/", "https://hub.example.org"),
        ("http://hub.localhost:8000", "http://hub.localhost:8000"),
        ("", ""),
    ],
)
def test_the_subdomain_host_is_a_scheme_and_a_host(tmp_path, value, expected):
    settings = Settings.from_env(hub_env(tmp_path, EC2HUB_SUBDOMAIN_HOST=value))
    assert settings.subdomain_host == expected
    assert settings.public_url == (expected or settings.url)


@pytest.mark.parametrize(
    "value",
    ["hub.example.org", "ftp://hub.example.org", "https://hub.example.org/hub", "https://:80", "https://h:x"],
)
def test_a_subdomain_host_that_is_not_one_is_refused_with_an_example(tmp_path, value):
    with pytest.raises(SettingsError, match=r"EC2HUB_SUBDOMAIN_HOST=.*e\.g\. https://hub\.example\.org"):
        Settings.from_env(hub_env(tmp_path, EC2HUB_SUBDOMAIN_HOST=value))


def test_plain_http_is_for_localhost_only(tmp_path):
    # Browsers take the hub's Secure `__Host-` cookies over http from loopback names only.
    with pytest.raises(SettingsError, match="https is needed"):
        Settings.from_env(hub_env(tmp_path, EC2HUB_SUBDOMAIN_HOST="http://hub.example.org"))


def test_on_this_machine_the_subdomain_host_names_the_hubs_port(tmp_path):
    with pytest.raises(SettingsError, match=r"EC2HUB_PORT=8123 \(e\.g\. http://hub\.localhost:8123\)"):
        Settings.from_env(
            hub_env(tmp_path, EC2HUB_PORT="8123", EC2HUB_SUBDOMAIN_HOST="http://hub.localhost:8000")
        )
    # On AWS the load balancer listens on 443 in front of the hub's 8000.
    settings = Settings.from_env(hub_env(tmp_path, EC2HUB_SUBDOMAIN_HOST="https://hub.example.org"))
    assert settings.port == 8000


def test_with_a_subdomain_host_servers_and_services_get_hosts_of_their_own(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        c = configured(tmp_path, EC2HUB_SUBDOMAIN_HOST="http://hub.localhost:8000")
    assert c.JupyterHub.subdomain_host == "http://hub.localhost:8000"
    assert c.JupyterHub.cookie_host_prefix_enabled is True
    assert c.JupyterHub.tornado_settings["cookie_options"] == {"secure": True}
    assert "EC2HUB_SUBDOMAIN_HOST is not set" not in caplog.text

    # The Instances page, linked from the navigation bar on its own host, and the dashboards relay,
    # whose address Dask gives users, are where JupyterHub routes them (its "idna" hook).
    assert c.JupyterHub.template_vars["ec2hub_instances_url"] == (
        "http://instances--service.hub.localhost:8000/services/instances/"
    )
    assert c.EC2Spawner.environment["DASK_GATEWAY__PUBLIC_ADDRESS"] == (
        "http://dask-dashboards--service.hub.localhost:8000/services/dask-dashboards"
    )
    # Services that sign people in keep `__Host-` cookies too (the hub tells only user servers).
    for name in ("instances", "dask-dashboards"):
        environment = service(c, name)["environment"]
        assert environment["JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED"] == "1"
        assert json.loads(environment["JUPYTERHUB_COOKIE_OPTIONS"]) == {"secure": True}


def test_without_one_everything_shares_the_hubs_origin_and_the_log_says_what_that_means(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        c = configured(tmp_path, EC2HUB_PORT="8123")
    assert not {"subdomain_host", "cookie_host_prefix_enabled", "tornado_settings"} & set(c.JupyterHub)
    assert "every user's server shares the hub's origin (http://127.0.0.1:8123)" in caplog.text
    assert "only when all its users are trusted admins" in caplog.text
    assert "http://hub.localhost:8123" in caplog.text

    assert c.JupyterHub.template_vars["ec2hub_instances_url"] == "/services/instances/"
    assert c.EC2Spawner.environment["DASK_GATEWAY__PUBLIC_ADDRESS"] == (
        "http://127.0.0.1:8123/services/dask-dashboards"
    )
    assert "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED" not in service(c, "instances")["environment"]
