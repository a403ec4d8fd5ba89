"""What a job request may say: the API's bodies parsed and checked against the owner's sizes and
quotas (pure: no store, no AWS), and when a schedule is due."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from hub.jobs.store import Definition
from spawner.profiles import Profile

OUTPUT_FORMATS = ("ipynb", "html")
# Quotas, for everyone unless a group's are larger.
# max_queued: jobs waiting to run (created or queued), so that a loop that submits jobs stops at a
# number someone can still read through and stop.
DEFAULT_LIMITS = {"max_concurrent": 4, "max_queued": 50, "max_timeout": 24 * 3600}
DEFAULT_TIMEOUT = 3600
MAX_RETRIES = 5
NAME_MAX = 255


class JobError(Exception):
    """A refusal with a message for the person: `status` is the HTTP status it maps to."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def compute_type(size: Profile) -> str:
    """How a size shows in JupyterLab's "Compute type" list (shown verbatim, sent back verbatim)."""
    price = size.price_per_hour
    return f"{size.slug} ({size.vcpu} vCPU, {size.memory_gib:g} GiB, ${price:.3f}/h)"


def limits_for(
    groups: Iterable[str], defaults: Mapping[str, float], per_group: Mapping[str, Mapping]
) -> dict:
    """The user's quotas: the defaults, raised by any of their groups' own."""
    limits = {**DEFAULT_LIMITS, **defaults}
    for group in groups:
        for name, value in per_group.get(group, {}).items():
            limits[name] = max(limits.get(name, 0), value)
    return limits


@dataclass(frozen=True)
class Request:
    """What a person asked for, checked: the size, timeout, retries and spot of a run."""

    size: Profile
    timeout_seconds: int
    max_retries: int
    spot: bool


def _tag_values(tags: Iterable[str]) -> dict[str, str]:
    """`timeout=3600`, `retries=2`, `spot`: run settings given as tags in JupyterLab's form."""
    found = {}
    for tag in tags:
        name, _, value = str(tag).partition("=")
        found[name.strip().lower()] = value.strip()
    return found


