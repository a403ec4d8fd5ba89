"""EC2 access for the spawner: shared clients, calls that never block the event loop, user-facing errors."""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

# boto3 is synchronous: every call runs here, never on the hub's event loop. Enough workers
# that one user's slow call does not queue everyone else's behind it.
_EXECUTOR = ThreadPoolExecutor(max_workers=32, thread_name_prefix="ec2hub-aws")

# botocore retries throttling and transient errors itself, with backoff ("standard" mode).
_BOTO_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=5,
    read_timeout=30,
)

# An instance in one of these states exists and can be brought back; anything else is gone.
LIVE_STATES = ("pending", "running", "stopping", "stopped")


@functools.lru_cache(maxsize=32)
def client(service: str, region: str, endpoint_url: str | None) -> Any:
    """One thread-safe client per service, region and endpoint, using the default credential chain."""
    session = boto3.session.Session()
    return session.client(service, region_name=region, endpoint_url=endpoint_url or None, config=_BOTO_CONFIG)


async def run(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run blocking AWS work in the worker pool and return its result."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_EXECUTOR, functools.partial(function, *args, **kwargs))


async def call(aws_client: Any, operation: str, **kwargs: Any) -> dict:
    """Run one AWS API call in the worker pool and return its response."""
    return await run(getattr(aws_client, operation), **kwargs)


def error_code(error: BaseException) -> str:
    if isinstance(error, ClientError):
        return error.response.get("Error", {}).get("Code", "")
    return ""


def is_not_found(error: BaseException) -> bool:
    return error_code(error) in ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed")


# The `reason` of a failed start (a label of the hub's spawn metrics): a fixed set, whatever AWS says.
FAILURE_REASONS = {
    "InsufficientInstanceCapacity": "capacity",
    "InstanceLimitExceeded": "quota",
    "VcpuLimitExceeded": "quota",
    "RequestLimitExceeded": "throttled",
    "Throttling": "throttled",
    "UnauthorizedOperation": "unauthorized",
    "AccessDenied": "unauthorized",
    "InvalidAMIID.NotFound": "image",
    "InvalidParameterValue": "invalid-request",
}


def failure_reason(error: BaseException) -> str:
    """The spawn-failure reason for an AWS error: one of FAILURE_REASONS' values, or "aws"."""
    return FAILURE_REASONS.get(error_code(error), "aws")


_MESSAGES = {
    "InsufficientInstanceCapacity": (
        "AWS has no {instance_type} capacity in {region} right now. Try again in a few minutes"
        " or pick another size."
    ),
    "InstanceLimitExceeded": (
        "The account has reached its limit of running instances. Stop a server you no longer"
        " need, or ask an administrator to raise the EC2 quota."
    ),
    "VcpuLimitExceeded": (
        "The account has reached its vCPU quota for {instance_type}. Pick a smaller size, or ask"
        " an administrator to raise the quota."
    ),
    "RequestLimitExceeded": "AWS is throttling requests right now. Wait a minute and start again.",
    "UnauthorizedOperation": (
        "The hub is not allowed to do this in AWS. An administrator needs to check the hub's"
        " IAM policy (details are in the hub log)."
    ),
    "InvalidAMIID.NotFound": (
        "The machine image for user servers does not exist. An administrator needs to check"
        " the image setting (details are in the hub log)."
    ),
    "InvalidParameterValue": (
        "AWS refused the launch settings. An administrator needs to check the size and image"
        " settings (details are in the hub log)."
    ),
}


def user_message(error: BaseException, *, instance_type: str, region: str) -> str:
    """A message a user can act on for an AWS error; the AWS details belong in the log."""
    template = _MESSAGES.get(error_code(error))
    if template:
        return template.format(instance_type=instance_type, region=region)
    if isinstance(error, BotoCoreError):
        return "The hub could not reach AWS. Try again in a minute; if it persists, tell an administrator."
    return "AWS could not start your server. Try again; if it fails again, tell an administrator."
