"""Budgets: what a user and their groups may spend in a month (UTC), from the cost ledger.

Each limit has a soft part (a warning) and a hard part (new jobs are refused, with a message that
says the budget, the spend and who to ask; running work is left alone). A user has the default
per-user budget; each group may have a budget of its own, on what its members spent together. An
admin may lift the limits of one user until a time.

    EC2HUB_BUDGETS='{"user": {"soft": 50, "hard": 100},
                     "groups": {"ml-team": {"soft": 800, "hard": 1000}},
                     "contact": "the platform team"}'
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from hub.costs.ledger import Base, Ledger
from hub.settings import SettingsError


@dataclass(frozen=True)
class Limit:
    soft: float = math.inf
    hard: float = math.inf

    @classmethod
    def parse(cls, value: object, where: str) -> Limit:
        if not isinstance(value, dict) or set(value) - {"soft", "hard"}:
            raise SettingsError(f"EC2HUB_BUDGETS: {where} is an object with soft and/or hard (USD)")
        numbers = {k: v for k, v in value.items()}
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in numbers.values()
        ):
            raise SettingsError(f"EC2HUB_BUDGETS: {where}'s limits are amounts in USD above 0")
        hard = float(numbers.get("hard", math.inf))
        # No soft limit: the warning comes with the hard one.
        limit = cls(float(numbers.get("soft", hard)), hard)
        if limit.soft > limit.hard:
            raise SettingsError(f"EC2HUB_BUDGETS: {where}'s soft limit is above its hard limit")
        return limit


@dataclass(frozen=True)
class BudgetSettings:
    user: Limit = Limit()
    groups: Mapping[str, Limit] = field(default_factory=dict)
    # Over a hard limit, servers of sizes above this $/hour are refused (None: above the cheapest).
    large_above: float | None = None
    contact: str = "an administrator"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BudgetSettings | None:
        """EC2HUB_BUDGETS, checked at the hub's start; None when no budget is set."""
        raw = env.get("EC2HUB_BUDGETS", "").strip()
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            raise SettingsError("EC2HUB_BUDGETS is not JSON") from None
        names = {"user", "groups", "large_above", "contact"}
        unknown = set(value) - names if isinstance(value, dict) else {1}
        if unknown:
            raise SettingsError("EC2HUB_BUDGETS: an object of user, groups, large_above and contact")
        groups = value.get("groups", {})
        if not isinstance(groups, dict):
            raise SettingsError("EC2HUB_BUDGETS: groups is an object of group name to limits")
        large_above = value.get("large_above")
        if large_above is not None and (not isinstance(large_above, int | float) or large_above < 0):
            raise SettingsError("EC2HUB_BUDGETS: large_above is a price in USD per hour")
        return cls(
            large_above=None if large_above is None else float(large_above),
            user=Limit.parse(value.get("user", {}), "user"),
            groups={name: Limit.parse(limit, f"group {name}") for name, limit in groups.items()},
            contact=str(value.get("contact") or "an administrator"),
        )


class Refusal(Base):
    """A start refused over a hard limit (the hub, the jobs service and the gateway each write theirs
    here; the Instances service's metrics count them)."""

    __tablename__ = "budget_refusals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(255))
    what: Mapped[str] = mapped_column(String(16))  # server, job or cluster
    at: Mapped[int] = mapped_column(BigInteger)


class Lift(Base):
    """An admin lifted one user's limits until a time."""

    __tablename__ = "budget_lifts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(255), index=True)
    until: Mapped[int] = mapped_column(BigInteger)  # epoch seconds
    by: Mapped[str] = mapped_column(String(255))
    at: Mapped[int] = mapped_column(BigInteger)


def money(dollars: float) -> str:
    """$1,234.56, or $0.0042 under a dollar (a test's or a first day's amounts)."""
    return f"${dollars:,.2f}" if dollars >= 1 else f"${dollars:.4f}"


