"""The Dask dashboards' door: a hub service that shows a cluster's dashboard to its owner only.

dask-gateway's own proxy asks nobody who they are on a dashboard's path, and every user instance
reaches it; so the backend puts each dashboard there under a keyed path that only this service and
the gateway can name (hub/gateway/routes.py). This service, at /services/dask-dashboards/, signs
people in through the hub (OAuth), asks the gateway whether the cluster is theirs (with their own
token: the gateway answers as it does to their notebook), then relays the dashboard's pages and
websockets from that path. Anyone else gets 404, whether the cluster exists or not.

    python -m hub.gateway.dashboards     (started by the hub; settings in its environment)
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import time
from urllib.parse import quote, urlparse

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import httpclient, web, websocket

from hub.gateway.routes import KEY_VARIABLE, dashboard_path

log = logging.getLogger("ec2hub.dashboards")

CLUSTER = r"[0-9a-f]{32}"
# How long an owner's answer is kept: a cluster's page loads dozens of files and a websocket.
OWNER_CACHE_SECONDS = 30.0
OWNER_CACHE_ENTRIES = 10_000
# Request headers relayed to the dashboard (never the hub's cookies or the Authorization header).
RELAYED_HEADERS = ("Accept", "Accept-Encoding", "Accept-Language", "Content-Type", "If-None-Match")


class Owners:
    """Whether a cluster is a person's, as the gateway says when asked with their token."""

    def __init__(self, gateway_url: str) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.answers: dict[tuple[str, str], tuple[float, bool]] = {}

    async def allows(self, user: str, token: str, cluster: str) -> bool:
        key = (user, cluster)
        known = self.answers.get(key)
        if known and time.monotonic() - known[0] < OWNER_CACHE_SECONDS:
            return known[1]
        request = httpclient.HTTPRequest(
            f"{self.gateway_url}/v1/clusters/{cluster}",
            headers={"Authorization": f"jupyterhub {token}"},
            request_timeout=10,
        )
        try:
            await httpclient.AsyncHTTPClient().fetch(request)
            allowed = True
        except httpclient.HTTPClientError as e:
            if e.code not in (401, 403, 404):
                raise
            allowed = False
        if len(self.answers) > OWNER_CACHE_ENTRIES:
            now = time.monotonic()
            self.answers = {k: v for k, v in self.answers.items() if now - v[0] < OWNER_CACHE_SECONDS}
        self.answers[key] = (time.monotonic(), allowed)
        return allowed


class OwnerOnly(HubOAuthenticated):
    """Signed in through the hub, and the cluster in the URL is theirs (the gateway decides)."""

    def initialize(self) -> None:
        # The same HubOAuth as the OAuth callback's: it keeps the sign-in's state and verifier.
        self.hub_auth = self.settings["hub_auth"]

    async def prepare(self) -> None:
        # Asked here, not in tornado's synchronous get_current_user: the event loop stays free.
        self.current_user = await self.hub_auth.get_user(self, sync=False)

    async def check_cluster(self, cluster: str) -> None:
        user = self.current_user
        if user is None:
            raise web.HTTPError(403)
        token = self.hub_auth.get_token(self)
        owners: Owners = self.settings["owners"]
        if not token or not await owners.allows(user["name"], token, cluster):
            log.info("%s asked for the dashboard of cluster %s, which is not theirs", user["name"], cluster)
            raise web.HTTPError(404)

    def target(self, cluster: str, path: str, scheme: str = "http") -> str:
        if any(part in (".", "..") for part in path.split("/")):
            raise web.HTTPError(404)
        base = self.settings["owners"].gateway_url.rsplit("/api", 1)[0]
        route = dashboard_path(self.settings["route_key"], cluster)
        url = f"{base}{route}/{quote(path, safe='/')}"
        if scheme == "ws":
            url = "ws" + url[len("http") :]
        return url + (f"?{self.request.query}" if self.request.query else "")


