"""Sign-in against an LDAP directory, whose groups become hub groups (sizes, S3 group prefixes, admins).

Environment variables (read by `configure`; passwords come from the environment only, never the repo):

- EC2HUB_LDAP_URL: the directory, `ldap://host[:port]` (port 389) or `ldaps://host[:port]` (port 636).
- EC2HUB_LDAP_TLS: `starttls` (default for ldap://), `ldaps` (the only one for ldaps://) or `none`
  (plain text: passwords cross the network readable; only for a directory on the same host).
- EC2HUB_LDAP_CA_FILE: PEM file of the CA that signed the directory's certificate (default: the
  system's CAs). The certificate is always verified, host name included, unless TLS is `none`.
- EC2HUB_LDAP_BIND_DN_TEMPLATE: the user's DN from the sign-in name, e.g.
  `uid={username},ou=people,dc=example,dc=org`. Set this, or the search variables below.
- EC2HUB_LDAP_SEARCH_BASE: search mode: where to look users up (`ou=people,dc=example,dc=org`).
- EC2HUB_LDAP_SEARCH_USER_DN: search mode: the service account that looks users up (empty: anonymous).
- EC2HUB_LDAP_SEARCH_PASSWORD: search mode: that account's password.
- EC2HUB_LDAP_USERNAME_ATTRIBUTE: the attribute holding the sign-in name (default `uid`; Active
  Directory: `sAMAccountName`); also the value posixGroup `memberUid` is matched against.
- EC2HUB_LDAP_GROUP_BASE: where groups live (`ou=groups,dc=example,dc=org`). A user's groups are
  the groupOfNames (`member`), groupOfUniqueNames (`uniqueMember`) and posixGroup (`memberUid`)
  under it; their `cn` become the user's hub groups at each sign-in. Empty: groups are not read from
  the directory and admins manage hub groups in the hub.
- EC2HUB_ADMIN_GROUP: optional, the `cn` of a group whose members are hub admins (checked at each
  sign-in, so leaving the group ends admin rights). Needs EC2HUB_LDAP_GROUP_BASE.
- EC2HUB_ADMIN_USER: optional, a directory account that is always admin. Unset, nobody is admin by
  name: an account the directory happens to call `admin` is an ordinary user.

Everyone who can sign in to the directory may use the hub; the groups decide what they may do.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import (
    LDAPBindError,
    LDAPCommunicationError,
    LDAPResponseTimeoutError,
    LDAPStartTLSError,
)
from ldap3.core.tls import Tls
from ldap3.utils.conv import escape_filter_chars
from ldapauthenticator import LDAPAuthenticator
from ldapauthenticator.ldapauthenticator import TlsStrategy
from tornado import web
from traitlets import Float, Int, Unicode
from traitlets.config import Config

from hub.auth.names import UsernameRule
from hub.auth.throttle import ThrottledLoginHandler, ThrottledSignIn
from hub.settings import Settings, SettingsError

UNREACHABLE_MESSAGE = "The sign-in directory (LDAP) cannot be reached right now; try again in a few minutes."

# What ldap3 raises when the directory is down, does not answer in time or fails the TLS handshake.
DIRECTORY_DOWN = (LDAPCommunicationError, LDAPResponseTimeoutError, LDAPStartTLSError, OSError)

# Carries the groups out of the parent's authenticate(); ':' cannot occur in an LDAP attribute name.
GROUPS_KEY = "ec2hub:groups"

TLS_CHOICES = {
    "none": TlsStrategy.insecure,
    "starttls": TlsStrategy.before_bind,
    "ldaps": TlsStrategy.on_connect,
}


class DirectoryUnreachable(web.HTTPError):
    """The directory could not be asked: HTTP 503 with a message for the person signing in."""

    def __init__(self) -> None:
        super().__init__(503, UNREACHABLE_MESSAGE, reason="Sign-in directory unreachable")


class DirectoryLoginHandler(ThrottledLoginHandler):
    """The sign-in page: failures throttled (hub/auth/throttle.py), and when the directory is down,
    says so on the form instead of an error page (not counted as a failure)."""

    async def post(self):
        try:
            await super().post()
        except DirectoryUnreachable as e:
            self.set_status(e.status_code)
            username = self.get_argument("username", "", strip=True)[:64]
            self.finish(await self._render(login_error=e.log_message, username=username))


class DirectoryAuthenticator(UsernameRule, ThrottledSignIn, LDAPAuthenticator):
    """ldapauthenticator 2.0.2 plus what it lacks: hub groups and admins from directory groups,
    bounded timeouts, LDAP calls off the event loop, a clear message when the directory is down, the
    hub's username rule and failed sign-ins throttled before they reach the directory (whose own
    lockout, if it has one, would otherwise be anyone's to trigger through the hub)."""

    group_search_base = Unicode(
        "",
        config=True,
        help="""DN under which the user's groups are searched (with `group_search_filter`); their `cn`
        become the user's hub groups at each sign-in. Empty (default): groups are not read.
        Example: `c.DirectoryAuthenticator.group_search_base = "ou=groups,dc=example,dc=org"`.""",
    )
    admin_group = Unicode(
        "",
        config=True,
        help="""`cn` of the directory group whose members are hub admins, decided at each sign-in
        (members of `admin_users` stay admins). Empty (default): admins are `admin_users` only.
        Example: `c.DirectoryAuthenticator.admin_group = "hub-admins"`.""",
    )
    connect_timeout = Float(
        5.0,
        config=True,
        help="""Seconds to wait for the TCP connection to the directory (default 5).
        Example: `c.DirectoryAuthenticator.connect_timeout = 3`.""",
    )
    response_timeout = Int(
        10,
        min=1,
        config=True,
        help="""Whole seconds (ldap3 sets them on the socket) to wait for each answer of the directory
        (default 10); a sign-in that waits longer fails with the "cannot be reached" message.
        Example: `c.DirectoryAuthenticator.response_timeout = 5`.""",
    )
    concurrent_sign_ins = Int(
        8,
        config=True,
        help="""Sign-ins talking to the directory at once, each in a thread of its own pool (default
        8); more wait their turn. Example: `c.DirectoryAuthenticator.concurrent_sign_ins = 16`.""",
    )

    _threads: ThreadPoolExecutor | None = None

    def get_handlers(self, app):
        return [
            (path, DirectoryLoginHandler if path == "/login" else h) for path, h in super().get_handlers(app)
        ]

    async def authenticate(self, handler, data):
        # ldap3 is synchronous and the parent calls it inside a coroutine: the whole exchange runs in
        # our own pool, so a slow directory delays only the people signing in, never the hub.
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self.concurrent_sign_ins, thread_name_prefix="ldap-sign-in")
        loop = asyncio.get_running_loop()
        try:
            model = await loop.run_in_executor(
                self._threads, asyncio.run, super().authenticate(handler, data)
            )
        except DIRECTORY_DOWN as e:
            self.log.error(
                "LDAP directory %s:%s unreachable for the sign-in of %r: %s",
                self.server_address,
                self.server_port,
                str(data.get("username", ""))[:64],
                e,
            )
            raise DirectoryUnreachable() from e
        if model is None:
            return None
        groups = model["auth_state"]["user_attributes"].pop(GROUPS_KEY, None)
        if groups is not None:
            model["groups"] = groups
        return model

    def is_admin(self, handler, authentication):
        if super().is_admin(handler, authentication):
            return True
        if not self.admin_group:
            return None  # not ours to decide: the hub keeps what it has
        return self.admin_group in (authentication.get("groups") or ())

    def get_user_attributes(self, conn, userdn):
        attributes = super().get_user_attributes(conn, userdn)
        if self.group_search_base:
            # The parent calls this once per sign-in with the user's bound connection: the one
            # place to read their groups without binding again. authenticate() takes them out.
            attributes = {**attributes, GROUPS_KEY: self.group_names(conn, userdn)}
        return attributes

    def group_names(self, conn: ldap3.Connection, userdn: str) -> list[str]:
        """The `cn` of the groups under `group_search_base` that list the user, sorted."""
        uid_attribute = self.user_attribute or "uid"
        conn.search(userdn, "(objectClass=*)", ldap3.BASE, attributes=[uid_attribute])
        entry = conn.entries[0].entry_attributes_as_dict if conn.entries else {}
        # Without a sign-in name only DN-based membership can match; a DN is never a memberUid.
        uid = str((entry.get(uid_attribute) or [userdn])[0])
        search_filter = self.group_search_filter.format(
            userdn=escape_filter_chars(userdn), uid=escape_filter_chars(uid)
        )
        conn.search(self.group_search_base, search_filter, ldap3.SUBTREE, attributes=["cn"])
        outcome = conn.result.get("description")
        if outcome != "success":
            self.log.warning(
                "LDAP group search under %r for %s: %s; the user gets no groups",
                self.group_search_base,
                userdn,
                outcome,
            )
        found = (e.entry_attributes_as_dict.get("cn") for e in conn.entries)
        return sorted({str(cn[0]) for cn in found if cn})

    def get_connection(self, userdn, password):
        # The parent's, with timeouts (it has none: a directory that accepts and never answers would
        # hold a thread forever) and without reading the server's schema at every sign-in.
        use_ssl = self.tls_strategy == TlsStrategy.on_connect
        if self.tls_strategy == TlsStrategy.before_bind:
            auto_bind = ldap3.AUTO_BIND_TLS_BEFORE_BIND
        else:
            auto_bind = ldap3.AUTO_BIND_NO_TLS
        server = ldap3.Server(
            self.server_address,
            port=self.server_port,
            use_ssl=use_ssl,
            tls=Tls(**self.tls_kwargs),
            get_info=ldap3.NONE,
            connect_timeout=self.connect_timeout,
        )
        try:
            return ldap3.Connection(
                server,
                user=userdn,
                password=password,
                auto_bind=auto_bind,
                receive_timeout=self.response_timeout,
            )
        except LDAPBindError as e:
            self.log.debug("LDAP bind of %s refused: %s", userdn, e)
            return None


