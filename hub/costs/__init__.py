"""What users' instances cost: the price table, the ledger of what each user's instances ran up, and
the budgets checked against it."""

from __future__ import annotations

from collections.abc import Mapping

from hub.settings import Settings


def costs_db_url(settings: Settings, env: Mapping[str, str]) -> str:
    """The ledger's database: EC2HUB_COSTS_DB_URL, or SQLite in the hub's state folder."""
    return (
        env.get("EC2HUB_COSTS_DB_URL", "").strip()
        or f"sqlite:///{settings.state_dir / 'hub' / 'costs.sqlite'}"
    )
