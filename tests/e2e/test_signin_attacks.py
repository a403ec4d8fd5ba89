"""Sign-in tried as an attacker would, on the real stack (hub, proxy, local cloud): names outside the
rule, forged approvals, telling accounts apart, guessing passwords, over-long passwords.

Each attacker gets an address of their own: every request comes from loopback, where
configurable-http-proxy runs, so the X-Forwarded-For a test sends is the client address the hub sees.
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import pytest
from jupyterhub import orm

from hub.auth.names import DEFAULT_RULE
from hub.auth.signup import PASSWORD_TOO_LONG
from hub.auth.throttle import INVALID_CREDENTIALS
from hub.settings import DEFAULT_USERNAME_PATTERN
from localcloud.up import Stack
from tests.e2e.stack import USER_PASSWORD, HubClient, admin_client, approved_user, client_at, stack_env

pytestmark = pytest.mark.e2e

OUTSIDE_THE_RULE = ["alic?", "a*", "*"]
# A password of 100 bytes, of characters anyone could type.
LONG_PASSWORD = "correct horse battery staple " * 3 + "x" * 13
assert len(LONG_PASSWORD.encode()) == 100


@pytest.fixture(scope="module")
def hub_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("log") / "stack.log"
    with path.open("w") as log:
        yield path, log


@pytest.fixture(scope="module")
def stack(tmp_path_factory, hub_log):
    stack = Stack(stack_env(tmp_path_factory.mktemp("state"), subnet_base=230), output=hub_log[1])
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def admin(stack):
    return admin_client(stack)


def login_error(response) -> str:
    found = re.search(r'<p class="login_error">\s*(.*?)\s*</p>', response.text, re.S)
    return html.unescape(found.group(1)) if found else ""


def account_row(admin: HubClient, stack: Stack, name: str) -> str:
    """The account's row on the authorization page ("" when there is no such sign-up)."""
    page = admin.session.get(f"{stack.settings.url}/hub/authorize", params={"user": name}, timeout=30)
    assert page.status_code == 200, page.text
    found = re.search(rf'<tr id="{re.escape(html.escape(name))}".*?</tr>', page.text, re.S)
    return found.group(0) if found else ""


def is_approved(admin: HubClient, stack: Stack, name: str) -> bool:
    row = account_row(admin, stack, name)
    assert row, f"{name} has signed up"
    return "<td>Yes</td>" in row


# --- the username rule ---


@pytest.mark.parametrize("name", OUTSIDE_THE_RULE)
def test_names_with_filter_wildcards_are_refused_at_sign_up_with_what_is_allowed(stack, admin, name):
    response = HubClient(stack.settings.url).sign_up(name, USER_PASSWORD)
    assert response.status_code == 200
    assert DEFAULT_RULE in html.unescape(response.text)
    assert account_row(admin, stack, name) == ""


@pytest.mark.parametrize("name", OUTSIDE_THE_RULE)
def test_the_admin_api_refuses_names_with_filter_wildcards_with_what_is_allowed(stack, admin, name):
    created = admin.api("POST", f"/users/{quote(name, safe='')}")
    assert created.status_code == 400, created.text
    assert DEFAULT_RULE in created.json()["message"]
    many = admin.api("POST", "/users", json={"usernames": ["dora", name]})
    assert many.status_code == 400, many.text
    assert DEFAULT_RULE in many.json()["message"]
    assert admin.api("GET", f"/users/{quote(name, safe='')}").status_code == 404
    assert admin.api("GET", "/users/dora").status_code == 404, "nothing of a refused request is created"


def test_the_admin_api_refuses_renaming_to_a_name_outside_the_rule(stack, admin):
    assert admin.api("POST", "/users/gus").status_code == 201
    renamed = admin.api("PATCH", "/users/gus", json={"name": "gu?"})
    assert renamed.status_code == 400, renamed.text
    assert DEFAULT_RULE in renamed.json()["message"]
    assert admin.api("GET", "/users/gus").status_code == 200


# --- approvals only by POST with the XSRF token ---


def test_a_cross_site_get_of_approve_or_discard_changes_nothing(stack, admin):
    HubClient(stack.settings.url).sign_up("pat", USER_PASSWORD)
    assert not is_approved(admin, stack, "pat")
    # What the admin's browser sends when a page on another site links (or redirects) here.
    cross_site = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    for path in ("authorize/pat", "discard/pat"):
        response = admin.session.get(f"{stack.settings.url}/hub/{path}", headers=cross_site, timeout=30)
        assert response.status_code == 200, response.text
        assert not is_approved(admin, stack, "pat"), f"GET {path} left pat waiting, and there"
    # A forged form on another site cannot supply the token.
    for path, data in (("authorize/pat", {"action": "approve"}), ("discard/pat", {})):
        response = admin.session.post(
            f"{stack.settings.url}/hub/{path}", data=data, headers=cross_site, timeout=30
        )
        assert response.status_code == 403, response.text
        assert not is_approved(admin, stack, "pat")


def test_approve_and_withdraw_say_what_to_do_so_a_replay_changes_nothing(stack, admin):
    HubClient(stack.settings.url).sign_up("quin", USER_PASSWORD)
    for _ in range(2):
        admin.approve("quin")
        assert is_approved(admin, stack, "quin")
    xsrf = admin.session.cookies["_xsrf"]
    for _ in range(2):
        response = admin.session.post(
            f"{stack.settings.url}/hub/authorize/quin", data={"_xsrf": xsrf, "action": "withdraw"}, timeout=30
        )
        assert response.status_code == 200, response.text
        assert not is_approved(admin, stack, "quin")
    unknown = admin.session.post(
        f"{stack.settings.url}/hub/authorize/quin", data={"_xsrf": xsrf, "action": "toggle"}, timeout=30
    )
    assert unknown.status_code == 400


