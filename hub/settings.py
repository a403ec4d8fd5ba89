"""The platform's settings: one object, read once from EC2HUB_* environment variables."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from hub.secret_parameters import SecretParameterError, resolve_secret_parameters

REPO_ROOT = Path(__file__).resolve().parents[1]

# The admin account can do everything: its password is long (and generated when not set).
ADMIN_PASSWORD_MIN_LENGTH = 16

# A username goes into IAM tag values (letters, digits, spaces and _.:/=+-@ only), S3 keys, the
# proxy's URLs and EC2 tag filters, where `*` and `?` are wildcards. The default admits only names that
# are the same string in every one of them: lowercase (JupyterHub lowercases names at sign-in), no
# space, no wildcard, no slash, starting with a letter or digit, at most 64 characters.
DEFAULT_USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._@+-]{0,63}$"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable and the fix."""


def parse_list(value: str) -> tuple[str, ...]:
    """A comma-separated setting: its non-empty items."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def seconds_setting(env: Mapping[str, str], name: str, default: float) -> float:
    """A number of seconds above 0 from `name`, or `default` when it is unset."""
    raw = env.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = -1.0
    if not value > 0:
        raise SettingsError(f"{name} must be a number of seconds above 0, not {raw!r}")
    return value


def parse_port(env: Mapping[str, str], name: str, default: int) -> int:
    """The port number in `env[name]` (SettingsError when it is none), or `default` when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise SettingsError(f"{name}={raw!r} is not a port number (1-65535)")
    return port


