"""Authentication: one setting, EC2HUB_AUTH, chooses sign-up with approval (default), LDAP or OAuth."""

from __future__ import annotations

from traitlets.config import Config

from hub.settings import Settings, SettingsError

CHOICES = ("signup", "ldap", "oauth")


def configure_authentication(c: Config, settings: Settings) -> None:
    # Admins named in the settings are admins whatever the method; LDAP and OAuth can add a group.
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
