"""What the hub's services ask the hub's REST API with their own tokens: a user's groups, a group's
members (with the scopes `read:users:groups`, `read:groups`), each answer kept a little while."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

from jupyterhub.utils import url_path_join
from tornado import escape
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest


def hub_lookup(
    api_url: str, token: str, collection: str, field: str, max_age: float
) -> Callable[[str], Awaitable[list[str] | None]]:
    """A list field of a hub user or group (`collection` "users" or "groups") by name, None when the
    hub has no such one, each answer kept for `max_age` seconds."""
    cache: dict[str, tuple[float, list[str] | None]] = {}

    async def lookup(name: str) -> list[str] | None:
        found = cache.get(name)
        if found and time.monotonic() - found[0] < max_age:
            return found[1]
        request = HTTPRequest(
            url_path_join(api_url, collection, escape.url_escape(name, plus=False)),
            headers={"Authorization": f"token {token}"},
            request_timeout=10,
        )
        try:
            response = await AsyncHTTPClient().fetch(request)
            value: list[str] | None = list(json.loads(response.body).get(field) or [])
        except HTTPClientError as e:
            if e.code != 404:
                raise
            value = None
        cache[name] = (time.monotonic(), value)
        return value

    return lookup


def hub_groups(
    api_url: str, token: str, max_age: float = 30.0
) -> Callable[[str], Awaitable[list[str] | None]]:
    """A user's groups (None: no such user)."""
    return hub_lookup(api_url, token, "users", "groups", max_age)


def hub_members(api_url: str, token: str, max_age: float = 60.0) -> Callable[[str], Awaitable[list[str]]]:
    """A group's members ([] for no such group)."""
    lookup = hub_lookup(api_url, token, "groups", "users", max_age)

    async def members_of(group: str) -> list[str]:
        return await lookup(group) or []

    return members_of
