"""In a real browser: alice starts a Dask cluster from her notebook and watches it on its dashboard,
served through the hub's proxy (dask-gateway's proxy behind it, the scheduler's bokeh server last)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.browser.test_spawn_in_browser import sign_in, spawn_with
from tests.e2e.kernel import Kernel
from tests.e2e.stack import USER_PASSWORD, approved_user, running_stack, wait_for
from tests.e2e.test_dask_clusters import cluster_instances, run

pytestmark = pytest.mark.e2e

TASKS = 64

# What the dashboard's bokeh document holds for its two plots that are drawn on a canvas: the task
# stream's rectangles of `square` tasks and the progress plot's title, as the page shows them.
STATUS_DRAWN = """() => {
  const doc = window.Bokeh && Bokeh.documents[0];
  const stream = doc && doc.get_model_by_name("task_stream");
  const progress = doc && doc.get_model_by_name("task_progress");
  if (!stream || !progress) return null;
  const names = Array.from(stream.renderers[0].data_source.data.name);
  return {squares: names.filter(n => n === "square").length, progress: progress.title.text};
}"""


def in_kernel(kernel: Kernel, code: str) -> dict:
    # Playwright's sync API keeps an event loop running in this thread; the kernel's websocket client
    # runs one of its own, so in a thread of its own.
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(run, kernel, code).result()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory, subnet_base=194) as stack:
        yield stack


def test_alice_sees_her_two_workers_and_their_tasks_on_the_clusters_dashboard(stack, new_page):
    hub = approved_user(stack, "alice")
    page = new_page()
    sign_in(page, stack, "alice", USER_PASSWORD)
    page.wait_for_selector(".ec2hub-size")
    spawn_with(page, "small")
    page.wait_for_url(re.compile(r".*/user/alice/lab.*"), timeout=120_000)

    alice = Kernel(stack.settings.url, "alice", hub.token("alice"), timeout=240)
    started = in_kernel(
        alice,
        """
        import json, time
        from dask_gateway import Gateway
        cluster = Gateway().new_cluster()
        cluster.scale(2)
        client = cluster.get_client()
        client.wait_for_workers(2, timeout=180)
        workers = {w["name"]: w["host"] for w in client.scheduler_info()["workers"].values()}
        print(json.dumps({"name": cluster.name, "dashboard": cluster.dashboard_link, "workers": workers}))
        """,
    )
    assert started["dashboard"] == (
        f"{stack.settings.url}/services/dask-dashboards/clusters/{started['name']}/status"
    )
    worker_ips = sorted(
        i["PrivateIpAddress"]
        for i in cluster_instances(stack, started["name"])
        if {t["Key"]: t["Value"] for t in i["Tags"]}["ec2hub:purpose"] == "dask-worker"
    )
    assert sorted(started["workers"].values()) == worker_ips

    # The status page open while she computes (the scheduler records the task stream from the first
    # time a page shows it): every task drawn in the stream, the progress plot says all are done.
    page.goto(started["dashboard"])
    # The plots' document arrives over the dashboard's websocket, through both proxies.
    page.wait_for_function(f"() => ({STATUS_DRAWN})() !== null")
    computed = in_kernel(
        alice,
        f"""
        def square(x):
            time.sleep(0.25)
            return x * x
        squares = client.map(square, range({TASKS}))
        print(json.dumps({{"total": client.submit(sum, squares).result()}}))
        """,
    )
    assert computed["total"] == sum(x * x for x in range(TASKS))
    # Until the `sum` is released, the progress plot counts it too.
    drawn = page.wait_for_function(
        f"""() => {{ const d = ({STATUS_DRAWN})();
                    return d && d.squares === {TASKS} && d.progress.includes("total: {TASKS},") && d; }}"""
    ).json_value()
    assert f"in-memory: {TASKS}," in drawn["progress"] and "erred: 0" in drawn["progress"], drawn
    screenshot(page, "dask-dashboard")

    # The workers page, from the dashboard's own navigation: a table row for each of the two workers.
    page.get_by_role("link", name="Workers", exact=True).click()
    page.wait_for_url(re.compile(r".*/clusters/[0-9a-f]+/workers$"))
    expect(page.locator(".slick-row").first).to_contain_text("Total (2)")
    rows = [row.split("\n") for row in page.locator(".slick-row").all_inner_texts()]
    shown = {name: address for name, address, *_ in rows if not name.startswith("Total")}
    assert {name: re.sub(r"^tls://|:\d+$", "", a) for name, a in shown.items()} == started["workers"]

    in_kernel(alice, "cluster.shutdown(); print('{}')")
    wait_for(lambda: not cluster_instances(stack), 120, "every cluster instance to be terminated")
