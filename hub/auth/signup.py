"""Sign-up with admin approval (jupyterhub-nativeauthenticator), with the admin account from the settings."""

from __future__ import annotations

import bcrypt
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from nativeauthenticator.orm import UserInfo
from traitlets import Unicode
from traitlets.config import Config

from hub.settings import Settings

MINIMUM_PASSWORD_LENGTH = 10
FAILED_SIGN_INS_BEFORE_LOCK = 5
LOCK_SECONDS = 600


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
        return [
            (path, LockAwareLoginHandler if path == r"/login" else handler)
            for path, handler in super().get_handlers(app)
        ]


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