def test_discard_by_post_deletes_a_sign_up_that_was_never_approved(stack, admin):
    HubClient(stack.settings.url).sign_up("rue", USER_PASSWORD)
    row = account_row(admin, stack, "rue")
    assert 'action="/hub/discard/rue"' in row
    response = admin.session.post(
        f"{stack.settings.url}/hub/discard/rue", data={"_xsrf": admin.session.cookies["_xsrf"]}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert account_row(admin, stack, "rue") == ""


# --- the same answer for every name; failures throttled ---


def test_a_wrong_password_an_unknown_name_and_an_account_locked_elsewhere_get_the_same_answer(stack):
    for name in ("alice", "frank"):
        approved_user(stack, name)
    attacker = client_at(stack, "198.51.100.11")
    for _ in range(5):
        attacker.login("frank", "a guess at frank's password")
    assert attacker.login("frank", USER_PASSWORD).status_code == 429, "locked for the attacker"

    someone = client_at(stack, "198.51.100.12")
    answers = {
        "alice": someone.login("alice", "not " + USER_PASSWORD),  # a wrong password
        "nobody": someone.login("nobody", "a password of some length"),  # an unknown name
        "frank": someone.login("frank", "another wrong password"),  # an account locked elsewhere
    }

    def page(name, response):
        text = response.text.replace(name, "NAME")
        return re.sub(r'name="_xsrf" value="[^"]*"', "", text)

    assert {response.status_code for response in answers.values()} == {403}
    assert {login_error(response) for response in answers.values()} == {INVALID_CREDENTIALS}
    pages = {page(name, response) for name, response in answers.items()}
    assert len(pages) == 1, "the pages are the same but for the name"

    assert someone.login("frank", USER_PASSWORD).status_code == 302, "frank, elsewhere, is not locked out"


def test_a_sixth_attempt_from_one_address_is_throttled_across_names_even_with_the_right_password(stack):
    approved_user(stack, "alice")
    guesser = client_at(stack, "198.51.100.21")

    def guess(name: str, password: str, n: int):
        # Tornado believes an X-Real-Ip header, which the proxy passes on: a new one each time must
        # not make a new address.
        guesser.session.headers["X-Real-Ip"] = f"192.0.2.{n}"
        return guesser.login(name, password)

    answers = [
        guess(name, "password guess 1234", n) for n, name in enumerate(("ann", "ben", "cal", "dee", "alice"))
    ]
    assert [r.status_code for r in answers] == [403, 403, 403, 403, 429]
    assert "Too many failed sign-ins from your address: try again in 10 minutes" in login_error(answers[-1])
    sixth = guess("alice", USER_PASSWORD, 6)
    assert sixth.status_code == 429, "the right password does not get through either"
    assert "try again in 10 minutes" in login_error(sixth)
    assert guesser.api("GET", "/user").status_code == 403, "not signed in"
    assert client_at(stack, "198.51.100.22").login("alice", USER_PASSWORD).status_code == 302


def test_a_name_outside_the_rule_is_told_the_rule_at_sign_in(stack):
    response = client_at(stack, "198.51.100.31").login("a*", USER_PASSWORD)
    assert response.status_code == 403
    assert DEFAULT_RULE in login_error(response)


# --- passwords longer than bcrypt takes ---


def test_a_100_byte_password_is_answered_at_sign_up_sign_in_and_password_change(stack):
    signed_up = HubClient(stack.settings.url).sign_up("lena", LONG_PASSWORD)
    assert signed_up.status_code == 200
    assert PASSWORD_TOO_LONG in html.unescape(signed_up.text)

    approved_user(stack, "alice")
    signed_in = client_at(stack, "198.51.100.41").login("alice", LONG_PASSWORD)
    assert signed_in.status_code == 403
    assert login_error(signed_in) == PASSWORD_TOO_LONG

    alice = approved_user(stack, "alice")
    changed = alice.session.post(
        f"{stack.settings.url}/hub/change-password",
        data={
            "_xsrf": alice.session.cookies["_xsrf"],
            "old_password": USER_PASSWORD,
            "new_password": LONG_PASSWORD,
            "new_password_confirmation": LONG_PASSWORD,
        },
        timeout=30,
    )
    assert changed.status_code == 200
    assert PASSWORD_TOO_LONG in html.unescape(changed.text)


# --- the hub restarts ---


def test_existing_users_outside_the_rule_are_reported_at_hub_start(stack, hub_log):
    stack.stop_hub()
    db = orm.new_session_factory(f"sqlite:///{stack.settings.state_dir / 'hub' / 'jupyterhub.sqlite'}")()
    # Names no other test of this module uses: its tests pass in any order.
    db.add_all([orm.User(name="z?"), orm.User(name="Old Name")])
    db.commit()
    db.close()
    stack.start_hub()
    log = hub_log[0].read_text()
    for name in ("z?", "Old Name"):
        lines = [
            line for line in log.splitlines() if f"User {name!r} does not match the username rule" in line
        ]
        assert lines, f"{name} is reported"
        assert all(DEFAULT_USERNAME_PATTERN in line and DEFAULT_RULE in line for line in lines)
    admin = admin_client(stack)
    assert admin.api("GET", f"/users/{stack.settings.admin_user}").status_code == 200, "the hub runs on"
