"""What the session costs in JupyterLab's status bar: the server extension against a fake hub, in a real
Jupyter server, and the status bar's wording (images/labextension/src/format.js) run by node."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from jupyter_server.serverapp import ServerApp
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "images" / "bootstrap"))
from ec2hub_costs import HubCosts, HubUnavailable  # noqa: E402

HUB_TOKEN = "hub-api-token-of-the-server"
LAB_TOKEN = "lab-token"
COSTS = {
    "user": "alice",
    "server": {"size": "Medium", "hourly": 0.192, "spot": False},
    "month_to_date": 12.34,
    "budget": {"soft": 50.0, "hard": 100.0},
    "warning": "Nearing this month's budget: $12.34 of $50.",
    "refusal": None,
    "prices_as_of": "2026-12-01",
    "contact": "the platform team",
}


class FakeHub:
    """The jobs service's `GET /services/jobs/api/costs`: a canned answer, with each call's Authorization."""

    def __init__(self):
        self.code, self.answer, self.delay = 200, COSTS, 0.0
        self.authorizations: list[str | None] = []
        hub = self

        class Costs(RequestHandler):
            async def get(self):
                hub.authorizations.append(self.request.headers.get("Authorization"))
                await asyncio.sleep(hub.delay)
                self.set_status(hub.code)
                self.finish(json.dumps(hub.answer))

        sock, self.port = bind_unused_port()
        self.server = HTTPServer(Application([(r"/services/jobs/api/costs", Costs)]))
        self.server.add_sockets([sock])

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/jobs/"


@pytest.fixture
async def hub():
    fake = FakeHub()
    yield fake
    fake.server.stop()
    await fake.server.close_all_connections()


@pytest.fixture
async def lab(hub, tmp_path, monkeypatch):
    """A Jupyter server with the extension enabled as the bootstrap enables it; yields a GET of its route."""
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("EC2HUB_JOBS_URL", hub.api_url)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", HUB_TOKEN)
    sock, port = bind_unused_port()
    sock.close()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    app = ServerApp()
    app.initialize(
        argv=[
            f"--port={port}",
            f"--IdentityProvider.token={LAB_TOKEN}",
            f"--ServerApp.root_dir={tmp_path}",
            "--ServerApp.open_browser=False",
            "--ServerApp.jpserver_extensions=ec2hub_costs=True",
        ],
        new_httpserver=True,
    )

    async def get(token: str | None = LAB_TOKEN):
        headers = {"Authorization": f"token {token}"} if token else {}
        try:
            response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/ec2hub/costs", headers=headers)
        except HTTPClientError as e:
            response = e.response
        return response.code, response.body.decode()

    yield get
    app.http_server.stop()
    await app._cleanup()
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


async def test_the_hubs_answer_reaches_the_browser_and_the_token_only_the_hub(lab, hub):
    code, body = await lab()
    assert (code, json.loads(body)) == (200, COSTS)
    assert hub.authorizations == [f"token {HUB_TOKEN}"]
    assert HUB_TOKEN not in body


async def test_only_the_servers_user_is_answered(lab, hub):
    code, _ = await lab(token=None)
    assert code == 403
    assert hub.authorizations == []


async def test_a_hub_that_refuses_is_a_503_with_the_reason(lab, hub):
    hub.code, hub.answer = 403, {"message": "Forbidden"}
    code, body = await lab()
    assert code == 503
    assert "403" in json.loads(body)["error"]
    assert HUB_TOKEN not in body


async def test_a_hub_that_is_down_is_a_503_with_the_reason(lab, hub):
    hub.server.stop()
    await hub.server.close_all_connections()
    code, body = await lab()
    assert code == 503
    assert "could not be asked" in json.loads(body)["error"]


async def test_a_good_answer_is_kept_for_a_while_and_a_failure_not_at_all(hub):
    now = [0.0]
    costs = HubCosts(hub.api_url, HUB_TOKEN, cache_seconds=30, clock=lambda: now[0])
    hub.code, hub.answer = 500, {"message": "down"}
    with pytest.raises(HubUnavailable):
        await costs.get()
    hub.code, hub.answer = 200, COSTS
    assert await costs.get() == COSTS
    now[0] = 29.0
    assert await costs.get() == COSTS
    assert len(hub.authorizations) == 2
    now[0] = 31.0
    await costs.get()
    assert len(hub.authorizations) == 3


async def test_a_hub_that_does_not_answer_in_time_is_said_so(hub):
    hub.delay = 1.0
    with pytest.raises(HubUnavailable, match="did not answer"):
        await HubCosts(hub.api_url, HUB_TOKEN, timeout=0.1).get()


async def test_a_server_not_started_by_the_hub_asks_nobody():
    with pytest.raises(HubUnavailable, match="not started by the hub"):
        await HubCosts("", "").get()


def describe(costs: dict) -> dict:
    """The status bar's text, tooltip and notices for the hub's answer, as the extension computes them."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    module = (REPO / "images" / "labextension" / "src" / "format.js").as_uri()
    script = (
        f"import {{ describe }} from {json.dumps(module)};"
        "console.log(JSON.stringify(describe(JSON.parse(process.argv[1]))));"
    )
    result = subprocess.run(
        [node, "--input-type=module", "-e", script, json.dumps(costs)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return json.loads(result.stdout)


def test_the_status_bar_says_the_rate_the_month_and_the_limit():
    shown = describe(COSTS)
    assert shown["text"] == "$0.192/h · $12.34 this month of $100"
    assert "Medium" in shown["title"] and "2026-12-01" in shown["title"]
    assert "$50 (warning), $100 (limit)" in shown["title"]
    assert shown["notices"] == [{"kind": "warning", "text": COSTS["warning"]}]


def test_without_a_server_or_a_budget_the_status_bar_says_the_month_alone():
    shown = describe({**COSTS, "server": None, "budget": None, "warning": None, "refusal": "Over budget."})
    assert shown["text"] == "$12.34 this month"
    assert shown["notices"] == [{"kind": "refusal", "text": "Over budget."}]
