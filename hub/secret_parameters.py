"""The hub's secrets from SSM Parameter Store: EC2HUB_<NAME>_PARAMETER names the SecureString parameter
that holds EC2HUB_<NAME>, so that on AWS only the parameter's name is in the hub's environment.

Terraform creates the parameters (terraform/modules/hub) and lets the hub's role read exactly those;
the hub reads them once, at start, before anything else reads its settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The settings that are secrets, each of which may come from a parameter instead of the environment.
SECRET_VARIABLES = (
    "EC2HUB_OAUTH_CLIENT_SECRET",
    "EC2HUB_LDAP_SEARCH_PASSWORD",
    "EC2HUB_PROXY_AUTH_TOKEN",
    "EC2HUB_DATABASE_URL",
)
PARAMETER_SUFFIX = "_PARAMETER"

# A hub that cannot read its secrets should say so within seconds, not hang its start.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
MAX_ATTEMPTS = 3


class SecretParameterError(ValueError):
    """A secret's parameter cannot be read; the message names the variable, the parameter and the fix."""


def parameter_names(env: Mapping[str, str]) -> dict[str, str]:
    """The secrets `env` names a parameter for: variable -> parameter name."""
    names = {}
    for variable in SECRET_VARIABLES:
        name = env.get(variable + PARAMETER_SUFFIX, "").strip()
        if not name:
            continue
        if env.get(variable):
            raise SecretParameterError(
                f"{variable} and {variable}{PARAMETER_SUFFIX} are both set: keep one"
                " (on AWS the parameter, so that the secret is not in the hub's environment)"
            )
        names[variable] = name
    return names


def ssm_client(env: Mapping[str, str], *, connect_timeout: float = CONNECT_TIMEOUT) -> Any:
    """An SSM client of the hub's region and endpoint, with bounded waits and the default credentials."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=READ_TIMEOUT,
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
    )
    return boto3.session.Session().client(
        "ssm",
        region_name=env.get("EC2HUB_AWS_REGION") or "us-east-1",
        endpoint_url=env.get("EC2HUB_AWS_ENDPOINT_URL") or None,
        config=config,
    )


def resolve_secret_parameters(env: Mapping[str, str], client: Any = None) -> dict[str, str]:
    """`env` with each secret that a parameter holds read from it (decrypted), the parameter's
    variable kept; SecretParameterError, naming what to fix, when one cannot be read."""
    names = parameter_names(env)
    resolved = dict(env)
    if not names:
        return resolved
    from botocore.exceptions import BotoCoreError, ClientError

    client = ssm_client(env) if client is None else client
    for variable, name in names.items():
        where = f"{variable}{PARAMETER_SUFFIX}={name}"
        try:
            parameter = client.get_parameter(Name=name, WithDecryption=True)["Parameter"]
        except ClientError as e:
            error = e.response.get("Error", {})
            raise SecretParameterError(
                f"{where}: the hub cannot read this parameter ({error.get('Code', 'error')}:"
                f" {error.get('Message', '')}). It must exist in the hub's region, and the hub's role"
                " needs ssm:GetParameter on it (and kms:Decrypt on a customer-managed key): Terraform"
                " grants both for the parameters it creates."
            ) from None
        except BotoCoreError as e:
            raise SecretParameterError(
                f"{where}: the hub cannot reach SSM to read this parameter ({e})."
                " Check the hub's network route to SSM (NAT gateway or VPC endpoint) and its credentials."
            ) from None
        resolved[variable] = parameter["Value"]
    return resolved
