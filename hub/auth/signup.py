"""Sign-up with admin approval (jupyterhub-nativeauthenticator), with the admin account from the settings."""

from __future__ import annotations

import functools
import math
import secrets

import bcrypt
from jupyterhub import orm
from jupyterhub.scopes import needs_scope
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import (
    AuthorizationAreaHandler,
    ChangePasswordAdminHandler,
    ChangePasswordHandler,
    LocalBase,
    SignUpHandler,
)
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from nativeauthenticator.orm import UserInfo
from tornado import web
from tornado.httputil import url_concat
from traitlets import Unicode
from traitlets.config import Config

from hub.auth.names import UsernameRule
from hub.auth.throttle import ThrottledLoginHandler, ThrottledSignIn
from hub.settings import Settings, SettingsError

MINIMUM_PASSWORD_LENGTH = 10
# bcrypt reads the first 72 bytes of a password and refuses longer ones: a longer password is
# answered with this instead of an error page.
MAXIMUM_PASSWORD_BYTES = 72
PASSWORD_TOO_LONG = (
    f"Passwords are at most {MAXIMUM_PASSWORD_BYTES} bytes: {MAXIMUM_PASSWORD_BYTES} plain letters, digits"
    " or spaces, fewer with accented letters or other symbols. Choose a shorter one."
)
# Accounts per page of /hub/authorize: a hub of 10,000 people answers as fast as one of ten.
APPROVALS_PAGE = 100
APPROVAL_ACTIONS = {"approve": True, "withdraw": False}


def too_long(password: str) -> bool:
    return len(password.encode()) > MAXIMUM_PASSWORD_BYTES


@functools.cache
def _unmatchable_hash() -> bytes:
    return bcrypt.hashpw(secrets.token_bytes(32), bcrypt.gensalt())


class SignUpLoginHandler(ThrottledLoginHandler, NativeLoginHandler):
    """The sign-in page: the throttled form (hub/auth/throttle.py), plus a password too long to be one
    and, for whoever gives the right password, that the account waits for approval."""

    def precheck(self, username: str, password: str) -> str | None:
        return PASSWORD_TOO_LONG if too_long(password) else super().precheck(username, password)

    async def refusal(self, username: str, password: str) -> str:
        info = self.authenticator.get_user(username)
        if info is not None and not info.is_authorized and info.is_valid_password(password):
            return f"{username} has signed up but an administrator has not approved the account yet."
        return await super().refusal(username, password)


class CheckedSignUpHandler(SignUpHandler):
    """/hub/signup: a name outside the username rule or a password too long for bcrypt is refused
    with what is allowed, before nativeauthenticator's own checks."""

    async def post(self):
        if not self.authenticator.enable_signup:
            raise web.HTTPError(404)
        username = self.authenticator.normalize_username(self.get_body_argument("username", "", strip=False))
        password = self.get_body_argument("signup_password", "", strip=False)
        if not self.authenticator.validate_username(username):
            problem = self.authenticator.username_refusal([username])
        elif too_long(password):
            problem = PASSWORD_TOO_LONG
        else:
            await super().post()
            return
        html = await self.render_template(
            "signup.html",
            ask_email=self.authenticator.ask_email_on_signup,
            result_message=problem,
            alert="alert-danger",
            two_factor_auth=self.authenticator.allow_2fa,
            recaptcha_key=self.authenticator.recaptcha_key,
            tos=self.authenticator.tos,
        )
        self.finish(html)

    def get_result_message(self, user, assume_user_is_human, taken, confirmation_matches, user_is_admin):
        alert, message = super().get_result_message(
            user, assume_user_is_human, taken, confirmation_matches, user_is_admin
        )
        if user is None and assume_user_is_human and not taken and confirmation_matches:
            # The name passed the rule above: what is left is the password.
            message = (
                f"Your password needs at least {self.authenticator.minimum_password_length} characters"
                " and must not be a common password."
            )
        return alert, message


