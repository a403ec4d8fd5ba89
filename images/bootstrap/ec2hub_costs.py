"""Jupyter server extension of the user image: what this session costs, for JupyterLab's status bar.

The hub's jobs service knows the server's price and the user's spend this month (`GET
$EC2HUB_JOBS_URL/api/costs`, from the cost ledger), but the browser has no token for it. The server
does (`JUPYTERHUB_API_TOKEN`, which gives access to the jobs service): this asks on the browser's
behalf at `<base_url>ec2hub/costs` (images/labextension shows the answer), so the token never leaves
the server. A good answer is kept for a while: every open tab asks each minute.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

HUB_TIMEOUT = 10.0
CACHE_SECONDS = 30.0


def _jupyter_server_extension_points():
    return [{"module": "ec2hub_costs"}]


class HubUnavailable(Exception):
    """The hub gave no answer about costs; the message says why, for the status bar's tooltip."""


class HubCosts:
    """The hub's answer about this user's costs, asked at most every `cache_seconds`."""

    def __init__(
        self,
        service_url: str,
        token: str,
        cache_seconds: float = CACHE_SECONDS,
        timeout: float = HUB_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.url = url_path_join(service_url, "api/costs") if service_url else ""
        self.token = token
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self.clock = clock
        self._answer: dict | None = None
        self._asked_at = 0.0

    async def get(self) -> dict:
        if self._answer is not None and self.clock() - self._asked_at < self.cache_seconds:
            return self._answer
        if not (self.url and self.token):
            raise HubUnavailable("this server was not started by the hub")
        try:
            response = await AsyncHTTPClient().fetch(
                self.url,
                headers={"Authorization": f"token {self.token}"},
                connect_timeout=self.timeout,
                request_timeout=self.timeout,
            )
            answer = json.loads(response.body)
        except HTTPClientError as e:
            # The error's text is tornado's (the status or the timeout), never the request's headers.
            if e.code == 599:
                raise HubUnavailable(f"the hub did not answer: {e.message}") from e
            raise HubUnavailable(f"the hub answered {e}") from e
        except (OSError, ValueError) as e:
            raise HubUnavailable(f"the hub could not be asked: {e}") from e
        if not isinstance(answer, dict):
            raise HubUnavailable("the hub's answer is not the costs")
        self._answer, self._asked_at = answer, self.clock()
        return answer


class CostsHandler(APIHandler):
    def initialize(self, costs: HubCosts):
        self.costs = costs

    @web.authenticated
    async def get(self):
        try:
            answer = await self.costs.get()
        except HubUnavailable as e:
            self.log.warning("No costs for the status bar: %s", e)
            self.set_status(503)
            self.finish({"error": str(e)})
            return
        self.finish(answer)


def _load_jupyter_server_extension(serverapp) -> None:
    costs = HubCosts(os.environ.get("EC2HUB_JOBS_URL", ""), os.environ.get("JUPYTERHUB_API_TOKEN", ""))
    route = url_path_join(serverapp.web_app.settings["base_url"], "ec2hub/costs")
    serverapp.web_app.add_handlers(".*$", [(route, CostsHandler, {"costs": costs})])
    serverapp.log.info("What this session costs, from the hub, at %s", route)