def _seconds(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number of seconds") from None
    if value < 0:
        raise SettingsError(f"{name}={raw!r}: seconds cannot be negative")
    return value


def _choice(env: Mapping[str, str], name: str, choices: dict[str, str]) -> str | None:
    """One of `choices` (value -> what it means, for the message), or None when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if raw not in choices:
        options = " or ".join(f"{value!r} ({meaning})" for value, meaning in choices.items())
        raise SettingsError(f"{name}={raw!r}: use {options}")
    return raw


# What stopping does to an instance: EC2HUB_STOP_BEHAVIOUR and EC2HUB_ORPHAN_ACTION take these.
HALT_CHOICES = {"stop": "keep the disk", "terminate": "delete the disk"}


def _username_pattern(env: Mapping[str, str]) -> str:
    pattern = env.get("EC2HUB_USERNAME_PATTERN", "").strip() or DEFAULT_USERNAME_PATTERN
    try:
        re.compile(pattern)
    except re.error as e:
        raise SettingsError(f"EC2HUB_USERNAME_PATTERN={pattern!r} is not a regular expression: {e}") from None
    return pattern


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    networks = []
    for value in parse_list(env.get(name, "")):
        try:
            networks.append(str(ipaddress.ip_network(value, strict=False)))
        except ValueError:
            raise SettingsError(
                f"{name}: {value!r} is not an address or network (e.g. 10.0.0.0/24)"
            ) from None
    return tuple(networks)


def read_or_create_secret(path: Path, *, length: int = 24) -> str:
    """Return the secret stored in `path`, creating it (mode 0600) on first use.

    Generated passwords live in the state folder so that every start of the platform
    signs in with the same one; they are never written to the repository or a log.
    """
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(length)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the hub needs to know about where it runs.

    Production (Terraform) and the local cloud set the same variables; only the
    endpoint URL and the credentials differ between them.
    """

    state_dir: Path
    port: int = 8000
    bind_ip: str = "127.0.0.1"
    hub_port: int = 8081
    proxy_api_port: int = 8001
    hub_connect_url: str = ""
    # EC2HUB_SUBDOMAIN_HOST: scheme://host[:port] that each user's server and service gets a host
    # under (https://alice.hub.example.org); empty: they share the hub's origin.
    subdomain_host: str = ""
    admin_user: str = "admin"
    # Whether EC2HUB_ADMIN_USER was set: with LDAP or OAuth only a name the operator chose is admin.
    admin_user_configured: bool = False
    admin_password: str = ""
    auth: str = "signup"
    # The names the hub admits (EC2HUB_USERNAME_PATTERN), checked at sign-up, sign-in and the admin API.
    username_pattern: str = DEFAULT_USERNAME_PATTERN
    # Proxies in front of the hub (EC2HUB_TRUSTED_PROXIES, e.g. the load balancer's subnets) whose
    # X-Forwarded-For entries are believed when counting failed sign-ins per client address.
    trusted_proxies: tuple[str, ...] = ()
    hub_id: str = "ec2hub"
    aws_region: str = "us-east-1"
    aws_endpoint_url: str = ""
    ami_id: str = ""
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    # Groups Dask schedulers and workers carry beside security_group_ids (cluster traffic).
    cluster_security_group_ids: tuple[str, ...] = ()
    bucket: str = ""
    user_boundary_arn: str = ""
    # EC2Spawner options, None where the environment does not set them: the spawner's own defaults
    # (spawner/config.py) apply, written down there once.
    instance_type: str | None = None
    stop_behaviour: str | None = None
    # Lifecycle timing (seconds): EC2 start, Jupyter answering, the hub's checks of running servers.
    start_timeout: float | None = None
    http_timeout: float | None = None
    poll_interval: float | None = None
    # Orphans: instances no hub server owns are stopped (or terminated) after this grace period.
    orphan_grace: float = 3600
    orphan_action: str = "stop"
    reconcile_every: float = 300
    # Idle culling: servers idle this long are stopped (0: never); checked this often.
    idle_timeout: float = 3600
    idle_check_every: float = 300
    # How often user servers tell the hub they are active (a busy kernel counts).
    activity_interval: float = 300
    proxy_command: tuple[str, ...] = field(default_factory=tuple)
    # The token between the hub and its proxy (EC2HUB_PROXY_AUTH_TOKEN); empty: JupyterHub makes one.
    proxy_auth_token: str = field(default="", repr=False)
    # The hub's database (EC2HUB_DATABASE_URL); empty: SQLite in the state folder.
    database_url: str = field(default="", repr=False)
    # Instances kept booted ahead of demand, per size slug (EC2HUB_HOT_POOL="medium=2,small=1").
    hot_pool: dict[str, int] = field(default_factory=dict)
    # The environment these settings were read from, for the parts that read variables of their own
    # (EC2HUB_LDAP_*, EC2HUB_OAUTH_*, the services' ports): the one reader of os.environ is from_env.
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def default(cls, name: str):
        """The default of the setting `name` (one place for each default)."""
        return cls.__dataclass_fields__[name].default

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        # Secrets that SSM parameters hold (EC2HUB_*_PARAMETER) are read first, once.
        try:
            env = resolve_secret_parameters(os.environ if env is None else env)
        except SecretParameterError as e:
            raise SettingsError(str(e)) from None
        state_dir = Path(env.get("EC2HUB_STATE_DIR") or REPO_ROOT / "state").resolve()
        secrets_dir = state_dir / "secrets"
        admin_password = env.get("EC2HUB_ADMIN_PASSWORD") or read_or_create_secret(
            secrets_dir / "admin-password", length=ADMIN_PASSWORD_MIN_LENGTH
        )
        if len(admin_password) < ADMIN_PASSWORD_MIN_LENGTH:
            raise SettingsError(
                f"EC2HUB_ADMIN_PASSWORD must be at least {ADMIN_PASSWORD_MIN_LENGTH} characters"
                " (unset it to have one generated)"
            )
        d = cls.default
        local_proxy = REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
        proxy_command = parse_list(env.get("EC2HUB_PROXY_COMMAND", "")) or (
            (str(local_proxy),) if local_proxy.exists() else ("configurable-http-proxy",)
        )
        return cls(
            state_dir=state_dir,
            port=parse_port(env, "EC2HUB_PORT", d("port")),
            bind_ip=env.get("EC2HUB_BIND_IP", d("bind_ip")),
            hub_port=parse_port(env, "EC2HUB_HUB_PORT", d("hub_port")),
            proxy_api_port=parse_port(env, "EC2HUB_PROXY_API_PORT", d("proxy_api_port")),
            hub_connect_url=env.get("EC2HUB_HUB_CONNECT_URL", ""),
            subdomain_host=_subdomain_host(
                env.get("EC2HUB_SUBDOMAIN_HOST", ""), parse_port(env, "EC2HUB_PORT", d("port"))
            ),
            admin_user=env.get("EC2HUB_ADMIN_USER", "").strip() or d("admin_user"),
            admin_user_configured=bool(env.get("EC2HUB_ADMIN_USER", "").strip()),
            admin_password=admin_password,
            auth=env.get("EC2HUB_AUTH", d("auth")),
            username_pattern=_username_pattern(env),
            trusted_proxies=_networks(env, "EC2HUB_TRUSTED_PROXIES"),
            hub_id=env.get("EC2HUB_HUB_ID", d("hub_id")),
            aws_region=env.get("EC2HUB_AWS_REGION", d("aws_region")),
            aws_endpoint_url=env.get("EC2HUB_AWS_ENDPOINT_URL", ""),
            ami_id=env.get("EC2HUB_AMI_ID", ""),
            subnet_ids=parse_list(env.get("EC2HUB_SUBNET_IDS", "")),
            security_group_ids=parse_list(env.get("EC2HUB_SECURITY_GROUP_IDS", "")),
            cluster_security_group_ids=parse_list(env.get("EC2HUB_CLUSTER_SECURITY_GROUP_IDS", "")),
            bucket=env.get("EC2HUB_BUCKET", ""),
            user_boundary_arn=env.get("EC2HUB_USER_BOUNDARY_ARN", ""),
            instance_type=env.get("EC2HUB_INSTANCE_TYPE") or None,
            stop_behaviour=_choice(env, "EC2HUB_STOP_BEHAVIOUR", HALT_CHOICES),
            start_timeout=_seconds(env, "EC2HUB_START_TIMEOUT", None),
            http_timeout=_seconds(env, "EC2HUB_HTTP_TIMEOUT", None),
            poll_interval=_seconds(env, "EC2HUB_POLL_INTERVAL", None),
            orphan_grace=_seconds(env, "EC2HUB_ORPHAN_GRACE", d("orphan_grace")),
            orphan_action=_choice(env, "EC2HUB_ORPHAN_ACTION", HALT_CHOICES) or d("orphan_action"),
            reconcile_every=_seconds(env, "EC2HUB_RECONCILE_EVERY", d("reconcile_every")),
            idle_timeout=_seconds(env, "EC2HUB_IDLE_TIMEOUT", d("idle_timeout")),
            idle_check_every=_seconds(env, "EC2HUB_IDLE_CHECK_EVERY", d("idle_check_every")),
            activity_interval=_seconds(env, "EC2HUB_ACTIVITY_INTERVAL", d("activity_interval")),
            proxy_command=proxy_command,
            proxy_auth_token=env.get("EC2HUB_PROXY_AUTH_TOKEN", ""),
            database_url=env.get("EC2HUB_DATABASE_URL", ""),
            hot_pool=_hot_pool(env.get("EC2HUB_HOT_POOL", "")),
            env=dict(env),
        )

    @property
    def url(self) -> str:
        """Where the hub's proxy listens."""
        return f"http://{self.bind_ip}:{self.port}"

    @property
    def reachable_host(self) -> str:
        """The hub machine's address as user instances reach it (where they reach the hub's API)."""
        host = urlparse(self.hub_connect_url).hostname if self.hub_connect_url else self.bind_ip
        if host in (None, "", "0.0.0.0"):  # noqa: S104 (a check, not a bind)
            raise SettingsError(
                "EC2HUB_HUB_CONNECT_URL is needed when the hub binds 0.0.0.0: the address instances reach"
            )
        return host

    @property
    def public_url(self) -> str:
        """Where people open the hub: the subdomain host when there is one."""
        return self.subdomain_host or self.url


def _subdomain_host(value: str, port: int) -> str:
    """EC2HUB_SUBDOMAIN_HOST checked; `port`: the hub's, which a *.localhost host must name."""
    raw = value.strip().rstrip("/")
    if not raw:
        return ""
    try:
        parsed = urlparse(raw)
        parsed.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        parsed = None
    if (
        parsed is None
        or parsed.scheme not in ("http", "https")
        or not parsed.hostname
        or parsed.path
        or parsed.query
        or parsed.fragment
        or parsed.username
        or parsed.password
    ):
        raise SettingsError(
            f"EC2HUB_SUBDOMAIN_HOST={value!r} is not scheme://host[:port]"
            " (e.g. https://hub.example.org, or http://hub.localhost:8000 on this machine)"
        )
    on_this_machine = parsed.hostname == "localhost" or parsed.hostname.endswith(".localhost")
    if parsed.scheme == "http" and not on_this_machine:
        # The hub's cookies are `__Host-` and Secure, which browsers accept over http on loopback only.
        raise SettingsError(
            f"EC2HUB_SUBDOMAIN_HOST={value!r}: https is needed (http only for *.localhost on this machine)"
        )
    if on_this_machine and (parsed.port or {"http": 80, "https": 443}[parsed.scheme]) != port:
        # Browsers reach *.localhost on loopback, where only the hub's own port (EC2HUB_PORT) answers.
        raise SettingsError(
            f"EC2HUB_SUBDOMAIN_HOST={value!r}: on this machine its port is the hub's,"
            f" EC2HUB_PORT={port} (e.g. http://hub.localhost:{port})"
        )
    return raw.lower()


def _hot_pool(value: str) -> dict[str, int]:
    pool = {}
    for entry in parse_list(value):
        slug, _, count = entry.partition("=")
        if not (slug and count.isdigit()):
            raise SettingsError(f"EC2HUB_HOT_POOL: {entry!r} is not SIZE=COUNT (e.g. medium=2)")
        pool[slug] = int(count)
    return pool
