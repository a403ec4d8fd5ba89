"""One DescribeInstances for every server's poll: the states of all of a hub's instances, shared.

JupyterHub polls each running server every `poll_interval` seconds. Asking EC2 about one instance
per poll costs, with 1,000 servers and the default 30 s, 33 DescribeInstances calls a second: more
than EC2's steady rate for describe calls (the account's bucket refills at about 20 a second), so
spawns and the admins' pages would be throttled. Instead, the polls of a hub share a list of its
instances (one paginated call, 1,000 instances a page) that is at most `max_age` seconds old; an
instance not on the list yet (launched since) is asked about on its own.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

from spawner import aws

# The most instances one DescribeInstances page may hold.
PAGE = 1000


class InstanceStates:
    """This hub's instances as EC2 last listed them, refreshed by whichever poll finds it stale."""

    _shared: ClassVar[dict[tuple[str, str, str], InstanceStates]] = {}

    def __init__(self, client: Any, hub_tag: tuple[str, str]) -> None:
        self._client = client
        self._filters = [{"Name": f"tag:{hub_tag[0]}", "Values": [hub_tag[1]]}]
        self._instances: dict[str, dict] = {}
        self._listed_at = float("-inf")
        self._listing: asyncio.Task | None = None

    @classmethod
    def of(cls, client: Any, hub_tag: tuple[str, str], region: str, endpoint_url: str) -> InstanceStates:
        """The list shared by every server of this hub in this process."""
        key = (hub_tag[1], region, endpoint_url)
        if key not in cls._shared:
            cls._shared[key] = cls(client, hub_tag)
        return cls._shared[key]

    def _list(self) -> dict[str, dict]:
        paginator = self._client.get_paginator("describe_instances")
        pages = paginator.paginate(Filters=self._filters, PaginationConfig={"PageSize": PAGE})
        return {i["InstanceId"]: i for page in pages for r in page["Reservations"] for i in r["Instances"]}

    async def _refresh(self) -> None:
        started = time.monotonic()
        self._instances = await aws.run(self._list)
        self._listed_at = started

    async def get(self, instance_id: str, max_age: float) -> dict | None:
        """The instance as listed at most `max_age` seconds ago, or None when it is not on the list."""
        if time.monotonic() - self._listed_at > max_age:
            # One listing at a time; the polls that find it under way wait for it.
            running = self._listing
            if running is None or running.done() or running.get_loop() is not asyncio.get_running_loop():
                running = self._listing = asyncio.ensure_future(self._refresh())
            await asyncio.shield(running)
        return self._instances.get(instance_id)
