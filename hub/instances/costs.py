"""The admins' Costs page (beside the Instances page, in the same service): what users' instances ran
up this month, by user, group, purpose and day, from the cost ledger (hub/costs), with a chart drawn
in the browser by Chart.js and a CSV export."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from tornado import web
from tornado.httpclient import HTTPClientError

from hub.costs.budgets import Budgets
from hub.costs.ledger import Ledger
from hub.instances.app import AdminOnlyHandler
from hub.settings import REPO_ROOT

log = logging.getLogger("ec2hub.costs")

PURPOSES = ("server", "pool", "dask-scheduler", "dask-worker", "job")
TOP = 10
USER_MAX = 255
MAX_LIFT_DAYS = 31
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
        groups = await self.groups_of(spend)
        report = CostReport.of(spend, groups)
        ledger: Ledger = self.settings["ledger"]
        top = report.users[:TOP]
        self.render_page(
            "costs.html",
            page="costs",
            report=report,
            top=top,
            budgets=await self.budget_status(top, groups),
            xsrf=self.xsrf_token.decode("ascii"),
            notice=self.get_query_argument("lifted", "")[:USER_MAX],
            month=since.strftime("%B %Y"),
            prices=ledger.prices,
            chart=report.chart(),
        )

    async def budget_status(
        self, spenders: list[Spender], groups: Mapping[str, list[str]]
    ) -> dict[str, str] | None:
        """Each spender's standing against the budgets ("over", "near", "lifted"); None: no budgets."""
        budgets: Budgets | None = self.settings.get("budgets")
        if budgets is None:
            return None
        members: dict[str, list[str]] = {}
        for user, theirs in groups.items():
            for group in theirs:
                members.setdefault(group, []).append(user)
        status = {}
        for spender in spenders:
            standing = await budgets.standing(spender.name, spender.groups, members)
            if standing.refusal("work"):
                status[spender.name] = "over"
            elif standing.lifted:
                status[spender.name] = "lifted"
            elif standing.warning():
                status[spender.name] = "near"
        return status


class LiftBudget(CostsHandler):
    """An admin lifts one user's budget limits for some days (new work starts again)."""

    async def post(self) -> None:
        budgets: Budgets | None = self.settings.get("budgets")
        if budgets is None:
            raise web.HTTPError(404, "No budgets are set on this hub.")
        user = self.get_body_argument("user", "").strip()
        days = self.get_body_argument("days", "")
        if not user or len(user) > USER_MAX or not days.isdigit() or not 1 <= int(days) <= MAX_LIFT_DAYS:
            raise web.HTTPError(400, f"Name a user and a number of days from 1 to {MAX_LIFT_DAYS}.")
        until = self.settings["clock"]() + timedelta(days=int(days))
        await asyncio.to_thread(budgets.lift, user, until, self.admin["name"])
        log.info("%s lifted the budget limits of %s until %s", self.admin["name"], user, until)
        self.redirect(f"{self.service.prefix}costs?{urlencode({'lifted': user})}", status=303)


def as_text(cell: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula (a group named "=HYPERLINK(...)")."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


class CostsCsv(CostsHandler):
    """Every line of the month's spend: user, groups, purpose, kind, day, USD."""

    async def get(self) -> None:
        since, spend = await self.month_spend()
        groups = await self.groups_of(spend)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["user", "groups", "purpose", "kind", "day", "usd"])
        for (user, purpose, kind, day), dollars in sorted(spend.items()):
            cells = [user, " ".join(groups.get(user, [])), purpose, kind, day]
            writer.writerow([*map(as_text, cells), f"{dollars:.6f}"])
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="ec2hub-costs-{since:%Y-%m}.csv"')
        self.finish(out.getvalue())


class CostsCollector:
    """Prometheus families: instances by purpose, state and size (from the ledger's last look), and
    this month's spend by purpose and by group."""

    def __init__(self, report: CostReport, observed: list, profiles, refusals: dict[str, int]) -> None:
        self.report = report
        self.observed = observed
        self.sizes = {p.instance_type: p.slug for p in reversed(profiles)}
        self.refusals = refusals

    def collect(self):
        instances = GaugeMetricFamily(
            "ec2hub_instances",
            "The hub's instances at the ledger's last look, by purpose, state and size.",
            labels=["purpose", "state", "size"],
        )
        counted = Counter(
            (o.purpose, o.state, self.sizes.get(o.instance_type, o.instance_type))
            for o in self.observed
            if o.state != "terminated"
        )
        for labels, count in sorted(counted.items()):
            instances.add_metric(list(labels), count)
        yield instances
        by_purpose = GaugeMetricFamily(
            "ec2hub_spend_month_usd", "USD spent this month (UTC), by purpose.", labels=["purpose"]
        )
        for purpose, dollars in self.report.purposes.items():
            by_purpose.add_metric([purpose], round(dollars, 6))
        yield by_purpose
        by_group = GaugeMetricFamily(
            "ec2hub_spend_month_usd_by_group",
            "USD spent this month (UTC) by the members of each group.",
            labels=["group"],
        )
        for group, dollars in self.report.groups.items():
            by_group.add_metric([group], round(dollars, 6))
        yield by_group
        refused = CounterMetricFamily(
            "ec2hub_budget_refusals",
            "Starts refused over a hard budget limit (by the hub, the jobs service, the gateway), by what.",
            labels=["what"],
        )
        for what in ("server", "job", "cluster"):
            refused.add_metric([what], self.refusals.get(what, 0))
        yield refused


class CostsMetrics(CostsHandler):
    """Prometheus metrics, for hub admins (a scraper uses an admin's token)."""

    async def get(self) -> None:
        _since, spend = await self.month_spend()
        report = CostReport.of(spend, await self.groups_of(spend))
        registry = CollectorRegistry()
        ledger: Ledger = self.settings["ledger"]
        budgets: Budgets | None = self.settings.get("budgets")
        refusals = await asyncio.to_thread(budgets.refusals) if budgets else {}
        registry.register(CostsCollector(report, ledger.last_observed, self.service.profiles, refusals))
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(registry))
