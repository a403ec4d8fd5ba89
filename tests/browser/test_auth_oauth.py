"""OAuth / OpenID Connect sign-in against a real provider: in a real browser on the real stack, the
provider's groups as hub groups and admins, and a clear refusal outside the allowed groups; in
process, discovery and the settings' errors."""

from __future__ import annotations

import asyncio
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import expect
from traitlets.config import Config

from hub.auth import oauth
from hub.auth.names import DEFAULT_RULE
from hub.auth.oauth import OAuthSettings, OpenIDConnectAuthenticator
from hub.settings import Settings, SettingsError
from localcloud.up import Stack
from tests.browser.conftest import screenshot
from tests.browser.oidc_provider import Account, OIDCProvider
from tests.e2e.stack import listen_port, stack_env

pytestmark = pytest.mark.e2e

PASSWORDS = {name: secrets.token_urlsafe(12) for name in ("alice", "mallory", "ada", "admin", "o'hara")}
ACCOUNTS = [
    Account("alice", PASSWORDS["alice"], ("physics", "gpu-users")),
    Account("mallory", PASSWORDS["mallory"], ("visitors",)),
    Account("ada", PASSWORDS["ada"], ("hub-admins",)),
    # Accounts anyone might register at a provider: one called admin, one the hub cannot use as a name.
    Account("admin", PASSWORDS["admin"], ("physics",)),
    Account("o'hara", PASSWORDS["o'hara"], ("physics",)),
]
LOGIN_SERVICE = "Physics Login"
SETTINGS = Settings(state_dir=Path("unused"), port=8000)


def oauth_env(issuer: str, client_id: str, client_secret: str, **overrides: str) -> dict[str, str]:
    env = {
        "EC2HUB_AUTH": "oauth",
        "EC2HUB_OAUTH_ISSUER": issuer,
        "EC2HUB_OAUTH_CLIENT_ID": client_id,
        "EC2HUB_OAUTH_CLIENT_SECRET": client_secret,
        # The provider sends the groups claim only for the groups scope, as Okta, Dex and authentik do.
        "EC2HUB_OAUTH_SCOPES": "openid profile groups",
        "EC2HUB_OAUTH_ALLOWED_GROUPS": "physics,gpu-users",
        "EC2HUB_ADMIN_GROUP": "hub-admins",
        "EC2HUB_OAUTH_LOGIN_SERVICE": LOGIN_SERVICE,
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v}


@pytest.fixture(scope="module")
def provider():
    with OIDCProvider(ACCOUNTS) as provider:
        yield provider


@pytest.fixture(scope="module")
def stack(tmp_path_factory, provider):
    env = stack_env(tmp_path_factory.mktemp("state"), subnet_base=242)
    # Only this test's client: nothing from the shell running the tests (OAUTH_CLIENT_ID, OAUTH2_*...).
    env = {k: v for k, v in env.items() if not k.startswith("OAUTH")}
    client_id, client_secret = f"ec2hub-{secrets.token_hex(4)}", secrets.token_urlsafe(32)
    env.update(oauth_env(provider.issuer, client_id, client_secret))
    stack = Stack(env)
    provider.register_client(client_id, client_secret, [f"{stack.settings.url}/hub/oauth_callback"])
    stack.start()
    yield stack
    stack.stop()


def sign_in_at_provider(page, stack: Stack, provider: OIDCProvider, user: str, shot: str = "") -> None:
    page.goto(f"{stack.settings.url}/hub/login")
    page.get_by_role("button", name=f"Sign in with {LOGIN_SERVICE}").click()
    page.wait_for_url(re.compile(re.escape(f"{provider.issuer}/authorize") + r"\?.*"))
    expect(page.locator("h1")).to_have_text("Test Identity Provider")
    page.fill("#username", user)
    page.fill("#password", PASSWORDS[user])
    if shot:
        screenshot(page, shot)
    page.click("#sign-in")


def refused_at_callback(page, stack: Stack, provider: OIDCProvider, user: str):
    """Sign `user` in at the provider, expecting the hub to refuse them at its callback (403): the message."""
    with page.expect_response(re.compile(r".*/hub/oauth_callback\?.*")) as callback:
        sign_in_at_provider(page, stack, provider, user)
    assert callback.value.status == 403
    return page.locator(".error p")


def hub_api(page, stack: Stack, path: str):
    """GET the hub's REST API with the page's session cookie (and its XSRF token, as the hub's pages do)."""
    xsrf = next(c["value"] for c in page.context.cookies() if c["name"] == "_xsrf")
    return page.request.get(f"{stack.settings.url}/hub/api{path}", headers={"X-XSRFToken": xsrf})


def test_alice_signs_in_at_the_provider_and_her_groups_become_hub_groups(stack, provider, new_page):
    page = new_page()
    sign_in_at_provider(page, stack, provider, "alice", shot="oauth-provider-login")
    page.wait_for_url(re.compile(r".*/hub/spawn.*"))
    page.wait_for_selector(".ec2hub-size")
    sizes = page.locator(".ec2hub-size").evaluate_all("cards => cards.map(c => c.dataset.size)")
    assert sizes == ["small", "medium", "large", "gpu"], "the GPU size: alice is in gpu-users"

    # Her own user model (the 'self' scope of every user), read with her browser session.
    response = hub_api(page, stack, "/user")
    assert response.status == 200, response.text()
    model = response.json()
    assert model["name"] == "alice"
    assert sorted(model["groups"]) == ["gpu-users", "physics"]
    assert model["admin"] is False


