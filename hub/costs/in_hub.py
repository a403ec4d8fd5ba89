"""Costs inside the hub, where users decide: a banner on every hub page over a soft or hard limit, the
spend and budget above the spawn form's sizes, and the check that keeps a large server from starting
over a hard limit. (JupyterLab's status bar asks the jobs service, which its server reaches.)

All of it reads the ledger's database, which the Instances service keeps; every read runs in a
thread, off the hub's event loop, and a ledger that cannot be read hides the banner instead of
breaking a page.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from jupyterhub.spawner import SpawnException
from sqlalchemy.exc import SQLAlchemyError

from hub.costs.budgets import Budgets, BudgetSettings, Standing, money
from hub.costs.ledger import Ledger
from hub.costs.prices import Prices
from spawner.profiles import Profile, render_form

log = logging.getLogger("ec2hub.costs")

# Seconds a banner is shown as found before the ledger is looked at again.
BANNER_MAX_AGE = 30.0


class HubCosts:
    """What the hub shows and checks of one user's spend and budgets."""

    def __init__(
        self,
        settings: BudgetSettings | None,
        db_url: str,
        region: str,
        clock: Callable[[], float] | None = None,
    ) -> None:
        # No EC2HUB_BUDGETS: the spend is shown, nothing is limited.
        self.settings = settings or BudgetSettings()
        self.enforced = settings is not None
        self.db_url = db_url
        self.region = region
        self.clock = clock
        self._budgets: Budgets | None = None
        self._notices: dict[str, tuple[str, float]] = {}  # user: (banner, when found)
        self._looking: set[str] = set()

    def __deepcopy__(self, memo: dict) -> HubCosts:
        # traitlets deep-copies config values (and a bound method's object with it): the spawner's
        # form, the authenticator's hook and the pages' banner must share this one, and its cache.
        return self

    def budgets(self, sizes: list[Profile]) -> Budgets:
        if self._budgets is None:
            prices = Prices.load(self.region).with_sizes(sizes)
            ledger = Ledger(self.db_url, prices, *([self.clock] if self.clock else []))
            self._budgets = Budgets(self.settings, ledger)
        return self._budgets

    async def standing(self, user: Any, sizes: list[Profile] | None = None) -> Standing:
        """`user`: the hub's User. Group members are read here, on the loop; the ledger in a thread."""
        groups = [g for g in user.groups if g.name in self.settings.groups]
        members = {g.name: [u.name for u in g.users] for g in groups}
        if sizes is None:
            sizes = user.spawner.profile_list()
        return await self.budgets(sizes).standing(user.name, [g.name for g in user.groups], members)

    async def _standing_or_none(self, user: Any) -> Standing | None:
        try:
            return await self.standing(user)
        except SQLAlchemyError as e:
            log.warning("The cost ledger cannot be read: %s", e)
            return None

    # -- the banner on every hub page -------------------------------------------------------------

    def banner(self, user: Any) -> str:
        """JupyterHub's template variable `ec2hub_budget_notice` (hub/templates/page.html): over a
        soft or hard limit, what the user is told. JupyterHub calls it on its loop for every page,
        so it answers from what the last look at the ledger found (at sign-in, at the spawn form,
        or at most BANNER_MAX_AGE seconds ago) and has a new look taken in the background."""
        if user is None or not self.enforced:
            return ""
        notice, at = self._notices.get(user.name, ("", -math.inf))
        if time.monotonic() - at > BANNER_MAX_AGE and user.name not in self._looking:
            self._looking.add(user.name)
            task = asyncio.get_running_loop().create_task(self._look(user))
            task.add_done_callback(lambda _: self._looking.discard(user.name))
        return notice

    async def _look(self, user: Any) -> Standing | None:
        standing = await self._standing_or_none(user)
        if standing is not None:
            notice = standing.refusal("a new job, a new cluster or a large server") or standing.warning()
            self._notices[user.name] = (notice or "", time.monotonic())
        return standing

    async def post_auth_hook(self, authenticator: Any, handler: Any, authentication: dict) -> dict:
        """At sign-in, a first look, so the first page already has the banner."""
        user = handler.find_user(authentication["name"]) if authentication else None
        if user is not None and self.enforced:
            await self._look(user)
        return authentication

    # -- the spawn form -----------------------------------------------------------------------------

    async def spawn_form(self, spawner: Any) -> str:
        """The sizes with their $/hour, and above them this month's spend against the budgets."""
        standing = await self._look(spawner.user)
        notes = [] if standing is None else self.notes(standing)
        return render_form(
            spawner.profile_list(),
            spawner.group_names(),
            spawner.size,
            stop_reason=getattr(spawner, "stop_reason", ""),
            notes=notes,
        )

    def notes(self, standing: Standing) -> list[str]:
        budgets = self._budgets
        as_of = budgets.ledger.prices.as_of if budgets else ""
        mine = f"This month you have spent {money(standing.spent)}"
        if math.isfinite(standing.limit.hard):
            mine += f" of your {money(standing.limit.hard)} budget"
        notes = [f"{mine} (prices of {as_of})." if as_of else f"{mine}."]
        for group, (spent, limit) in sorted(standing.groups.items()):
            notes.append(f"Group {group} has spent {money(spent)} of its {money(limit.hard)} budget.")
        return notes

    # -- the server's check -------------------------------------------------------------------------

    async def check_server(self, spawner: Any) -> None:
        """The pre-spawn hook: over a hard limit, a server of a size above `large_above` (by default,
        any but the cheapest) does not start; the user is told why and what still starts."""
        sizes = spawner.profile_list()
        chosen = next((p for p in sizes if p.slug == spawner.size), None)
        if chosen is None or not self.enforced:
            return
        threshold = self.settings.large_above
        if threshold is None:
            threshold = min(p.price_per_hour for p in sizes)
        if chosen.price_per_hour <= threshold:
            return
        standing = await self.standing(spawner.user, sizes)
        refusal = standing.refusal(f"a {chosen.display_name} server (${chosen.price_per_hour:.3f}/hour)")
        if refusal:
            await self.budgets(sizes).refused(spawner.user.name, "server")
            error = SpawnException(
                f"{refusal} Sizes up to ${threshold:.3f}/hour still start.", reason="budget", status_code=403
            )
            error.jupyterhub_message = error.message
            raise error