class CheckedChangePasswordHandler(ChangePasswordHandler):
    """/hub/change-password: a password too long for bcrypt is answered, not an error page."""

    @web.authenticated
    async def post(self):
        passwords = (
            self.get_body_argument(name, "", strip=False) for name in ("old_password", "new_password")
        )
        if any(too_long(password) for password in passwords):
            user = await self.get_current_user()
            html = await self.render_template(
                "change-password.html",
                user_name=user.name,
                result_message=PASSWORD_TOO_LONG,
                alert="alert-danger",
            )
            self.finish(html)
            return
        await super().post()


class CheckedChangePasswordAdminHandler(ChangePasswordAdminHandler):
    """/hub/change-password/<name>: a password too long for bcrypt is answered, not an error page."""

    @needs_scope("admin:users")
    async def post(self, user_name):
        if too_long(self.get_body_argument("new_password", "", strip=False)):
            html = await self.render_template(
                "change-password-admin.html",
                user_name=user_name,
                result_message=PASSWORD_TOO_LONG,
                alert="alert-danger",
            )
            self.finish(html)
            return
        await super().post(user_name)


class PagedApprovalsHandler(AuthorizationAreaHandler):
    """/hub/authorize a page at a time: sign-ups waiting for approval first, then everyone by name.

    `?user=ali` keeps the accounts whose name starts with "ali"; `?page=2` is the next page.
    """

    @needs_scope("admin:users")
    async def get(self):
        name = self.get_argument("user", "").strip().lower()[:255]
        page = self.get_argument("page", "1")
        page = int(page) if page.isdigit() and 0 < len(page) < 7 else 1
        query = self.db.query(UserInfo)
        if name:
            query = query.filter(UserInfo.username.startswith(name, autoescape=True))
        total = query.count()
        waiting = query.filter(UserInfo.is_authorized.is_(False)).count()
        pages = max(1, math.ceil(total / APPROVALS_PAGE))
        page = min(page, pages)
        users = (
            query.order_by(UserInfo.is_authorized, UserInfo.username)
            .offset((page - 1) * APPROVALS_PAGE)
            .limit(APPROVALS_PAGE)
            .all()
        )

        def page_url(number: int) -> str:
            query = {"user": name} if name else {}
            return url_concat(f"{self.hub.base_url}authorize", {**query, "page": number})

        names = [info.username for info in users]
        # Accounts the hub already knows are deleted on the admin page, not discarded here.
        hub_users = {name for (name,) in self.db.query(orm.User.name).filter(orm.User.name.in_(names))}
        html = await self.render_template(
            "approvals.html",
            users=users,
            hub_users=hub_users,
            total=total,
            waiting=waiting,
            user_filter=name,
            page=page,
            pages=pages,
            previous_url=page_url(page - 1) if page > 1 else "",
            next_url=page_url(page + 1) if page < pages else "",
        )
        self.finish(html)


def _account_url(handler: LocalBase, name: str) -> str:
    """The authorization page showing one account (on a large hub it may be on any page)."""
    return url_concat(f"{handler.hub.base_url}authorize", {"user": name}) + f"#{name}"


class ApprovalHandler(LocalBase):
    """POST /hub/authorize/<name> with `action` approve or withdraw: says what to do, so a replay
    changes nothing more. JupyterHub checks the XSRF token of every POST; a GET (a link, maybe on
    another site) changes nothing and shows the account."""

    @needs_scope("admin:users")
    async def get(self, slug):
        self.redirect(_account_url(self, slug))

    @needs_scope("admin:users")
    async def post(self, slug):
        action = self.get_body_argument("action", "")
        if action not in APPROVAL_ACTIONS:
            raise web.HTTPError(400, "action must be one of: %s", ", ".join(APPROVAL_ACTIONS))
        info = UserInfo.find(self.db, slug)
        if info is None:
            raise web.HTTPError(404, "No sign-up named %s", slug)
        info.is_authorized = APPROVAL_ACTIONS[action]
        self.db.commit()
        self.log.info("%s: %s the sign-up of %s", self.current_user.name, action, slug)
        self.redirect(_account_url(self, slug))


