"""`python -m hub.instances`: run the Instances service where the hub that manages it says."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuth

from hub.costs.budgets import Budgets, BudgetSettings
from hub.costs.ledger import Ledger, keep_ledger
from hub.costs.prices import Prices
from hub.instances.app import HubInstances, HubUsers, ServiceSettings, make_app
from hub.reconciler import OrphanReconciler

EVERY_STATE = ["pending", "running", "shutting-down", "stopping", "stopped", "terminated"]


async def serve() -> None:
    service = ServiceSettings.from_env()
    # Demoting an admin in the hub locks them out of this page within a minute, not the default five.
    hub_auth = HubOAuth(cache_max_age=60)
    instances = HubInstances(service.hub_id, service.region, service.endpoint_url)
    hub_users = HubUsers(hub_auth.api_url, hub_auth.api_token)
    reconciler = OrphanReconciler(
        instances, hub_users, grace=service.orphan_grace, action=service.orphan_action
    )
    ledger = Ledger(service.costs_db_url, Prices.load(service.region).with_sizes(service.profiles))
    budget_settings = BudgetSettings.from_env(os.environ)
    budgets = Budgets(budget_settings, ledger) if budget_settings else None
    app = make_app(
        service,
        hub_auth=hub_auth,
        instances=instances,
        hub_users=hub_users,
        reconciler=reconciler,
        ledger=ledger,
        budgets=budgets,
    )
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    app.listen(url.port or 80, address=url.hostname or "127.0.0.1")
    logging.getLogger("ec2hub.instances").info(
        "Instances page listening on %s%s", url.geturl(), service.prefix
    )
    # The hub stops its managed services with SIGINT, then SIGTERM: either is a clean exit.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reconciling = asyncio.create_task(reconciler.run_forever(service.reconcile_every))
    # Every instance of the hub, terminated ones too while EC2 lists them: their end times.
    costing = asyncio.create_task(
        keep_ledger(ledger, lambda: instances.list(EVERY_STATE), service.volume_gb, service.costs_period)
    )
    await stop.wait()
    reconciling.cancel()
    costing.cancel()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    asyncio.run(serve())


if __name__ == "__main__":
    main()
