"""Why a user's instance is not running, in words for the user, from what EC2 says about it."""

from __future__ import annotations

from collections.abc import Mapping

UNREACHABLE = (
    "your Jupyter server stopped answering while its instance was running (its processes ended)."
    " The hub stopped the instance; your home is on its disk. Start again to get it back."
)

SPOT_RECLAIMED = (
    "AWS reclaimed your spot instance (spot capacity is taken back when AWS needs it). It is"
    " stopped and your home is on its disk. Start again to get it back; sizes without spot run"
    " on-demand and are never reclaimed."
)


class InstanceEnded(RuntimeError):
    """The instance stopped or was terminated while the hub waited for it to run."""

    def __init__(self, instance: Mapping) -> None:
        self.instance = instance
        state = instance["State"]["Name"]
        reason = instance.get("StateReason", {}).get("Message", "no reason given")
        super().__init__(f"instance {instance['InstanceId']} is {state}: {reason}")


def why_not_running(instance: Mapping | None) -> str:
    """The user's explanation for an instance EC2 reports as not running (None: EC2 has no such instance)."""
    if instance is None:
        return (
            "your instance no longer exists in EC2, and the home on its disk went with it; your S3"
            " folder (~/s3) is safe. Start again for a new instance."
        )
    state = instance["State"]["Name"]
    code = instance.get("StateReason", {}).get("Code", "")
    terminated = state in ("shutting-down", "terminated")
    if code == "Server.SpotInstanceShutdown":
        return SPOT_RECLAIMED
    if code == "Server.SpotInstanceTermination":
        return (
            "AWS reclaimed your spot instance and terminated it: the home on its disk is gone; your"
            " S3 folder (~/s3) is safe. Start again for a new instance."
        )
    if code in ("Server.InternalError", "Server.InsufficientInstanceCapacity"):
        kept = "" if terminated else " Your home is on its disk."
        return f"AWS could not boot your instance ({instance['StateReason'].get('Message', code)}).{kept}"
    if code == "Client.InstanceInitiatedShutdown":
        return "your instance shut itself down. Your home is on its disk; start again to get it back."
    if terminated:
        return (
            "your instance was terminated outside the hub (by an administrator or in the AWS"
            " console): the home on its disk is gone; your S3 folder (~/s3) is safe. Start again"
            " for a new instance."
        )
    return (
        "your instance was stopped outside the hub (by an administrator or in the AWS console)."
        " Your home is on its disk; start again to get it back."
    )
