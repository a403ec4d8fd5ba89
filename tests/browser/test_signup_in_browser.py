"""Sign-up with approval, in a real browser: register, wait for approval, get approved, sign in and spawn."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from localcloud.up import Stack
from tests.browser.conftest import screenshot
from tests.e2e.stack import running_stack

pytestmark = pytest.mark.e2e

PASSWORD = "a long and private passphrase"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory, subnet_base=246) as stack:
        yield stack


def sign_up(page, stack: Stack, user: str, password: str) -> None:
    page.goto(f"{stack.settings.url}/hub/signup")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.fill("#password_confirmation_input", password)
    page.click('form [type="submit"]')


def sign_in(page, stack: Stack, user: str, password: str) -> None:
    page.goto(f"{stack.settings.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")


def test_a_new_person_signs_up_is_approved_then_signs_in_and_spawns(stack, new_page):
    erin = new_page()
    sign_up(erin, stack, "erin", "short")
    expect(erin.locator("div.alert[role=alert]")).to_contain_text("password")
    sign_up(erin, stack, "erin", PASSWORD)
    expect(erin.locator("div.alert[role=alert]")).to_contain_text("sent to the admin")

    sign_in(erin, stack, "erin", PASSWORD)
    expect(erin.get_by_text("an administrator has not approved the account yet")).to_be_visible()

    admin = new_page()
    sign_in(admin, stack, stack.settings.admin_user, stack.settings.admin_password)
    admin.goto(f"{stack.settings.url}/hub/authorize")
    row = admin.locator("tr#erin")
    row.get_by_role("button", name="Authorize").click()
    expect(admin.locator("tr#erin")).to_contain_text("Yes")
    screenshot(admin, "authorize")

    sign_in(erin, stack, "erin", PASSWORD)
    erin.wait_for_selector(".ec2hub-size")
    erin.check('input[name="size"][value="small"]')
    erin.click('#spawn_form [type="submit"]')
    erin.wait_for_url(re.compile(r".*/user/erin/lab.*"), timeout=120_000)


def test_a_wrong_password_says_so_and_five_from_one_address_make_it_wait(stack, new_page):
    page = new_page()
    sign_up(page, stack, "frank", PASSWORD)
    # Someone guessing frank's password, from an address of their own (the proxy on loopback takes
    # the X-Forwarded-For a client on loopback sends as that client's address).
    guesser = new_page()
    guesser.set_extra_http_headers({"X-Forwarded-For": "198.51.100.7"})
    sign_in(guesser, stack, "frank", "not the password")
    expect(guesser.get_by_text("Invalid username or password.")).to_be_visible()
    for _ in range(4):
        sign_in(guesser, stack, "frank", "still not the password")
    expect(
        guesser.get_by_text("Too many failed sign-ins from your address: try again in 10 minutes")
    ).to_be_visible()
    screenshot(guesser, "locked")
    # Held means held: not even the right password gets through from there until the time is up.
    sign_in(guesser, stack, "frank", PASSWORD)
    expect(guesser.get_by_text("Too many failed sign-ins from your address")).to_be_visible()
    # frank's approval aside, the guesser has not locked him out: from his own address he is told
    # what any account waiting for approval is told.
    sign_in(page, stack, "frank", PASSWORD)
    expect(
        page.get_by_text("frank has signed up but an administrator has not approved the account yet")
    ).to_be_visible()
