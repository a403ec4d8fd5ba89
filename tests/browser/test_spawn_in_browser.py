"""In a real browser: sign in, pick a size, watch the progress, land in JupyterLab, resize; Instances."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from localcloud.up import Stack
from tests.browser.conftest import screenshot
from tests.e2e.stack import (
    USER_PASSWORD,
    admin_client,
    approved_user,
    aws_client,
    instances_of,
    running_stack,
)

pytestmark = pytest.mark.e2e

# What JupyterLab 4.6 asks a user once unless the hub decided (images/user/overrides.json).
NEWS_QUESTION = "Would you like to get notified about official Jupyter news?"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory, subnet_base=234) as stack:
        approved_user(stack, "alice")
        admin = admin_client(stack)
        assert admin.api("POST", "/groups/gpu-users", json={"users": []}).status_code == 201
        yield stack


def sign_in(page, stack: Stack, user: str, password: str) -> None:
    page.goto(f"{stack.settings.public_url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")


def spawn_with(page, size: str) -> None:
    page.check(f'input[name="size"][value="{size}"]')
    page.click('#spawn_form [type="submit"]')


def name_and_price_share_a_line(card) -> bool:
    name = card.locator(".ec2hub-size-name").bounding_box()
    price = card.locator(".ec2hub-price").bounding_box()
    return abs(name["y"] - price["y"]) < name["height"] / 2


def modified_column(listing, name: str):
    row = listing.locator(".jp-DirListing-item").filter(has=listing.page.get_by_text(name, exact=True))
    return row.locator(".jp-DirListing-itemModified")


def test_alice_picks_a_size_watches_progress_and_lands_in_jupyterlab(stack, new_page):
    ec2 = aws_client(stack, "ec2")
    page = new_page()
    sign_in(page, stack, "alice", USER_PASSWORD)
    page.wait_for_selector(".ec2hub-size")
    sizes = page.locator(".ec2hub-size").evaluate_all("cards => cards.map(c => c.dataset.size)")
    assert sizes == ["small", "medium", "large"], "no GPU size: alice is not in gpu-users"
    expect(page.locator(".ec2hub-size[data-size=medium] .ec2hub-price")).to_have_text("$0.192/hour")
    for card in page.locator(".ec2hub-size").all():
        assert name_and_price_share_a_line(card), card.get_attribute("data-size")
    screenshot(page, "spawn-form")

    spawn_with(page, "medium")
    page.wait_for_url(re.compile(r".*/hub/spawn-pending/alice.*"))
    expect(page.locator("#progress-bar")).to_be_visible()
    screenshot(page, "progress")

    page.wait_for_url(re.compile(r".*/user/alice/lab.*"), timeout=120_000)
    listing = page.locator(".jp-DirListing-content")
    expect(listing.get_by_text("s3", exact=True)).to_be_visible(timeout=120_000)
    expect(listing.get_by_text("shared", exact=True)).to_be_visible()
    # The S3 folders show when they were mounted, not the "56y ago" of s3fs-fuse's 1970.
    for name in ("s3", "shared"):
        expect(modified_column(listing, name)).to_have_text(re.compile(r"(?<!y) ago$|^now$"))
    # The hub decided about Jupyter news for its users: JupyterLab asks nobody.
    notification = page.evaluate(
        """async url => {
            const xsrf = document.cookie.match(/_xsrf=([^;]+)/)[1];
            return (await fetch(url, {headers: {"X-XSRFToken": xsrf}})).json();
        }""",
        "/user/alice/lab/api/settings/@jupyterlab/apputils-extension:notification",
    )
    assert notification["schema"]["properties"]["fetchNews"]["default"] == "false"
    expect(page.get_by_text(NEWS_QUESTION)).to_have_count(0)
    screenshot(page, "jupyterlab")
    [instance] = instances_of(ec2, "alice")
    assert instance["InstanceType"] == "m6i.xlarge"
    expect(page.get_by_text(NEWS_QUESTION)).to_have_count(0)

    # Stop from the hub's home page, come back on a larger size: same instance, changed in place.
    # The button's handler comes with the page's scripts, which load after the page itself: a click
    # before them does nothing.
    page.goto(f"{stack.settings.url}/hub/home", wait_until="networkidle")
    page.click("#stop")
    expect(page.locator("#stop")).to_be_hidden(timeout=120_000)
    expect(page.locator("#start")).to_have_text("Start My Server", timeout=120_000)
    page.click("#start")
    page.wait_for_selector(".ec2hub-size")
    expect(page.locator('input[name="size"][value="medium"]')).to_be_checked()
    spawn_with(page, "large")
    page.wait_for_url(re.compile(r".*/user/alice/lab.*"), timeout=120_000)
    [resumed] = instances_of(ec2, "alice")
    assert resumed["InstanceId"] == instance["InstanceId"]
    assert resumed["InstanceType"] == "m6i.4xlarge"


def test_the_admin_stops_beas_instance_from_instances_and_bea_gets_403(stack, new_page):
    ec2 = aws_client(stack, "ec2")
    bea = approved_user(stack, "bea")
    assert bea.api("POST", "/users/bea/server", json={"size": "large"}).status_code in (201, 202)
    bea.wait_ready("bea")
    [instance] = instances_of(ec2, "bea")
    assert instance["State"]["Name"] == "running"

    admin = new_page()
    sign_in(admin, stack, stack.settings.admin_user, stack.settings.admin_password)
    admin.goto(f"{stack.settings.url}/hub/home")
    admin.click("#ec2hub-instances-link")
    row = admin.locator(f'tr[data-instance-id="{instance["InstanceId"]}"]')
    expect(row.locator(".user")).to_have_text("bea")
    expect(row.locator(".size")).to_have_text("Large")
    expect(row.locator(".state")).to_have_text("running")
    expect(row.locator(".cost")).to_have_text(re.compile(r"^\$\d+\.\d{2}"))
    assert "orphan" not in (row.get_attribute("class") or "")
    screenshot(admin, "instances")

    # Stopping asks first; declining changes nothing, accepting stops the instance.
    admin.once("dialog", lambda dialog: dialog.dismiss())
    row.get_by_role("button", name="Stop").click()
    expect(row.locator(".state")).to_have_text("running")
    admin.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Stop").click()
    expect(row.locator(".state")).to_have_text(re.compile("stopping|stopped"))
    [stopped] = instances_of(ec2, "bea")
    assert stopped["State"]["Name"] in ("stopping", "stopped")

    user = new_page()
    sign_in(user, stack, "bea", USER_PASSWORD)
    user.wait_for_url(re.compile(r".*/(hub|user)/.*"))
    expect(user.locator("#ec2hub-instances-link")).to_have_count(0)
    response = user.goto(f"{stack.settings.url}/services/instances/")
    assert response.status == 403
    expect(user.locator("body")).to_contain_text(
        "You do not have permission to access JupyterHub service instances"
    )
