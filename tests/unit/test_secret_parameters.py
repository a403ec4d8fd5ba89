"""The hub's secrets from SSM SecureString parameters (in-process moto): read at start, or a clear error."""

from __future__ import annotations

import socket

import pytest
from traitlets.config import Config

from hub.config import configure
from hub.secret_parameters import CONNECT_TIMEOUT, MAX_ATTEMPTS, READ_TIMEOUT, ssm_client
from hub.settings import Settings, SettingsError

PREFIX = "/ec2hub/unit/hub/"


def hub_env(tmp_path, **more: str) -> dict[str, str]:
    return {
        "EC2HUB_STATE_DIR": str(tmp_path),
        "EC2HUB_ADMIN_PASSWORD": "x" * 16,
        "EC2HUB_AWS_REGION": "us-east-1",
        "EC2HUB_AMI_ID": "ami-0123",
        "EC2HUB_SUBNET_IDS": "subnet-a",
        "EC2HUB_SECURITY_GROUP_IDS": "sg-a",
        "EC2HUB_BUCKET": "unit-data",
        "EC2HUB_USER_BOUNDARY_ARN": "arn:aws:iam::123456789012:policy/b",
        **more,
    }


def store(account, name: str, value: str) -> str:
    account.ssm.put_parameter(Name=PREFIX + name, Value=value, Type="SecureString")
    return PREFIX + name


def test_the_hub_reads_its_secrets_from_their_parameters(account, tmp_path):
    env = hub_env(
        tmp_path,
        EC2HUB_AUTH="oauth",
        EC2HUB_OAUTH_CLIENT_ID="ec2hub",
        EC2HUB_OAUTH_AUTHORIZE_URL="https://id.example.org/authorize",
        EC2HUB_OAUTH_TOKEN_URL="https://id.example.org/token",
        EC2HUB_OAUTH_USERDATA_URL="https://id.example.org/userinfo",
        EC2HUB_OAUTH_CLIENT_SECRET_PARAMETER=store(account, "oauth-client-secret", "s3cret`$(id)`"),
        EC2HUB_LDAP_SEARCH_PASSWORD_PARAMETER=store(account, "ldap-search-password", "ldap-pw"),
        EC2HUB_PROXY_AUTH_TOKEN_PARAMETER=store(account, "proxy-auth-token", "proxy-token"),
        EC2HUB_DATABASE_URL_PARAMETER=store(
            account, "database-url", "sqlite:///" + str(tmp_path / "db.sqlite")
        ),
    )
    settings = Settings.from_env(env)
    assert settings.env["EC2HUB_OAUTH_CLIENT_SECRET"] == "s3cret`$(id)`", "as stored, never expanded"
    assert settings.env["EC2HUB_LDAP_SEARCH_PASSWORD"] == "ldap-pw"
    assert settings.proxy_auth_token == "proxy-token"
    assert "proxy-token" not in repr(settings) and "db.sqlite" not in repr(settings)

    c = Config()
    configure(c, settings)
    assert c.ConfigurableHTTPProxy.auth_token == "proxy-token"
    assert c.JupyterHub.db_url == "sqlite:///" + str(tmp_path / "db.sqlite")
    assert c.OpenIDConnectAuthenticator.client_secret == "s3cret`$(id)`"


def test_without_parameters_the_hub_keeps_its_own_proxy_token_and_database(account, tmp_path):
    c = Config()
    configure(c, Settings.from_env(hub_env(tmp_path)))
    assert "auth_token" not in c.ConfigurableHTTPProxy
    assert c.JupyterHub.db_url == f"sqlite:///{tmp_path / 'hub' / 'jupyterhub.sqlite'}"


def test_a_parameter_the_hub_cannot_read_stops_it_with_what_to_fix(account, tmp_path):
    env = hub_env(tmp_path, EC2HUB_PROXY_AUTH_TOKEN_PARAMETER=PREFIX + "missing")
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    message = str(raised.value)
    assert f"EC2HUB_PROXY_AUTH_TOKEN_PARAMETER={PREFIX}missing" in message
    assert "ParameterNotFound" in message and "ssm:GetParameter" in message


def test_a_secret_set_twice_is_refused(account, tmp_path):
    env = hub_env(
        tmp_path,
        EC2HUB_PROXY_AUTH_TOKEN="in-the-environment",
        EC2HUB_PROXY_AUTH_TOKEN_PARAMETER=store(account, "proxy-auth-token", "in-ssm"),
    )
    with pytest.raises(SettingsError, match="EC2HUB_PROXY_AUTH_TOKEN and EC2HUB_PROXY_AUTH_TOKEN_PARAMETER"):
        Settings.from_env(env)


def test_an_unreachable_ssm_is_an_error_within_bounded_waits(monkeypatch, tmp_path):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with socket.socket() as closed:  # a port nothing listens on: connections are refused
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
    env = hub_env(tmp_path, EC2HUB_AWS_ENDPOINT_URL=endpoint, EC2HUB_PROXY_AUTH_TOKEN_PARAMETER=PREFIX + "x")

    config = ssm_client(env).meta.config
    assert (config.connect_timeout, config.read_timeout) == (CONNECT_TIMEOUT, READ_TIMEOUT)
    assert config.retries["total_max_attempts"] == MAX_ATTEMPTS
    with pytest.raises(SettingsError, match="cannot reach SSM"):
        Settings.from_env(env)