def _whole_number(value: Any, what: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise JobError(f"{what} must be a whole number, not {value!r}") from None
    if number < 0:
        raise JobError(f"{what} must be 0 or more, not {number}")
    return number


def check_request(body: Mapping[str, Any], sizes: list[Profile], limits: Mapping[str, float]) -> Request:
    """The run settings of a job or definition, or JobError saying what is wrong."""
    if not sizes:
        raise JobError("None of the sizes is open to your groups; ask an administrator.", 403)
    wanted = body.get("compute_type") or body.get("size") or ""
    if not isinstance(wanted, str):
        raise JobError("The size (compute_type) is a name.")
    by_name = {compute_type(s): s for s in sizes} | {s.slug: s for s in sizes}
    if not wanted:
        size = min(sizes, key=lambda s: (s.price_per_hour, s.slug))
    elif wanted in by_name:
        size = by_name[wanted]
    else:
        names = ", ".join(s.slug for s in sizes)
        raise JobError(
            f"Size {str(wanted)[:80]!r} is not open to your groups. Sizes you may use: {names}.", 403
        )
    extra = {**(body.get("runtime_environment_parameters") or {}), **_tag_values(body.get("tags") or [])}
    for name in ("timeout_seconds", "max_retries", "spot"):
        if body.get(name) is not None:
            extra[name] = body[name]
    longest = int(limits["max_timeout"])
    named = extra.get("timeout_seconds", extra.get("timeout"))
    # None named (or 0): an hour, or the longest the groups allow when that is shorter.
    timeout = (_whole_number(named, "timeout") if named not in (None, "") else 0) or min(
        DEFAULT_TIMEOUT, longest
    )
    if timeout > longest:
        raise JobError(f"A timeout of {timeout} s is longer than your groups allow ({longest} s).", 403)
    retries = _whole_number(extra.get("max_retries", extra.get("retries", 0)), "retries")
    if retries > MAX_RETRIES:
        raise JobError(f"At most {MAX_RETRIES} retries.")
    spot_value = extra.get("spot", False)
    spot = spot_value is True or str(spot_value).strip().lower() in ("", "true", "1", "yes")
    if "spot" not in extra:
        spot = False
    if spot and not size.spot:
        raise JobError(f"Size {size.slug} is not offered on spot.")
    return Request(size, timeout, retries, spot)


def check_common(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a job and a definition share, checked and normalised."""
    name = str(body.get("name") or "").strip()
    filename = str(body.get("input_filename") or "").strip()
    if not name or len(name) > NAME_MAX:
        raise JobError("A job needs a name (at most 255 characters).")
    if (
        not filename.endswith(".ipynb")
        or "/" in filename
        or filename.startswith(".")
        or len(filename) > NAME_MAX
    ):
        raise JobError("The input must be a notebook file name (…ipynb), without folders.")
    formats = list(body.get("output_formats") or ["ipynb"])
    unknown = [f for f in formats if f not in OUTPUT_FORMATS]
    if unknown:
        raise JobError(f"Output formats are {', '.join(OUTPUT_FORMATS)}, not {', '.join(map(str, unknown))}.")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict) or not all(
        isinstance(k, str) and k.isidentifier() for k in parameters
    ):
        raise JobError("Parameters are names (Python identifiers) with values.")
    tags = body.get("tags") or []
    if not isinstance(tags, list):
        raise JobError("Tags are a list of strings.")
    environment = body.get("runtime_environment_parameters") or {}
    if not isinstance(environment, dict):
        raise JobError("runtime_environment_parameters is an object.")
    return {
        "name": name,
        "input_filename": filename,
        "output_formats": formats,
        "parameters": {k: str(v) for k, v in parameters.items()},
        "tags": [str(t) for t in tags],
        "runtime_environment_name": str(body.get("runtime_environment_name") or "ec2hub"),
        "runtime_environment_parameters": environment,
        "package_input_folder": bool(body.get("package_input_folder")),
    }


def check_input_path(value: Any) -> tuple[str, str]:
    """A notebook already in the owner's S3 folder (what a pipeline runs: nothing is staged), as
    (its folder's path with a trailing "/" or "", its file name); JobError for anything else."""
    path = str(value or "").strip()
    parts = path.split("/")
    if (
        len(path) > 1024
        or not path.endswith(".ipynb")
        or any(part in ("", ".", "..") or part.startswith(".") for part in parts)
    ):
        raise JobError(
            "input_path is a notebook's path in your S3 folder, like pipelines/02-etl.ipynb"
            " (no leading /, no . or .. parts)."
        )
    folder = "/".join(parts[:-1])
    return (f"{folder}/" if folder else ""), parts[-1]


def check_schedule(schedule: Any, timezone: Any) -> tuple[str | None, str]:
    zone = str(timezone or "UTC")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise JobError(f"Unknown time zone {zone[:64]!r}.") from None
    if schedule in (None, ""):
        return None, zone
    schedule = str(schedule).strip()
    if len(schedule.split()) != 5 or not croniter.is_valid(schedule):
        raise JobError(f"{schedule[:80]!r} is not a schedule (five cron fields, e.g. '0 2 * * *').")
    return schedule, zone


def due_time(definition: Definition, now: int) -> int | None:
    """The latest time of the schedule in (last fire, now], or None: one run for any number missed."""
    if not (definition.active and definition.staged and definition.schedule):
        return None
    zone = ZoneInfo(definition.timezone or "UTC")
    since = datetime.fromtimestamp((definition.last_fire_time or definition.create_time) / 1000, zone)
    times = croniter(definition.schedule, since)
    first = int(times.get_next(float) * 1000)
    if first > now:
        return None
    latest = first
    while True:
        following = int(times.get_next(float) * 1000)
        if following > now:
            return latest
        latest = following


SORTABLE = ("name", "input_filename", "create_time", "update_time", "status", "start_time", "end_time")


def sort_key(fields: str) -> list[tuple[str, bool]]:
    """`name:asc,create_time:desc` as (field, descending) pairs; unknown fields refused."""
    order = []
    for part in [p for p in fields.split(",") if p.strip()]:
        name, _, direction = part.strip().partition(":")
        if name not in SORTABLE or direction not in ("", "asc", "desc"):
            raise JobError(f"Cannot sort by {part[:40]!r}.")
        order.append((name, direction == "desc"))
    return order or [("create_time", True)]