class DiscardHandler(LocalBase):
    """POST /hub/discard/<name>: deletes a sign-up that was never approved. A GET changes nothing.

    An account the hub already knows (it signed in once, then its approval was withdrawn) is deleted
    on the admin page instead, which stops its server and removes what it owns.
    """

    @needs_scope("admin:users")
    async def get(self, user_name):
        self.redirect(_account_url(self, user_name))

    @needs_scope("admin:users")
    async def post(self, user_name):
        info = UserInfo.find(self.db, user_name)
        if info is not None and not info.is_authorized:
            if self.users.get(user_name) is not None:
                raise web.HTTPError(
                    409,
                    "%s has a hub account: delete it on the admin page (Admin, then Delete user)",
                    user_name,
                )
            self.db.delete(info)
            self.db.commit()
            self.log.info("%s: discarded the sign-up of %s", self.current_user.name, user_name)
        self.redirect(f"{self.hub.base_url}authorize")


class SignUpAuthenticator(UsernameRule, ThrottledSignIn, NativeAuthenticator):
    """People sign up; an admin approves them at /hub/authorize; the settings' admin exists from the start.

    Usernames follow the hub's rule (hub/auth/names.py); failed sign-ins are throttled per address and
    per account from that address (hub/auth/throttle.py), in place of nativeauthenticator's lock.
    """

    admin_password = Unicode(config=True, help="Password of the admin account created at first start.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._ensure_admin_account()

    def _ensure_admin_account(self) -> None:
        for name in self.admin_users:
            info = UserInfo.find(self.db, name)
            hashed = bcrypt.hashpw(self.admin_password.encode(), bcrypt.gensalt())
            if info is None:
                self.db.add(UserInfo(username=name, password=hashed, is_authorized=True))
            elif not info.is_valid_password(self.admin_password):
                # The settings are the source of truth for the admin's password.
                info.password = hashed
                info.is_authorized = True
        self.db.commit()

    async def authenticate(self, handler, data):
        password = data.get("password", "")
        if too_long(password):
            return None
        if self.get_user(data.get("username", "")) is None:
            # As long as checking a real account's password, so that the time taken tells nothing.
            bcrypt.checkpw(password.encode(), _unmatchable_hash())
            return None
        return await super().authenticate(handler, data)

    def add_login_attempt(self, username):
        """nativeauthenticator's count of failures per name, for its lock: ThrottledSignIn counts instead."""

    def is_password_strong(self, password: str) -> bool:
        return not too_long(password) and super().is_password_strong(password)

    def get_handlers(self, app):
        ours = {
            r"/login": SignUpLoginHandler,
            r"/signup": CheckedSignUpHandler,
            r"/authorize": PagedApprovalsHandler,
            r"/authorize/([^/]*)": ApprovalHandler,
            r"/discard/([^/]*)": DiscardHandler,
            r"/change-password": CheckedChangePasswordHandler,
            r"/change-password/([^/]+)": CheckedChangePasswordAdminHandler,
        }
        return [(path, ours.get(path, handler)) for path, handler in super().get_handlers(app)]


def configure(c: Config, settings: Settings) -> None:
    if too_long(settings.admin_password):
        raise SettingsError(
            f"EC2HUB_ADMIN_PASSWORD is longer than {MAXIMUM_PASSWORD_BYTES} bytes (bcrypt's limit)"
        )
    c.JupyterHub.authenticator_class = SignUpAuthenticator
    c.SignUpAuthenticator.admin_password = settings.admin_password
    c.SignUpAuthenticator.open_signup = False
    c.SignUpAuthenticator.minimum_password_length = MINIMUM_PASSWORD_LENGTH
    c.SignUpAuthenticator.check_common_password = True
    # nativeauthenticator's own lock (per name, for everyone) stays off: ThrottledSignIn replaces it.
    c.SignUpAuthenticator.allowed_failed_logins = 0
    c.SignUpAuthenticator.ask_email_on_signup = False
    # Only approved accounts pass authenticate(): every one of them may use the hub.
    c.Authenticator.allow_all = True
