"""`python -m hub.jobs`: run the jobs service where the hub that manages it says."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from urllib.parse import urlparse

from jupyterhub.services.auth import HubAuth

from hub.costs.budgets import Budgets, BudgetSettings
from hub.costs.ledger import Ledger
from hub.costs.prices import Prices
from hub.hub_api import hub_groups, hub_members
from hub.jobs.app import make_app
from hub.jobs.runner import Jobs
from hub.jobs.store import Store
from spawner import aws
from spawner.launcher import Launcher, LaunchSettings
from spawner.profiles import validate_profiles

log = logging.getLogger("ec2hub.jobs")

METRIC_NAMESPACE = "ec2hub/jobs"


def failure_metric(launcher: Launcher):
    """Each failed run counts in CloudWatch (ec2hub/jobs FailedRuns), where Terraform's alarm watches."""

    async def count_failure(job) -> None:
        await aws.call(
            launcher.client("cloudwatch"),
            "put_metric_data",
            Namespace=METRIC_NAMESPACE,
            MetricData=[
                {
                    "MetricName": "FailedRuns",
                    "Dimensions": [{"Name": "HubId", "Value": launcher.settings.hub_id}],
                    "Value": 1,
                    "Unit": "Count",
                }
            ],
        )

    return count_failure


async def serve() -> None:
    spec = json.loads(os.environ["EC2HUB_JOBS_SPEC"])
    launcher = Launcher(LaunchSettings.from_options(spec["launch"]))
    # Demoting an admin or leaving a group counts within a minute.
    hub_auth = HubAuth(cache_max_age=60)
    groups_of = hub_groups(hub_auth.api_url, hub_auth.api_token)
    # The ledger the Instances service keeps: budgets (when set) and each user's own spend.
    sizes = validate_profiles(spec["profiles"])
    ledger = Ledger(spec["costs_db_url"], Prices.load(launcher.settings.region).with_sizes(sizes))
    settings = BudgetSettings.from_env({"EC2HUB_BUDGETS": spec.get("budgets") or ""}) or BudgetSettings()
    budgets = Budgets(settings, ledger)
    jobs = Jobs(
        Store(spec["db_url"]),
        launcher,
        validate_profiles(spec["profiles"]),
        report_url=spec["report_url"],
        groups_of=groups_of,
        limits=spec["limits"],
        group_limits=spec["group_limits"],
        on_failure=failure_metric(launcher),
        budgets=budgets,
        members_of=hub_members(hub_auth.api_url, hub_auth.api_token),
    )
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/jobs/")
    app = make_app(prefix, jobs, hub_auth=hub_auth, groups_of=groups_of)
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    app.listen(url.port or 80, address=url.hostname or "127.0.0.1", xheaders=False)
    log.info("Jobs service listening on %s%s", url.geturl(), prefix)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Running jobs' instances carry on while the service is down; this round picks them up again.
    rounds = asyncio.create_task(jobs.run_forever(spec["period"]))
    await stop.wait()
    rounds.cancel()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    asyncio.run(serve())


if __name__ == "__main__":
    main()
