"""LDAP sign-in against a real slapd: on the real stack, its groups as hub groups and admins, and the
directory going away; in process, search mode, TLS and a directory that never answers."""

from __future__ import annotations

import asyncio
import html
import re
import socket
import ssl
from pathlib import Path

import pytest
from traitlets.config import Config

from hub.auth import configure_authentication, ldap
from hub.auth.ldap import UNREACHABLE_MESSAGE, DirectoryAuthenticator, DirectoryUnreachable
from hub.auth.names import DEFAULT_RULE
from hub.settings import Settings, SettingsError
from localcloud.up import Stack
from tests.e2e.ldap_server import ADMIN_DN, GROUPS, PEOPLE, Slapd, require_slapd
from tests.e2e.stack import HubClient, client_at, stack_env

pytestmark = pytest.mark.e2e

PASSWORDS = {
    "alice": "alice's directory passphrase",
    "bob": "bob's directory passphrase",
    "gina": "gina's directory passphrase",
    # An ordinary directory account that happens to be called admin.
    "admin": "an ordinary account's passphrase",
}
# physics and hub-admins are groupOfNames (member = DN), gpu-users a posixGroup (memberUid = uid).
NAMED_GROUPS = {"physics": ["alice"], "hub-admins": ["bob"]}
POSIX_GROUPS = {"gpu-users": ["gina"]}
GPU_CARD = '<div class="ec2hub-size card" data-size="gpu">'
# The LDAP settings do not depend on these; configure() takes them as every sign-in method does.
SETTINGS = Settings(state_dir=Path("unused"))


def ldap_env(url: str, **overrides: str) -> dict[str, str]:
    env = {
        "EC2HUB_AUTH": "ldap",
        "EC2HUB_LDAP_URL": url,
        # The test directory listens on loopback only (nothing crosses a network) and has no
        # certificate; TLS has tests of its own below (test_starttls_*). Production keeps the default,
        # starttls, or uses ldaps.
        "EC2HUB_LDAP_TLS": "none",
        "EC2HUB_LDAP_BIND_DN_TEMPLATE": f"uid={{username}},{PEOPLE}",
        "EC2HUB_LDAP_GROUP_BASE": GROUPS,
        "EC2HUB_ADMIN_GROUP": "hub-admins",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v}


def make_directory(root, **kwargs) -> Slapd:
    require_slapd()
    return Slapd(root, PASSWORDS, NAMED_GROUPS, POSIX_GROUPS, **kwargs)


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    directory = make_directory(tmp_path_factory.mktemp("slapd"))
    directory.start()
    yield directory
    directory.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, slapd):
    env = stack_env(tmp_path_factory.mktemp("state"), subnet_base=238)
    env.update(ldap_env(slapd.url))
    stack = Stack(env)
    stack.start()
    yield stack
    stack.stop()


def signed_in(stack: Stack, user: str) -> HubClient:
    client = HubClient(stack.settings.url)
    response = client.login(user, PASSWORDS[user])
    assert response.status_code == 302, f"{user} signs in with the directory password: {response.text}"
    return client


def own_model(client: HubClient) -> dict:
    response = client.api("GET", "/user")
    assert response.status_code == 200, response.text
    return response.json()


# On the real stack


def test_alice_signs_in_with_her_directory_password(stack):
    alice = signed_in(stack, "alice")
    assert own_model(alice)["name"] == "alice"


@pytest.mark.parametrize("user, password", [("alice", "not her password"), ("mallory", "anything at all")])
def test_a_wrong_password_or_unknown_user_is_refused(stack, user, password):
    response = HubClient(stack.settings.url).login(user, password)
    assert response.status_code == 403
    assert "Invalid username or password" in response.text


def test_directory_groups_become_hub_groups_and_hub_admins_group_makes_admins(stack):
    bob = signed_in(stack, "bob")
    me = own_model(bob)
    assert me["admin"] is True, "bob is in hub-admins"
    assert "hub-admins" in me["groups"]
    for user, groups in (("alice", ["physics"]), ("gina", ["gpu-users"])):
        signed_in(stack, user)
        response = bob.api("GET", f"/users/{user}")
        assert response.status_code == 200, response.text
        model = response.json()
        assert model["groups"] == groups
        assert model["admin"] is False


