"""Sign-up with admin approval (jupyterhub-nativeauthenticator), with the admin account from the settings."""

from __future__ import annotations

import math

import bcrypt
from jupyterhub.scopes import needs_scope
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import AuthorizationAreaHandler, ToggleAuthorizationHandler
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from nativeauthenticator.orm import UserInfo
from tornado.httputil import url_concat
from traitlets import Unicode
from traitlets.config import Config

from hub.settings import Settings

MINIMUM_PASSWORD_LENGTH = 10
FAILED_SIGN_INS_BEFORE_LOCK = 5
LOCK_SECONDS = 600
# Accounts per page of /hub/authorize: a hub of 10,000 people answers as fast as one of ten.
APPROVALS_PAGE = 100


class LockAwareLoginHandler(NativeLoginHandler):
    """The sign-in page: says when an account waits for approval or is locked, and for how long."""

    async def post(self):
        data = {arg: self.get_argument(arg, strip=False) for arg in self.request.arguments}
        authenticator = self.authenticator
        username = authenticator.normalize_username(data.get("username", ""))
        locked = authenticator.is_blocked(username)
        user = None if locked else await self.login_user(data)
        if user:
            self._jupyterhub_user = user
            self.redirect(self.get_next_url(user))
            return
        if locked or authenticator.is_blocked(username):
            minutes = max(1, round(authenticator.seconds_before_next_try / 60))
            error = (
                f"Too many failed sign-ins: {username} is locked for {minutes} minutes."
                " Try again later, or ask an administrator."
            )
        else:
            error = "Invalid username or password."
            info = authenticator.get_user(username)
            if (
                info is not None
                and not info.is_authorized
                and info.is_valid_password(data.get("password", ""))
            ):
                error = f"{username} has signed up but an administrator has not approved the account yet."
        self.set_status(403)
        self.finish(await self._render(login_error=error, username=username))


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

        html = await self.render_template(
            "approvals.html",
            users=users,
            total=total,
            waiting=waiting,
            user_filter=name,
            page=page,
            pages=pages,
            previous_url=page_url(page - 1) if page > 1 else "",
            next_url=page_url(page + 1) if page < pages else "",
        )
        self.finish(html)


class ToggleApprovalHandler(ToggleAuthorizationHandler):
    """Approve or withdraw an account, then show it (on a large hub it may be on any page)."""

    @needs_scope("admin:users")
    async def get(self, slug):
        UserInfo.change_authorization(self.db, slug)
        self.redirect(url_concat(f"{self.hub.base_url}authorize", {"user": slug}) + f"#{slug}")


class SignUpAuthenticator(NativeAuthenticator):
    """People sign up; an admin approves them at /hub/authorize; the settings' admin exists from the start."""

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

    def get_handlers(self, app):
        ours = {
            r"/login": LockAwareLoginHandler,
            r"/authorize": PagedApprovalsHandler,
            r"/authorize/([^/]*)": ToggleApprovalHandler,
        }
        return [(path, ours.get(path, handler)) for path, handler in super().get_handlers(app)]


def configure(c: Config, settings: Settings) -> None:
    c.JupyterHub.authenticator_class = SignUpAuthenticator
    c.SignUpAuthenticator.admin_password = settings.admin_password
    c.SignUpAuthenticator.open_signup = False
    c.SignUpAuthenticator.minimum_password_length = MINIMUM_PASSWORD_LENGTH
    c.SignUpAuthenticator.check_common_password = True
    c.SignUpAuthenticator.allowed_failed_logins = FAILED_SIGN_INS_BEFORE_LOCK
    c.SignUpAuthenticator.seconds_before_next_try = LOCK_SECONDS
    c.SignUpAuthenticator.ask_email_on_signup = False
    # Only approved accounts pass authenticate(): every one of them may use the hub.
    c.Authenticator.allow_all = True
