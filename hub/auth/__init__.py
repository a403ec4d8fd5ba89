"""Authentication: one setting, EC2HUB_AUTH, chooses sign-up with approval (default), LDAP or OAuth."""

from __future__ import annotations

import re

from traitlets.config import Config

from hub.auth.names import rule_text
from hub.settings import Settings, SettingsError

CHOICES = ("signup", "ldap", "oauth")


def configure_authentication(c: Config, settings: Settings) -> None:
    # One rule for every name, whatever the method: JupyterHub checks it at sign-in and when users are
    # added; hub/auth/names.py makes sign-up and the admin API say what it allows.
    c.Authenticator.username_pattern = settings.username_pattern
    if settings.auth == "signup" or settings.admin_user_configured:
        if not re.fullmatch(settings.username_pattern, settings.admin_user):
            raise SettingsError(
                f"EC2HUB_ADMIN_USER={settings.admin_user!r} does not match the username rule"
                f" ({rule_text(settings.username_pattern)})"
            )
        # Sign-up: the settings' admin account exists from the first start. LDAP and OAuth: the
        # provider decides names, so only a name the operator wrote down is an admin by name; the
        # admin group (EC2HUB_ADMIN_GROUP) is the way to name admins there.
        c.Authenticator.admin_users = {settings.admin_user}
    if settings.auth == "signup":
        from hub.auth import signup

        signup.configure(c, settings)
    elif settings.auth == "ldap":
        from hub.auth import ldap

        ldap.configure(c, settings)
    elif settings.auth == "oauth":
        from hub.auth import oauth

        oauth.configure(c, settings)
    else:
        raise SettingsError(f"EC2HUB_AUTH={settings.auth!r}: use one of {', '.join(CHOICES)}")
    # Read by the throttle of failed sign-ins (sign-up and LDAP, hub/auth/throttle.py): the proxies
    # whose word on where a request came from is believed.
    c.ThrottledSignIn.trusted_proxies = list(settings.trusted_proxies)
