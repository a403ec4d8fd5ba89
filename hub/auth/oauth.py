"""Sign-in through an OpenID Connect provider, whose groups claim becomes the user's hub groups.

Environment variables (read by `configure` when the hub starts; the client secret comes from the
environment only, never the repo):

- EC2HUB_OAUTH_ISSUER: the provider's issuer URL, e.g. `https://login.example.org/realms/science`.
  The hub reads `<issuer>/.well-known/openid-configuration` at start (10 s timeout; it refuses to
  start if the document cannot be read or names another issuer) for the three endpoints below.
- EC2HUB_OAUTH_AUTHORIZE_URL, EC2HUB_OAUTH_TOKEN_URL, EC2HUB_OAUTH_USERDATA_URL: the authorization,
  token and userinfo endpoints; each one set overrides discovery. With all three set the issuer is
  not needed (a plain OAuth 2 provider whose user endpoint answers JSON).
- EC2HUB_OAUTH_CLIENT_ID, EC2HUB_OAUTH_CLIENT_SECRET: the hub's client at the provider (confidential
  client, authorization-code flow with PKCE). OAUTH_CLIENT_ID / OAUTH_CLIENT_SECRET, the names
  oauthenticator reads, are used when these are unset.
- EC2HUB_OAUTH_CALLBACK_URL: the redirect URI registered at the provider (default: the hub's URL +
  `/hub/oauth_callback`; set it when the hub is reached through another URL, e.g. HTTPS at a load
  balancer).
- EC2HUB_OAUTH_USERNAME_CLAIM: the userinfo claim that becomes the hub username (default
  `preferred_username`). Pick a claim that never changes and only the provider's administrators
  set: `sub` or an employee id. At many providers people can edit `preferred_username`, and a user
  who could rename themselves could take another person's hub account (and its data). A name
  outside the hub's username rule (EC2HUB_USERNAME_PATTERN) is refused with a page saying so.
- EC2HUB_OAUTH_GROUPS_CLAIM: the userinfo claim listing the user's groups (default `groups`). Its
  values become the user's hub groups at each sign-in (sizes, S3 group prefixes, admins); the
  hub's own group membership of OAuth users follows the provider.
- EC2HUB_OAUTH_SCOPES: the scopes asked for, separated by spaces or commas (default `openid
  profile`). Add the provider's groups scope when it sends the groups claim only on request
  (Okta, Dex, authentik: `openid profile groups`).
- EC2HUB_OAUTH_ALLOWED_GROUPS: comma-separated groups whose members may use the hub.
- EC2HUB_OAUTH_ALLOWED_USERS: comma-separated usernames who may use the hub.
  If both are empty, every account the provider authenticates may use the hub. Anyone else who
  signs in at the provider gets a 403 page saying they are not in an allowed group.
- EC2HUB_ADMIN_GROUP: optional, a group whose members are hub admins (and may use the hub), checked
  at each sign-in, so leaving the group ends admin rights.
- EC2HUB_ADMIN_USER: optional, a provider account that is always admin. Unset, nobody is admin by
  name: an account the provider happens to call `admin` is an ordinary user.
- EC2HUB_OAUTH_LOGIN_SERVICE: the provider's name on the sign-in button, "Sign in with <name>"
  (default `OpenID Connect`).
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from traitlets import Unicode
from traitlets.config import Config

from hub.auth.names import UsernameRule
from hub.settings import Settings, SettingsError, parse_list

DISCOVERY_TIMEOUT = 10.0
DEFAULT_SCOPES = ("openid", "profile")

# The discovery document's names for the three endpoints, with the variables that override them.
ENDPOINTS = {
    "authorize_url": ("authorization_endpoint", "EC2HUB_OAUTH_AUTHORIZE_URL"),
    "token_url": ("token_endpoint", "EC2HUB_OAUTH_TOKEN_URL"),
    "userdata_url": ("userinfo_endpoint", "EC2HUB_OAUTH_USERDATA_URL"),
}

log = logging.getLogger("JupyterHub")


class OpenIDConnectAuthenticator(UsernameRule, GenericOAuthenticator):
    """GenericOAuthenticator with the groups read from one userinfo claim (a name with dots or
    slashes works too), the hub's username rule, and refusal pages that say why: not in an allowed
    group, or a name the hub cannot use."""

    groups_claim = Unicode(
        "groups",
        config=True,
        help="""Userinfo claim holding the user's groups (a list of names, or one name), which become
        the user's hub groups at each sign-in when `manage_groups` is True. Default `groups`.
        Example: `c.OpenIDConnectAuthenticator.groups_claim = "https://example.org/groups"`.""",
    )

    async def get_user_groups(self, auth_state: dict) -> set[str]:
        claims = auth_state.get(self.user_auth_state_key) or {}
        groups = claims.get(self.groups_claim)
        if groups is None:
            self.log.warning(
                "The provider sent no %r claim for %r (claims: %s): the user gets no groups."
                " Ask for the provider's groups scope (EC2HUB_OAUTH_SCOPES) or name the claim"
                " (EC2HUB_OAUTH_GROUPS_CLAIM).",
                self.groups_claim,
                claims.get(self.username_claim) if isinstance(self.username_claim, str) else "?",
                ", ".join(sorted(claims)),
            )
            return set()
        if isinstance(groups, str):
            return {groups}
        return {str(group) for group in groups}

    async def check_allowed(self, username, auth_model):
        if await super().check_allowed(username, auth_model):
            return True
        # The parent's refusal is a generic 403; this one tells the person what to ask for.
        raise web.HTTPError(403, self.refusal_message(username), reason="Forbidden")

    def refusal_message(self, username: str) -> str:
        if self.allowed_groups:
            groups = ", ".join(sorted(self.allowed_groups))
            return (
                f"You signed in as {username}, but {username} is not in a group allowed to use this hub"
                f" ({groups}). Ask an administrator to add your account to one of these groups."
            )
        return (
            f"You signed in as {username}, but {username} is not on the list of people allowed to use"
            " this hub. Ask an administrator to add your account."
        )


@dataclass(frozen=True)
class OAuthSettings:
    """What the hub needs to talk to the provider, from the EC2HUB_OAUTH_* variables."""

    authorize_url: str
    token_url: str
    userdata_url: str
    client_id: str
    client_secret: str
    callback_url: str
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    allowed_groups: tuple[str, ...] = ()
    allowed_users: tuple[str, ...] = ()
    admin_group: str = ""
    login_service: str = "OpenID Connect"

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        settings: Settings,
        discover: Callable[[str], dict] | None = None,
    ) -> OAuthSettings:
        """Parse and check the variables; reads the issuer's discovery document (with `discover`,
        default `read_discovery`) only when an endpoint is not set explicitly."""

        def get(name: str, default: str = "") -> str:
            return env.get(name, "").strip() or default

        endpoints = {key: get(variable) for key, (_, variable) in ENDPOINTS.items()}
        issuer = get("EC2HUB_OAUTH_ISSUER")
        if not all(endpoints.values()):
            if not issuer:
                missing = [ENDPOINTS[key][1] for key, url in endpoints.items() if not url]
                raise SettingsError(
                    "EC2HUB_AUTH=oauth needs EC2HUB_OAUTH_ISSUER (the OpenID Connect issuer URL)"
                    f" or explicit endpoints: {', '.join(missing)} not set"
                )
            document = (discover or read_discovery)(issuer)
            for key, (field, _) in ENDPOINTS.items():
                if not endpoints[key]:
                    endpoints[key] = document.get(field) or ""
                    if not endpoints[key]:
                        raise SettingsError(
                            f"The discovery document of {issuer} has no {field}: set {ENDPOINTS[key][1]}"
                        )
        for key, url in endpoints.items():
            _require_http_url(ENDPOINTS[key][1], url)

        client_id = get("EC2HUB_OAUTH_CLIENT_ID") or get("OAUTH_CLIENT_ID")
        client_secret = env.get("EC2HUB_OAUTH_CLIENT_SECRET") or env.get("OAUTH_CLIENT_SECRET") or ""
        if not client_id or not client_secret:
            raise SettingsError(
                "EC2HUB_AUTH=oauth needs the hub's client at the provider: set EC2HUB_OAUTH_CLIENT_ID"
                " and EC2HUB_OAUTH_CLIENT_SECRET in the environment (never in the repository)"
            )
        callback_url = get("EC2HUB_OAUTH_CALLBACK_URL", f"{settings.url}/hub/oauth_callback")
        _require_http_url("EC2HUB_OAUTH_CALLBACK_URL", callback_url)
        scopes = tuple(get("EC2HUB_OAUTH_SCOPES").replace(",", " ").split()) or DEFAULT_SCOPES
        return cls(
            client_id=client_id,
            client_secret=client_secret,
            callback_url=callback_url,
            username_claim=get("EC2HUB_OAUTH_USERNAME_CLAIM", "preferred_username"),
            groups_claim=get("EC2HUB_OAUTH_GROUPS_CLAIM", "groups"),
            scopes=scopes,
            allowed_groups=parse_list(get("EC2HUB_OAUTH_ALLOWED_GROUPS")),
            allowed_users=parse_list(get("EC2HUB_OAUTH_ALLOWED_USERS")),
            admin_group=get("EC2HUB_ADMIN_GROUP"),
            login_service=get("EC2HUB_OAUTH_LOGIN_SERVICE", "OpenID Connect"),
            **endpoints,
        )


def _require_http_url(variable: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"{variable}={url!r} is not an http(s) URL")


def read_discovery(issuer: str, timeout: float = DISCOVERY_TIMEOUT) -> dict:
    """The issuer's OpenID Connect discovery document, or SettingsError saying what went wrong."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    _require_http_url("EC2HUB_OAUTH_ISSUER", url)
    fix = (
        "check EC2HUB_OAUTH_ISSUER, or set EC2HUB_OAUTH_AUTHORIZE_URL, EC2HUB_OAUTH_TOKEN_URL and"
        " EC2HUB_OAUTH_USERDATA_URL"
    )
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) checked above
            document = json.load(response)
    except (OSError, ValueError) as e:
        raise SettingsError(f"Could not read {url} ({e}): {fix}") from None
    if not isinstance(document, dict):
        raise SettingsError(f"{url} is not an OpenID Connect discovery document: {fix}")
    # OpenID Connect Discovery 1.0 §4.3: the document must name the issuer it was fetched for.
    named = str(document.get("issuer", ""))
    if named.rstrip("/") != issuer.rstrip("/"):
        raise SettingsError(f"{url} names the issuer {named!r}, not {issuer!r}: {fix}")
    return document


