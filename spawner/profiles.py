"""Instance sizes: the allow-list users pick from, and the parse / validate steps of a user's choice."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import jinja2
from tornado import web


@dataclass(frozen=True)
class Profile:
    """One size on the spawn form."""

    slug: str
    display_name: str
    description: str
    instance_type: str
    vcpu: int
    memory_gib: float
    price_per_hour: float
    gpus: int = 0
    gpu_kind: str = ""
    spot: bool = False
    spot_discount: float = 0.0
    default: bool = False
    groups: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_config(cls, entry: Mapping[str, Any]) -> Profile:
        """One entry of `c.EC2Spawner.profiles`; ValueError saying what is wrong with it."""
        if not isinstance(entry, Mapping):
            raise ValueError(f"a size is a dict, not {type(entry).__name__}")
        known = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        unknown = sorted(set(entry) - known)
        missing = sorted(required - set(entry))
        if unknown or missing:
            problems = [f"unknown keys {unknown}"] if unknown else []
            problems += [f"missing keys {missing}"] if missing else []
            raise ValueError(f"size {entry.get('slug', '?')!r}: {'; '.join(problems)}")
        values = dict(entry)
        values["groups"] = frozenset(values.get("groups") or ())
        return cls(**values)

    def allowed_for(self, groups: Iterable[str]) -> bool:
        return not self.groups or bool(self.groups & set(groups))

    @property
    def spot_price_per_hour(self) -> float:
        return round(self.price_per_hour * (1 - self.spot_discount), 4)


def validate_profiles(entries: Iterable[Mapping[str, Any]]) -> list[Profile]:
    """Every size of `c.EC2Spawner.profiles`, checked: ValueError naming the first problem."""
    profiles = [Profile.from_config(entry) for entry in entries]
    if not profiles:
        raise ValueError("at least one size is needed")
    slugs = [p.slug for p in profiles]
    repeated = sorted({slug for slug in slugs if slugs.count(slug) > 1})
    if repeated:
        raise ValueError(f"sizes share a slug: {', '.join(repeated)}")
    return profiles


# On-demand Linux prices in us-east-1 (USD per hour); spot discounts are typical, not promised.
DEFAULT_PROFILES: list[dict[str, Any]] = [
    {
        "slug": "small",
        "display_name": "Small",
        "description": "Exploring data and light pandas work.",
        "instance_type": "t3.medium",
        "vcpu": 2,
        "memory_gib": 4,
        "price_per_hour": 0.0416,
    },
    {
        "slug": "medium",
        "display_name": "Medium",
        "description": "Everyday analysis: pandas, Parquet, Dask on one machine.",
        "instance_type": "m6i.xlarge",
        "vcpu": 4,
        "memory_gib": 16,
        "price_per_hour": 0.192,
        "spot": True,
        "spot_discount": 0.6,
        "default": True,
    },
    {
        "slug": "large",
        "display_name": "Large",
        "description": "Big joins, wide Dask clusters, CPU model training.",
        "instance_type": "m6i.4xlarge",
        "vcpu": 16,
        "memory_gib": 64,
        "price_per_hour": 0.768,
        "spot": True,
        "spot_discount": 0.6,
    },
    {
        "slug": "gpu",
        "display_name": "GPU",
        "description": "Training deep-learning models with TensorFlow.",
        "instance_type": "g5.xlarge",
        "vcpu": 4,
        "memory_gib": 16,
        "gpus": 1,
        "gpu_kind": "NVIDIA A10G",
        "price_per_hour": 1.006,
        "spot": True,
        "spot_discount": 0.65,
        "groups": ["gpu-users"],
    },
]


class ChoiceError(web.HTTPError):
    """A choice that is malformed or not allowed: HTTP 400 with a message naming the allowed sizes."""

    def __init__(self, problem: str, allowed: list[Profile]) -> None:
        names = ", ".join(p.slug for p in allowed) or "none (ask an administrator)"
        message = f"{problem} You may pick: {names}."
        super().__init__(400, message, reason=message)


@dataclass(frozen=True)
class Choice:
    size: str | None
    spot: bool = False


def parse_form(form: Mapping[str, list[str]]) -> dict[str, Any]:
    """Form fields (lists of strings) to user_options. Pure; forged fields are kept, for
    validation to refuse."""
    options: dict[str, Any] = {}
    for name, values in form.items():
        if name == "_xsrf":  # the hub's own protection of every form, not a choice
            continue
        if name == "size":
            options["size"] = values[0] if len(values) == 1 else values
        elif name == "spot":
            # Each card's spot checkbox sends its own size: spot counts for the chosen one.
            options["spot"] = form.get("size", [None])[0] in values
        else:
            options[name] = values
    return options


def parse_choice(user_options: Mapping[str, Any], allowed: list[Profile]) -> Choice:
    """user_options (from the form or the REST API) to a Choice; anything unexpected is refused."""
    unknown = set(user_options) - {"size", "spot"}
    if unknown:
        raise ChoiceError(f"Unknown option(s): {', '.join(sorted(map(str, unknown)))}.", allowed)
    size = user_options.get("size")
    if size is not None and not isinstance(size, str):
        raise ChoiceError("The size must be one name.", allowed)
    spot = user_options.get("spot", False)
    if not isinstance(spot, bool):
        raise ChoiceError("Spot must be true or false.", allowed)
    return Choice(size=size, spot=spot)


def validate_choice(choice: Choice, profiles: list[Profile], groups: Iterable[str]) -> tuple[Profile, bool]:
    """The profile and market a user may have for `choice`, or ChoiceError."""
    allowed = [p for p in profiles if p.allowed_for(groups)]
    if choice.size is None:
        if not allowed:
            raise ChoiceError("No size is open to you.", allowed)
        profile = next((p for p in allowed if p.default), allowed[0])
        return profile, False
    profile = next((p for p in allowed if p.slug == choice.size), None)
    if profile is None:
        exists = any(p.slug == choice.size for p in profiles)
        problem = f"The size {choice.size!r} is {'not open to you' if exists else 'unknown'}."
        raise ChoiceError(problem, allowed)
    if choice.spot and not profile.spot:
        raise ChoiceError(f"Spot is not offered for {profile.slug}.", allowed)
    return profile, choice.spot


_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=True,
    keep_trailing_newline=False,
)


def render_form(
    profiles: list[Profile],
    groups: Iterable[str],
    current: str | None = None,
    stop_reason: str = "",
    notes: Iterable[str] = (),
) -> str:
    """The spawn form: a card per size open to the user, with what they get and $/hour, and above
    them why the last server stopped without the user asking, if it did, and `notes` (the month's
    spend against the budget)."""
    allowed = [p for p in profiles if p.allowed_for(groups)]
    selected = current if any(p.slug == current for p in allowed) else None
    if selected is None and allowed:
        selected = next((p.slug for p in allowed if p.default), allowed[0].slug)
    template = _TEMPLATES.get_template("spawn_form.html")
    return template.render(sizes=allowed, selected=selected, stop_reason=stop_reason, notes=list(notes))