def test_a_directory_account_called_admin_is_an_ordinary_user(stack):
    me = own_model(signed_in(stack, "admin"))
    assert (me["name"], me["admin"]) == ("admin", False)


def test_a_name_outside_the_username_rule_is_told_the_rule(stack):
    response = client_at(stack, "198.51.100.61").login("a*", "anything at all")
    assert response.status_code == 403
    assert DEFAULT_RULE in html.unescape(response.text)


def test_five_failures_from_one_address_hold_it_before_the_directory_is_asked(stack):
    guesser = client_at(stack, "198.51.100.62")
    statuses = [guesser.login(name, "a guess") for name in ("alice", "bob", "gina", "nobody", "alice")]
    assert [r.status_code for r in statuses] == [403, 403, 403, 403, 429]
    assert guesser.login("alice", PASSWORDS["alice"]).status_code == 429, "even with the right password"
    assert client_at(stack, "198.51.100.63").login("alice", PASSWORDS["alice"]).status_code == 302


def test_only_members_of_gpu_users_see_the_gpu_size(stack):
    gina_form = signed_in(stack, "gina").session.get(f"{stack.settings.url}/hub/spawn", timeout=30)
    alice_form = signed_in(stack, "alice").session.get(f"{stack.settings.url}/hub/spawn", timeout=30)
    assert gina_form.status_code == alice_form.status_code == 200
    assert GPU_CARD in gina_form.text
    assert 'data-size="medium"' in alice_form.text, "alice gets the form"
    assert GPU_CARD not in alice_form.text


def test_directory_down_sign_in_says_so_while_signed_in_people_carry_on(stack, slapd):
    alice = signed_in(stack, "alice")
    slapd.stop()
    try:
        response = HubClient(stack.settings.url).login("bob", PASSWORDS["bob"])  # bounded by its timeout
        assert response.status_code == 503, response.text
        assert UNREACHABLE_MESSAGE in response.text
        assert 'name="password"' in response.text, "the sign-in form is there to try again"
        assert own_model(alice)["name"] == "alice", "a signed-in session needs no directory"
    finally:
        slapd.start()
    assert own_model(signed_in(stack, "bob"))["admin"] is True, "sign-in works again"


# In process: the authenticator as the hub configures it, against the same slapd


def authenticator(env: dict[str, str], **traits) -> DirectoryAuthenticator:
    c = Config()
    ldap.configure(c, SETTINGS, env)
    for name, value in traits.items():
        setattr(c.DirectoryAuthenticator, name, value)
    return DirectoryAuthenticator(config=c)


async def sign_in(auth: DirectoryAuthenticator, user: str, password: str | None = None) -> dict | None:
    return await auth.get_authenticated_user(
        None, {"username": user, "password": password or PASSWORDS[user]}
    )