def _directory_address(url: str, tls: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
        raise SettingsError(f"EC2HUB_LDAP_URL={url!r}: use ldap://host[:port] or ldaps://host[:port]")
    if (parts.scheme == "ldaps") != (tls == "ldaps"):
        raise SettingsError(
            f"EC2HUB_LDAP_TLS={tls!r} does not fit EC2HUB_LDAP_URL={url!r}:"
            " ldaps:// goes with ldaps, ldap:// with starttls or none"
        )
    try:
        port = parts.port or (636 if parts.scheme == "ldaps" else 389)
    except ValueError:
        raise SettingsError(f"EC2HUB_LDAP_URL={url!r}: the port is not a number (1-65535)") from None
    return parts.hostname, port


def configure(c: Config, settings: Settings, env: Mapping[str, str] | None = None) -> None:
    """Configure DirectoryAuthenticator from the EC2HUB_LDAP_* variables of `env` (default: the
    environment the settings were read from)."""
    env = settings.env if env is None else env

    def get(name: str, default: str = "") -> str:
        return env.get(name, "").strip() or default

    url = get("EC2HUB_LDAP_URL")
    if not url:
        raise SettingsError("EC2HUB_AUTH=ldap needs EC2HUB_LDAP_URL (e.g. ldaps://ldap.example.org)")
    tls = get("EC2HUB_LDAP_TLS", "ldaps" if url.lower().startswith("ldaps:") else "starttls")
    if tls not in TLS_CHOICES:
        raise SettingsError(f"EC2HUB_LDAP_TLS={tls!r}: use one of {', '.join(TLS_CHOICES)}")
    host, port = _directory_address(url, tls)

    a = c.DirectoryAuthenticator
    c.JupyterHub.authenticator_class = DirectoryAuthenticator
    a.server_address = host
    a.server_port = port
    a.tls_strategy = TLS_CHOICES[tls].name
    if tls != "none":
        ca_file = get("EC2HUB_LDAP_CA_FILE")
        if ca_file and not Path(ca_file).is_file():
            raise SettingsError(f"EC2HUB_LDAP_CA_FILE={ca_file!r} is not a file")
        # ldap3 does not verify certificates unless told to: without this anyone on the path could
        # pose as the directory and collect passwords.
        a.tls_kwargs = {"validate": ssl.CERT_REQUIRED, "ca_certs_file": ca_file or None, "sni": host}

    username_attribute = get("EC2HUB_LDAP_USERNAME_ATTRIBUTE", "uid")
    a.user_attribute = username_attribute
    # ldapauthenticator has a name pattern of its own (no digit first, no @ or +): the hub's rule is
    # the one rule, checked on the sign-in form before the directory is asked.
    a.valid_username_regex = settings.username_pattern
    template = get("EC2HUB_LDAP_BIND_DN_TEMPLATE")
    search_base = get("EC2HUB_LDAP_SEARCH_BASE")
    if template and search_base:
        raise SettingsError("Set EC2HUB_LDAP_BIND_DN_TEMPLATE or EC2HUB_LDAP_SEARCH_BASE, not both")
    if template:
        if "{username}" not in template:
            raise SettingsError(f"EC2HUB_LDAP_BIND_DN_TEMPLATE={template!r} must contain {{username}}")
        a.bind_dn_template = [template]
    elif search_base:
        search_user = get("EC2HUB_LDAP_SEARCH_USER_DN")
        search_password = env.get("EC2HUB_LDAP_SEARCH_PASSWORD", "")
        if bool(search_user) != bool(search_password):
            raise SettingsError(
                "EC2HUB_LDAP_SEARCH_USER_DN and EC2HUB_LDAP_SEARCH_PASSWORD go together"
                " (leave both unset to look users up anonymously)"
            )
        a.lookup_dn = True
        a.user_search_base = search_base
        a.lookup_dn_user_dn_attribute = username_attribute
        a.lookup_dn_search_user = search_user or None
        a.lookup_dn_search_password = search_password or None
    else:
        raise SettingsError(
            "EC2HUB_AUTH=ldap needs EC2HUB_LDAP_BIND_DN_TEMPLATE (uid={username},ou=people,...)"
            " or EC2HUB_LDAP_SEARCH_BASE (with EC2HUB_LDAP_SEARCH_USER_DN and EC2HUB_LDAP_SEARCH_PASSWORD)"
        )

    group_base = get("EC2HUB_LDAP_GROUP_BASE")
    admin_group = get("EC2HUB_ADMIN_GROUP")
    if admin_group and not group_base:
        raise SettingsError("EC2HUB_ADMIN_GROUP needs EC2HUB_LDAP_GROUP_BASE (where the groups live)")
    a.group_search_base = group_base
    a.admin_group = admin_group
    # With a group base the directory owns group membership: the hub follows it at every sign-in.
    c.Authenticator.manage_groups = bool(group_base)
    # The directory decides who exists; groups decide what each person may do.
    c.Authenticator.allow_all = True
