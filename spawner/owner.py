"""Whose an instance is: the tags that say so, and the one exact check made before acting on one.

EC2 filter values are patterns (`*` and `?` are wildcards), and a user name is user input. So a
name never goes into a filter: lookups filter on values the hub itself made (its hub id, the
owner id) and then compare every owner tag in Python, exactly.

The owner id is the unique id of the user's IAM role (`AROA...`), which IAM assigns at creation
and never gives again: a user deleted and signed up again gets a new role, hence a new owner id,
and nothing tagged for the old account matches the new one. It is made of letters and digits
only, so it is safe as a filter value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

TAG_HUB = "ec2hub:hub"
TAG_USER = "ec2hub:user"
TAG_SERVER = "ec2hub:server"
TAG_OWNER_ID = "ec2hub:owner-id"
# What an instance is for: a user's server, a hot-pool member, a Dask cluster's instance, a job's.
TAG_PURPOSE = "ec2hub:purpose"
PURPOSES = ("server", "pool", "dask-scheduler", "dask-worker", "job")
TAG_POOL = "ec2hub:pool"
TAG_CLAIM = "ec2hub:claim"
# The Dask cluster (gateway cluster name) a dask-scheduler or dask-worker instance belongs to.
TAG_CLUSTER = "ec2hub:cluster"
# The job (jobs service job id) a job instance runs.
TAG_JOB = "ec2hub:job"
# A server name never contains "/", so "/" stands for the default (unnamed) server.
DEFAULT_SERVER_TAG = "/"

# What may go into an EC2 filter value as it is: no wildcard, no escape character.
_LITERAL = re.compile(r"[A-Za-z0-9._:-]+")


class NotOwned(PermissionError):
    """The instance is not (or no longer) tagged as the expected owner's: do not touch it."""


def literal_filter_value(value: str) -> str:
    """`value`, checked to mean itself in an EC2 filter (raises ValueError otherwise)."""
    if not _LITERAL.fullmatch(value):
        raise ValueError(f"{value!r} cannot be an exact EC2 filter value")
    return value


def tags_of(resource: Mapping) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def server_tag(server_name: str) -> str:
    return server_name or DEFAULT_SERVER_TAG


def server_name(tag: str) -> str:
    """The hub's name of the server an `ec2hub:server` tag stands for ("" for the default server)."""
    return "" if tag == DEFAULT_SERVER_TAG else tag


def owner_of(instance: Mapping) -> tuple[str, str]:
    """(user, server name) as the instance's tags say."""
    tags = tags_of(instance)
    return tags.get(TAG_USER, ""), server_name(tags.get(TAG_SERVER, DEFAULT_SERVER_TAG))


def check_owner(instance: Mapping, expected: Mapping[str, str]) -> None:
    """Raise NotOwned unless the instance carries every tag of `expected` with exactly that value.

    The spawner expects its server's `Owner.tags()`, the hot pool a pool member's tags, the
    Instances page and the reconciler this hub's tag: one check, made right before each action.
    """
    tags = tags_of(instance)
    wrong = sorted(key for key, value in expected.items() if tags.get(key) != value)
    if wrong:
        raise NotOwned(
            f"instance {instance.get('InstanceId', '?')} is not the expected one ({', '.join(wrong)} differ)"
        )


def is_owned(instance: Mapping, expected: Mapping[str, str]) -> bool:
    try:
        check_owner(instance, expected)
    except NotOwned:
        return False
    return True


@dataclass(frozen=True)
class Owner:
    """A claim on instances: this hub, this account (owner id), this user, server and purpose."""

    hub_id: str
    owner_id: str
    user: str
    server: str = ""
    purpose: str = "server"

    def __post_init__(self) -> None:
        literal_filter_value(self.hub_id)
        literal_filter_value(self.owner_id)
        if self.purpose not in PURPOSES:
            raise ValueError(f"unknown purpose {self.purpose!r}: one of {', '.join(PURPOSES)}")

    def tags(self) -> dict[str, str]:
        return {
            TAG_HUB: self.hub_id,
            TAG_OWNER_ID: self.owner_id,
            TAG_USER: self.user,
            TAG_SERVER: server_tag(self.server),
            TAG_PURPOSE: self.purpose,
        }

    def filters(self, states: list[str] | tuple[str, ...]) -> list[dict]:
        """DescribeInstances filters that narrow the search to this account's instances of this hub.

        Only hub-made values: the result is then checked tag by tag with `owns`.
        """
        return [
            {"Name": f"tag:{TAG_HUB}", "Values": [self.hub_id]},
            {"Name": f"tag:{TAG_OWNER_ID}", "Values": [self.owner_id]},
            {"Name": "instance-state-name", "Values": list(states)},
        ]

    def owns(self, instance: Mapping) -> bool:
        return is_owned(instance, self.tags())