class DashboardPage(OwnerOnly, web.RequestHandler):
    """A page, script or data request of the dashboard, relayed."""

    @web.authenticated
    async def get(self, cluster: str, path: str) -> None:
        await self.check_cluster(cluster)
        headers = {k: v for k, v in self.request.headers.items() if k in RELAYED_HEADERS}
        request = httpclient.HTTPRequest(
            self.target(cluster, path), headers=headers, follow_redirects=False, request_timeout=60
        )
        response = await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        if response.code == 599:
            raise web.HTTPError(502, "the cluster's dashboard does not answer")
        self.set_status(response.code)
        for name in ("Content-Type", "Cache-Control", "ETag"):
            if name in response.headers:
                self.set_header(name, response.headers[name])
        location = response.headers.get("Location", "")
        if location and not urlparse(location).netloc and not location.startswith("/"):
            self.set_header("Location", location)  # relative: stays under this cluster's path
        if response.body:
            self.write(response.body)


class DashboardSocket(OwnerOnly, websocket.WebSocketHandler):
    """The dashboard's websocket (the plots' updates), relayed both ways, subprotocols included
    (bokeh names its session in them). The dashboard's side opens only once the browser's is open:
    after tornado's origin and upgrade checks."""

    upstream: websocket.WebSocketClientConnection | None = None

    async def get(self, cluster: str, path: str) -> None:
        if self.current_user is None:
            raise web.HTTPError(403)
        await self.check_cluster(cluster)
        await super().get(cluster, path)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return subprotocols[0] if subprotocols else None

    async def open(self, cluster: str, path: str) -> None:
        offered = self.request.headers.get("Sec-WebSocket-Protocol", "")
        try:
            self.upstream = await websocket.websocket_connect(
                self.target(cluster, path, scheme="ws"),
                on_message_callback=self.from_dashboard,
                subprotocols=[p.strip() for p in offered.split(",") if p.strip()] or None,
                connect_timeout=10,
            )
        except Exception as e:
            log.info("The dashboard of cluster %s does not answer: %s", cluster, e)
            self.close()

    def from_dashboard(self, message: str | bytes | None) -> None:
        if message is None:
            self.close()
            return
        try:
            self.write_message(message, binary=isinstance(message, bytes))
        except websocket.WebSocketClosedError:
            self.on_close()  # the browser left: so does the dashboard's side

    async def on_message(self, message: str | bytes) -> None:
        if self.upstream is not None:
            await self.upstream.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None

    def check_origin(self, origin: str) -> bool:
        # Only pages of the hub's own origin open the socket (the cookie alone is not enough).
        return urlparse(origin).netloc == self.request.host


class OAuthCallback(HubOAuthCallbackHandler):
    def initialize(self) -> None:
        self.hub_auth = self.settings["hub_auth"]


def make_app(prefix: str, hub_auth: HubOAuth, owners: Owners, route_key: str) -> web.Application:
    cluster = url_path_join(prefix, f"clusters/({CLUSTER})/")
    return web.Application(
        [
            (url_path_join(prefix, "oauth_callback"), OAuthCallback),
            (cluster + r"(.*/ws)", DashboardSocket),
            (cluster + r"(.*)", DashboardPage),
        ],
        hub_auth=hub_auth,
        owners=owners,
        route_key=route_key,
        # Signs the OAuth state cookie only; a restart just sends people through OAuth again.
        cookie_secret=secrets.token_bytes(32),
    )


async def serve() -> None:
    hub_auth = HubOAuth(cache_max_age=60)
    owners = Owners(os.environ["EC2HUB_GATEWAY_API_URL"])
    app = make_app(os.environ["JUPYTERHUB_SERVICE_PREFIX"], hub_auth, owners, os.environ[KEY_VARIABLE])
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    app.listen(url.port or 80, address=url.hostname or "127.0.0.1")
    log.info("Dask dashboards for their owners at %s", url.geturl())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    asyncio.run(serve())


if __name__ == "__main__":
    main()
