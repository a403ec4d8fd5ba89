"""The one place that reads moto's in-memory backends for instances: the runtime boots what it
finds there, the fault switches act on it."""

from __future__ import annotations

from moto.backends import get_backend
from moto.ec2.models.instances import Instance


def all_instances() -> list[Instance]:
    """Every instance of every account and region of this moto."""
    found = []
    for account_backend in list(get_backend("ec2").values()):
        for region_backend in list(account_backend.values()):
            for reservation in list(region_backend.reservations.values()):
                found.extend(reservation.instances)
    return found


def find_instance(instance_id: str) -> Instance:
    """The instance `instance_id` (LookupError when there is none)."""
    for instance in all_instances():
        if instance.id == instance_id:
            return instance
    raise LookupError(f"no instance {instance_id}")
