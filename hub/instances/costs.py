"""The admins' Costs page (beside the Instances page, in the same service): what users' instances ran
up this month, by user, group, purpose and day, from the cost ledger (hub/costs), with a chart drawn
in the browser by Chart.js and a CSV export."""

from __future__ import annotations

import asyncio
import csv
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tornado import web
from tornado.httpclient import HTTPClientError

from hub.costs.ledger import Ledger
from hub.instances.app import AdminOnlyHandler
from hub.settings import REPO_ROOT

PURPOSES = ("server", "pool", "dask-scheduler", "dask-worker", "job")
TOP = 10
NO_USER = "(hot pool, unclaimed)"


def chart_script() -> Path:
    """Chart.js as npm installs it (package.json): the repository's node_modules, or the hub image's."""
    modules = Path(os.environ.get("EC2HUB_NODE_MODULES") or REPO_ROOT / "node_modules")
    return modules / "chart.js" / "dist" / "chart.umd.min.js"


@dataclass
class Spender:
    name: str
    groups: list[str]
    total: float = 0.0
    by_purpose: dict[str, float] = field(default_factory=dict)


@dataclass
class CostReport:
    """The month's spend in the shapes the page shows."""

    users: list[Spender]
    groups: dict[str, float]
    purposes: dict[str, float]
    days: dict[str, dict[str, float]]
    total: float

    @classmethod
    def of(
        cls, spend: Mapping[tuple[str, str, str, str], float], groups: Mapping[str, list[str]]
    ) -> CostReport:
        users: dict[str, Spender] = {}
        purposes: dict[str, float] = {}
        days: dict[str, dict[str, float]] = {}
        for (user, purpose, _kind, day), dollars in spend.items():
            name = user or NO_USER
            spender = users.setdefault(name, Spender(name, groups.get(user, [])))
            spender.total += dollars
            spender.by_purpose[purpose] = spender.by_purpose.get(purpose, 0.0) + dollars
            purposes[purpose] = purposes.get(purpose, 0.0) + dollars
            days.setdefault(day, {})[purpose] = days.get(day, {}).get(purpose, 0.0) + dollars
        by_group: dict[str, float] = {}
        for spender in users.values():
            for group in spender.groups:
                by_group[group] = by_group.get(group, 0.0) + spender.total
        return cls(
            users=sorted(users.values(), key=lambda s: (-s.total, s.name)),
            groups=dict(sorted(by_group.items(), key=lambda item: -item[1])),
            purposes={p: purposes[p] for p in (*PURPOSES, *sorted(purposes)) if p in purposes},
            days=dict(sorted(days.items())),
            total=sum(purposes.values()),
        )

    def chart(self) -> dict:
        """Chart.js data: a bar per day, stacked by purpose."""
        labels = list(self.days)
        return {
            "labels": labels,
            "datasets": [
                {"label": purpose, "data": [round(self.days[d].get(purpose, 0.0), 4) for d in labels]}
                for purpose in self.purposes
            ],
        }


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


class CostsHandler(AdminOnlyHandler):
    async def month_spend(self) -> tuple[datetime, dict]:
        ledger: Ledger | None = self.settings.get("ledger")
        if ledger is None:
            raise web.HTTPError(404, "The cost ledger is off on this hub.")
        since = month_start(self.settings["clock"]())
        return since, await asyncio.to_thread(ledger.spend, since)

    async def groups_of(self, spend: Mapping) -> dict[str, list[str]]:
        try:
            return await self.settings["hub_users"].groups_of(k[0] for k in spend if k[0])
        except (HTTPClientError, OSError) as e:
            raise web.HTTPError(
                503, "The hub did not answer the list of its users; reload in a minute."
            ) from e


class CostsPage(CostsHandler):
    async def get(self) -> None:
        since, spend = await self.month_spend()
        report = CostReport.of(spend, await self.groups_of(spend))
        ledger: Ledger = self.settings["ledger"]
        self.render_page(
            "costs.html",
            page="costs",
            report=report,
            top=report.users[:TOP],
            month=since.strftime("%B %Y"),
            prices=ledger.prices,
            chart=report.chart(),
        )


class CostsCsv(CostsHandler):
    """Every line of the month's spend: user, groups, purpose, kind, day, USD."""

    async def get(self) -> None:
        since, spend = await self.month_spend()
        groups = await self.groups_of(spend)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["user", "groups", "purpose", "kind", "day", "usd"])
        for (user, purpose, kind, day), dollars in sorted(spend.items()):
            writer.writerow([user, " ".join(groups.get(user, [])), purpose, kind, day, f"{dollars:.6f}"])
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="ec2hub-costs-{since:%Y-%m}.csv"')
        self.finish(out.getvalue())