@dataclass(frozen=True)
class Standing:
    """Where a user stands this month: their spend and their groups', against the limits."""

    user: str
    spent: float
    limit: Limit
    groups: Mapping[str, tuple[float, Limit]]
    lifted_until: datetime | None
    contact: str

    def _over(self, part: str) -> list[str]:
        reasons = []
        if self.spent >= getattr(self.limit, part):
            reasons.append(f"you have spent {money(self.spent)} of your {money(getattr(self.limit, part))}")
        for group, (spent, limit) in sorted(self.groups.items()):
            if spent >= getattr(limit, part):
                reasons.append(f"group {group} has spent {money(spent)} of its {money(getattr(limit, part))}")
        return reasons

    @property
    def lifted(self) -> bool:
        return self.lifted_until is not None

    def refusal(self, what: str) -> str | None:
        """Why `what` ("a cluster", "a job", "a large size") is refused, or None."""
        reasons = [] if self.lifted else self._over("hard")
        if not reasons:
            return None
        return (
            f"Over budget this month: {'; '.join(reasons)} budget. {what[0].upper()}{what[1:]} cannot start;"
            f" what runs goes on. Ask {self.contact} to raise the budget or lift the limit for you."
        )

    def warning(self) -> str | None:
        """What the user is told when over a soft limit (or over a hard one an admin lifted)."""
        reasons = self._over("soft")
        if not reasons:
            return None
        lifted = f" (limits lifted until {self.lifted_until:%Y-%m-%d %H:%M} UTC)" if self.lifted else ""
        return f"Nearing this month's budget: {'; '.join(reasons)} soft limit{lifted}."


class Budgets:
    """The budgets, checked against the ledger's database (the Instances service keeps it)."""

    def __init__(
        self, settings: BudgetSettings, ledger: Ledger, clock: Callable[[], float] | None = None
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.clock = clock or ledger.clock
        Base.metadata.create_all(ledger.engine)  # the lifts' table

    def _standing(self, user: str, groups: list[str], members: Mapping[str, list[str]]) -> Standing:
        now = datetime.fromtimestamp(self.clock(), UTC)
        month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        by_user: dict[str, float] = {}
        for (name, _purpose, _kind, _day), dollars in self.ledger.spend(month).items():
            by_user[name] = by_user.get(name, 0.0) + dollars
        budgeted = {
            group: (
                sum(by_user.get(m, 0.0) for m in set(members.get(group, [user]))),
                self.settings.groups[group],
            )
            for group in groups
            if group in self.settings.groups
        }
        with self.ledger.session() as session:
            until = session.scalar(
                select(Lift.until).where(Lift.user == user).order_by(Lift.until.desc()).limit(1)
            )
        lifted = datetime.fromtimestamp(until, UTC) if until and until > now.timestamp() else None
        return Standing(
            user, by_user.get(user, 0.0), self.settings.user, budgeted, lifted, self.settings.contact
        )

    async def standing(self, user: str, groups: list[str], members: Mapping[str, list[str]]) -> Standing:
        """`members`: the users of each of the user's groups that has a budget (the group's spend)."""
        return await asyncio.to_thread(self._standing, user, groups, members)

    async def summary(self, user: str, groups: list[str], members: Mapping[str, list[str]]) -> dict[str, Any]:
        """What JupyterLab's status bar shows: the user's server's $/hour (as the ledger's last round
        saw it), the month's spend, the budget and any warning or refusal."""
        standing = await self.standing(user, groups, members)
        running = await asyncio.to_thread(self.ledger.running, user, "server")
        server = None
        if running:
            detail, hourly = running[0]
            server = {"size": detail.split()[0], "hourly": hourly, "spot": detail.endswith(" spot")}
        limit = standing.limit
        return {
            "user": user,
            "server": server,
            "month_to_date": round(standing.spent, 4),
            "budget": {"soft": limit.soft, "hard": limit.hard} if math.isfinite(limit.hard) else None,
            "warning": standing.warning(),
            "refusal": standing.refusal("a new job, a new cluster or a large server"),
            "prices_as_of": self.ledger.prices.as_of,
            "contact": self.settings.contact,
        }

    async def refused(self, user: str, what: str) -> None:
        """Record that a start of `what` (server, job or cluster) was refused to `user`."""

        def record() -> None:
            with self.ledger.session() as session:
                session.add(Refusal(user=user, what=what, at=int(self.clock())))

        await asyncio.to_thread(record)

    def refusals(self) -> dict[str, int]:
        """How many starts were refused, by what, ever."""
        with self.ledger.session() as session:
            rows = session.execute(select(Refusal.what, func.count()).group_by(Refusal.what))
            return {what: count for what, count in rows}

    def lift(self, user: str, until: datetime, by: str) -> None:
        with self.ledger.session() as session:
            session.add(Lift(user=user, until=int(until.timestamp()), by=by, at=int(self.clock())))