@pytest.mark.parametrize("admin_user, is_admin", [("", False), ("admin", True)])
async def test_admin_by_name_only_when_the_operator_names_them(slapd, monkeypatch, admin_user, is_admin):
    env = ldap_env(slapd.url, EC2HUB_ADMIN_USER=admin_user)
    monkeypatch.delenv("EC2HUB_ADMIN_USER", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    c = Config()
    configure_authentication(
        c, Settings.from_env({**env, "EC2HUB_STATE_DIR": "unused", "EC2HUB_ADMIN_PASSWORD": "x" * 16})
    )
    admin = await sign_in(DirectoryAuthenticator(config=c), "admin")
    assert admin["admin"] is is_admin


async def test_search_mode_looks_users_up_with_a_service_account(slapd):
    env = ldap_env(
        slapd.url,
        EC2HUB_LDAP_BIND_DN_TEMPLATE="",
        EC2HUB_LDAP_SEARCH_BASE=PEOPLE,
        EC2HUB_LDAP_SEARCH_USER_DN=ADMIN_DN,
        EC2HUB_LDAP_SEARCH_PASSWORD=slapd.admin_password,
    )
    auth = authenticator(env)
    gina = await sign_in(auth, "gina")
    assert (gina["name"], gina["groups"], gina["admin"]) == ("gina", ["gpu-users"], False)
    bob = await sign_in(auth, "bob")
    assert (bob["groups"], bob["admin"]) == (["hub-admins"], True)
    assert await sign_in(auth, "gina", "wrong password") is None
    assert await sign_in(auth, "nobody", "some password") is None


async def test_starttls_verifies_the_directory_certificate(tmp_path):
    with make_directory(tmp_path / "slapd", tls=True) as directory:
        env = ldap_env(directory.url, EC2HUB_LDAP_TLS="starttls")
        # Signed by no CA the system trusts: a directory that could be anyone's is not given a password.
        with pytest.raises(DirectoryUnreachable):
            await sign_in(authenticator(env), "alice")
        trusted = authenticator({**env, "EC2HUB_LDAP_CA_FILE": str(directory.certificate_file)})
        assert (await sign_in(trusted, "alice"))["groups"] == ["physics"]


async def test_starttls_is_never_skipped_when_the_directory_does_not_offer_it(slapd):
    with pytest.raises(DirectoryUnreachable):
        await sign_in(authenticator(ldap_env(slapd.url, EC2HUB_LDAP_TLS="starttls")), "alice")


async def test_a_directory_that_never_answers_fails_in_bounded_time_off_the_event_loop():
    with socket.socket() as silent:  # accepts connections (the kernel does) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"ldap://127.0.0.1:{silent.getsockname()[1]}"
        auth = authenticator(ldap_env(url), connect_timeout=0.5, response_timeout=1)
        signing_in = asyncio.create_task(sign_in(auth, "alice"))
        await asyncio.sleep(0)  # one turn of the event loop: the sign-in begins
        # Had it blocked the loop waiting for the silent directory, it would have ended in that turn.
        assert not signing_in.done(), "the sign-in waits off the event loop"
        # The directory's timeouts end the wait; wait_for only keeps a regression from hanging the run.
        with pytest.raises(DirectoryUnreachable) as refused:
            await asyncio.wait_for(signing_in, timeout=60)
    assert refused.value.status_code == 503


@pytest.mark.parametrize(
    "overrides, names",
    [
        ({"EC2HUB_LDAP_URL": ""}, "EC2HUB_LDAP_URL"),
        ({"EC2HUB_LDAP_URL": "http://ldap.example.org"}, "EC2HUB_LDAP_URL"),
        ({"EC2HUB_LDAP_TLS": "maybe"}, "EC2HUB_LDAP_TLS"),
        ({"EC2HUB_LDAP_URL": "ldaps://ldap.example.org", "EC2HUB_LDAP_TLS": "none"}, "EC2HUB_LDAP_TLS"),
        ({"EC2HUB_LDAP_BIND_DN_TEMPLATE": ""}, "EC2HUB_LDAP_SEARCH_BASE"),
        ({"EC2HUB_LDAP_BIND_DN_TEMPLATE": f"uid=alice,{PEOPLE}"}, "{username}"),
        ({"EC2HUB_LDAP_SEARCH_BASE": PEOPLE}, "not both"),
        (
            {
                "EC2HUB_LDAP_BIND_DN_TEMPLATE": "",
                "EC2HUB_LDAP_SEARCH_BASE": PEOPLE,
                "EC2HUB_LDAP_SEARCH_USER_DN": ADMIN_DN,
            },
            "EC2HUB_LDAP_SEARCH_PASSWORD",
        ),
        ({"EC2HUB_LDAP_GROUP_BASE": ""}, "EC2HUB_LDAP_GROUP_BASE"),
        (
            {"EC2HUB_LDAP_TLS": "starttls", "EC2HUB_LDAP_CA_FILE": "/nonexistent/ca.pem"},
            "EC2HUB_LDAP_CA_FILE",
        ),
    ],
)
def test_settings_mistakes_name_the_variable(overrides, names):
    env = ldap_env("ldap://127.0.0.1:3890", **overrides)
    with pytest.raises(SettingsError, match=re.escape(names)):
        ldap.configure(Config(), SETTINGS, env)


def test_ldaps_url_means_tls_on_connect_on_port_636_with_verified_certificates():
    c = Config()
    ldap.configure(c, SETTINGS, ldap_env("ldaps://ldap.example.org", EC2HUB_LDAP_TLS=""))
    a = c.DirectoryAuthenticator
    assert (a.server_address, a.server_port, a.tls_strategy) == ("ldap.example.org", 636, "on_connect")
    assert a.tls_kwargs["validate"] == ssl.CERT_REQUIRED
    assert c.Authenticator.manage_groups is True
