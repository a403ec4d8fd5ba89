"""Cluster limits per group: what each of a user's groups allows, and the defaults."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Limits per group: a user gets, for each limit, the largest of their groups' (the default's when
# none of their groups sets it).
DEFAULT_LIMITS = {
    "max_workers": 8,  # workers in one cluster
    "max_cores": 32,  # worker cores over all of a user's clusters
    "max_clusters": 2,  # clusters a user has at once
    "max_lifetime": 12 * 3600.0,  # seconds a cluster may live, however busy
}


def limits_for(groups: Iterable[str], default_limits: Mapping, group_limits: Mapping) -> dict[str, float]:
    """The limits of a member of `groups`: per limit, the largest any of the groups allows."""
    limits = {**DEFAULT_LIMITS, **default_limits}
    for group in groups:
        for key, value in group_limits.get(group, {}).items():
            if key not in DEFAULT_LIMITS:
                raise ValueError(
                    f"unknown limit {key!r} for group {group!r}: one of {', '.join(DEFAULT_LIMITS)}"
                )
            limits[key] = max(limits[key], value)
    return limits