def test_members_of_the_admin_group_are_admins(stack, provider, new_page):
    page = new_page()
    sign_in_at_provider(page, stack, provider, "ada")
    page.wait_for_url(re.compile(r".*/hub/spawn.*"))
    model = hub_api(page, stack, "/user").json()
    assert model["admin"] is True
    assert model["groups"] == ["hub-admins"]
    # Admin in fact, not only in name: listing every user needs the admin role.
    assert hub_api(page, stack, "/users").status == 200


def test_mallory_outside_the_allowed_groups_is_refused_with_a_clear_page(stack, provider, new_page):
    page = new_page()
    message = refused_at_callback(page, stack, provider, "mallory")
    expect(message).to_contain_text(
        "You signed in as mallory, but mallory is not in a group allowed to use this hub"
        " (gpu-users, physics)."
    )
    expect(message).to_contain_text("Ask an administrator to add your account to one of these groups.")
    # Refused means not signed in: the hub sends her back to its sign-in page.
    page.goto(f"{stack.settings.url}/hub/home")
    page.wait_for_url(re.compile(r".*/hub/login.*"))


def test_a_provider_account_called_admin_is_an_ordinary_user(stack, provider, new_page):
    page = new_page()
    sign_in_at_provider(page, stack, provider, "admin")
    page.wait_for_url(re.compile(r".*/hub/spawn.*"))
    model = hub_api(page, stack, "/user").json()
    assert (model["name"], model["admin"]) == ("admin", False)
    assert hub_api(page, stack, "/users").status == 403


def test_a_provider_name_outside_the_username_rule_is_refused_with_the_rule(stack, provider, new_page):
    message = refused_at_callback(new_page(), stack, provider, "o'hara")
    expect(message).to_contain_text("You signed in as “o'hara”, which this hub cannot use as a username.")
    expect(message).to_contain_text(DEFAULT_RULE)


# --- in process: the settings, against the same provider ---


def test_discovery_gives_the_endpoints_and_explicit_urls_override_them(provider):
    env = oauth_env(provider.issuer, "hub", "s3cret", EC2HUB_OAUTH_TOKEN_URL="https://tokens.example.org/t")
    settings = OAuthSettings.from_env(env, SETTINGS)
    assert settings.authorize_url == f"{provider.issuer}/authorize"
    assert settings.userdata_url == f"{provider.issuer}/userinfo"
    assert settings.token_url == "https://tokens.example.org/t"
    assert settings.callback_url == "http://127.0.0.1:8000/hub/oauth_callback"
    assert settings.scopes == ("openid", "profile", "groups")
    assert settings.allowed_groups == ("physics", "gpu-users")


def test_explicit_urls_need_no_issuer():
    def never(issuer):
        raise AssertionError("discovery is not needed")

    env = {
        "EC2HUB_OAUTH_AUTHORIZE_URL": "https://idp.example.org/auth",
        "EC2HUB_OAUTH_TOKEN_URL": "https://idp.example.org/token",
        "EC2HUB_OAUTH_USERDATA_URL": "https://idp.example.org/me",
        "OAUTH_CLIENT_ID": "hub",
        "OAUTH_CLIENT_SECRET": "s3cret",
    }
    settings = OAuthSettings.from_env(env, SETTINGS, discover=never)
    assert (settings.client_id, settings.client_secret) == ("hub", "s3cret")
    assert settings.scopes == ("openid", "profile")
    assert settings.username_claim == "preferred_username"


def test_an_unreachable_issuer_stops_the_hub_with_the_variable_to_fix():
    issuer = f"http://127.0.0.1:{listen_port()}"
    with pytest.raises(
        SettingsError, match=r"Could not read .*/\.well-known/openid-configuration.*EC2HUB_OAUTH_ISSUER"
    ):
        OAuthSettings.from_env(oauth_env(issuer, "hub", "s3cret"), SETTINGS)


def test_a_document_for_another_issuer_is_refused(provider):
    with pytest.raises(SettingsError, match="names the issuer"):
        OAuthSettings.from_env(
            oauth_env(provider.issuer.replace("127.0.0.1", "localhost"), "hub", "s3cret"), SETTINGS
        )


def test_the_client_secret_must_be_in_the_environment(provider):
    with pytest.raises(SettingsError, match="EC2HUB_OAUTH_CLIENT_SECRET"):
        OAuthSettings.from_env(oauth_env(provider.issuer, "hub", ""), SETTINGS)


def test_without_allowed_groups_or_users_every_account_may_sign_in(provider):
    c = Config()
    oauth.configure(c, SETTINGS, oauth_env(provider.issuer, "hub", "s3cret", EC2HUB_OAUTH_ALLOWED_GROUPS=""))
    authenticator = OpenIDConnectAuthenticator(config=c)
    assert authenticator.allow_all is True
    assert authenticator.manage_groups is True
    assert authenticator.admin_groups == {"hub-admins"}

    c = Config()
    oauth.configure(c, SETTINGS, oauth_env(provider.issuer, "hub", "s3cret"))
    authenticator = OpenIDConnectAuthenticator(config=c)
    assert authenticator.allow_all is False
    assert authenticator.allowed_groups == {"physics", "gpu-users"}


def run_apart(coroutine):
    """Run a coroutine in a thread of its own: Playwright's sync API keeps this thread's loop busy."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result(timeout=10)


def test_groups_come_from_the_named_claim_and_a_missing_claim_gives_none(caplog):
    authenticator = OpenIDConnectAuthenticator(manage_groups=True, groups_claim="https://example.org/groups")
    claims = {"preferred_username": "alice", "https://example.org/groups": ["physics", "gpu-users"]}
    assert run_apart(authenticator.get_user_groups({"oauth_user": claims})) == {"physics", "gpu-users"}
    assert run_apart(authenticator.get_user_groups({"oauth_user": {"preferred_username": "alice"}})) == set()
    assert "EC2HUB_OAUTH_SCOPES" in caplog.text