def configure(c: Config, settings: Settings, env: Mapping[str, str] | None = None) -> None:
    """Configure OpenIDConnectAuthenticator from the EC2HUB_OAUTH_* variables of `env` (default:
    the environment the settings were read from)."""
    oauth = OAuthSettings.from_env(settings.env if env is None else env, settings)

    a = c.OpenIDConnectAuthenticator
    c.JupyterHub.authenticator_class = OpenIDConnectAuthenticator
    a.login_service = oauth.login_service
    a.authorize_url = oauth.authorize_url
    a.token_url = oauth.token_url
    a.userdata_url = oauth.userdata_url
    a.client_id = oauth.client_id
    a.client_secret = oauth.client_secret
    a.oauth_callback_url = oauth.callback_url
    a.scope = list(oauth.scopes)
    a.username_claim = oauth.username_claim
    # The provider owns group membership: the hub follows it at every sign-in.
    a.manage_groups = True
    a.groups_claim = oauth.groups_claim
    a.allowed_groups = set(oauth.allowed_groups)
    a.allowed_users = set(oauth.allowed_users)
    if oauth.admin_group:
        a.admin_groups = {oauth.admin_group}
    a.custom_403_message = "Your account is not allowed to use this hub. Ask an administrator."
    open_to_all = not (oauth.allowed_groups or oauth.allowed_users)
    a.allow_all = open_to_all
    if open_to_all:
        log.warning(
            "EC2HUB_OAUTH_ALLOWED_GROUPS and EC2HUB_OAUTH_ALLOWED_USERS are empty: every account"
            " %s authenticates may use the hub",
            urlsplit(oauth.authorize_url).netloc,
        )
