"""The username rule: one pattern, checked at sign-up, sign-in and the admin API, saying what it allows."""

from __future__ import annotations

from jupyterhub.apihandlers.users import UserAPIHandler, UserListAPIHandler
from jupyterhub.auth import Authenticator
from jupyterhub.scopes import needs_scope
from jupyterhub.utils import maybe_future
from tornado import web

from hub.settings import DEFAULT_USERNAME_PATTERN

DEFAULT_RULE = (
    "Usernames are 1-64 characters: lowercase letters, digits and . _ @ + - ,"
    " starting with a letter or digit."
)
# A refused name is quoted back to the person; one of 10,000 characters is cut short.
QUOTED_NAME_LENGTH = 64


def rule_text(pattern: str) -> str:
    """What `pattern` allows, in words for people when it is the default."""
    if pattern == DEFAULT_USERNAME_PATTERN:
        return DEFAULT_RULE
    return f"Usernames on this hub match the pattern {pattern}."


def _quoted(name: str) -> str:
    if len(name) > QUOTED_NAME_LENGTH:
        name = name[:QUOTED_NAME_LENGTH] + "…"
    return f"“{name}”"


class UsernameRule(Authenticator):
    """An authenticator whose usernames match `username_pattern` whole, and that names the rule
    wherever a name is refused: the admin API (400), sign-in through a provider (403) and the hub's
    start, where each existing user outside the rule is reported (JupyterHub calls `add_user` for
    every user in its database then)."""

    def validate_username(self, username: str) -> bool:
        if not super().validate_username(username):
            return False
        # JupyterHub matches the pattern at the start only; the rule is about the whole name.
        return self.username_regex is None or self.username_regex.fullmatch(username) is not None

    def rule_text(self) -> str:
        return rule_text(self.username_pattern)

    def username_refusal(self, names: list[str]) -> str:
        quoted = ", ".join(_quoted(name) for name in names)
        subject = (
            f"{quoted} is not a valid username" if len(names) == 1 else f"{quoted} are not valid usernames"
        )
        return f"{subject}. {self.rule_text()}"

    def add_user(self, user):
        if not self.validate_username(user.name):
            message = (
                f"User {user.name!r} does not match the username rule {self.username_pattern!r}"
                f" ({self.rule_text()}): they cannot sign in until an admin renames them"
                " (PATCH /hub/api/users/<name> with a valid name) or deletes them."
            )
            self.log.error("%s", message)
            raise ValueError(message)
        return super().add_user(user)

    async def authenticate(self, handler, data):
        # Names typed into a sign-in form are checked before any password is; this catches the
        # name a provider (OAuth, LDAP lookup) sends back, which the person did not type.
        model = await maybe_future(super().authenticate(handler, data))
        if model is None:
            return None
        name = self.normalize_username(model["name"] if isinstance(model, dict) else model)
        if not self.validate_username(name):
            self.log.warning("Refused sign-in of %r: the name does not match the username rule", name[:256])
            raise web.HTTPError(
                403,
                "%s",
                f"You signed in as {_quoted(name)}, which this hub cannot use as a username."
                f" {self.rule_text()} Ask an administrator.",
                reason="Forbidden",
            )
        return model

    def get_handlers(self, app):
        # JupyterHub routes a request to the first matching handler, the authenticator's first: these
        # take the admin API's user creation and renaming, to name the rule when they refuse a name.
        return [
            (r"/api/users", RuledUserListAPIHandler),
            (r"/api/users/([^/]+)", RuledUserAPIHandler),
            *super().get_handlers(app),
        ]


def _refuse_invalid(handler: web.RequestHandler, names: list, *, normalize: bool = True) -> None:
    """400 with the rule when a name is outside it; `normalize` as JupyterHub's handler does next."""
    authenticator = handler.authenticator
    refused = [
        name
        for name in names
        if isinstance(name, str)
        and not authenticator.validate_username(authenticator.normalize_username(name) if normalize else name)
    ]
    if refused:
        raise web.HTTPError(400, "%s", authenticator.username_refusal(refused))


class RuledUserListAPIHandler(UserListAPIHandler):
    """POST /hub/api/users: a name outside the rule is refused with the rule (400)."""

    @needs_scope("admin:users")
    async def post(self):
        data = self.get_json_body()
        if isinstance(data, dict) and isinstance(data.get("usernames"), list):
            _refuse_invalid(self, data["usernames"])
        return await super().post()


class RuledUserAPIHandler(UserAPIHandler):
    """POST /hub/api/users/<name> and renaming (PATCH): a name outside the rule is refused with the rule."""

    @needs_scope("admin:users")
    async def post(self, user_name):
        # JupyterHub creates this user under the name exactly as given, without normalizing it.
        _refuse_invalid(self, [user_name], normalize=False)
        return await super().post(user_name)

    @needs_scope("admin:users")
    async def patch(self, user_name):
        data = self.get_json_body()
        if isinstance(data, dict) and isinstance(data.get("name"), str) and data["name"] != user_name:
            _refuse_invalid(self, [data["name"]])
        return await super().patch(user_name)
