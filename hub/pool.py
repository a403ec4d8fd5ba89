"""The pool keeper: a service the hub starts (and restarts) that keeps the hot pool full.

Spawners claim pool instances in the hub's process (spawner/pool.py); this process only launches
what each size is short of, every few seconds, with the hub's AWS
credentials and nothing else of the hub's (no token of any user, no secret of the hub's).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Mapping

from botocore.exceptions import BotoCoreError, ClientError
from traitlets.config import Config

from hub.instances import AWS_VARIABLES, configured_profiles
from hub.settings import REPO_ROOT, Settings, SettingsError
from spawner.launcher import Launcher, LaunchSettings
from spawner.pool import HotPool
from spawner.profiles import Profile

SERVICE_NAME = "hot-pool"
# Seconds between two checks that every size has its pool instances: a claim is replaced within
# this, plus a boot.
REFILL_EVERY = 3.0
# After a failed refill (AWS said no: capacity, limits, throttling), the next try waits this long.
RETRY_AFTER_FAILURE = 60.0

log = logging.getLogger("ec2hub.pool")


def configure_pool_service(c: Config, settings: Settings, env: Mapping[str, str] | None = None) -> None:
    """Start the pool keeper as the managed service `hot-pool` when `EC2HUB_HOT_POOL` asks for a pool."""
    if not any(n > 0 for n in settings.hot_pool.values()):
        return
    env = settings.env if env is None else env
    spawner = c.EC2Spawner
    # c.EC2Spawner as configure() set it from the settings: the same launches as the spawner's.
    launch = LaunchSettings.from_options(spawner)
    spec = {
        "launch": dataclasses.asdict(launch),
        "wanted": dict(settings.hot_pool),
        "profiles": configured_profiles(c),
        "server_port": int(spawner.get("server_port", 8888)),
        "refill_every": REFILL_EVERY,
    }
    try:
        HotPool(Launcher(launch), [Profile.from_config(p) for p in spec["profiles"]], spec["wanted"], 0)
    except ValueError as e:
        raise SettingsError(f"EC2HUB_HOT_POOL: {e}") from None
    environment = {name: env[name] for name in AWS_VARIABLES if env.get(name)}
    environment["EC2HUB_POOL_SPEC"] = json.dumps(spec, default=sorted)
    c.JupyterHub.services.append(
        {
            "name": SERVICE_NAME,
            "command": [sys.executable, "-m", "hub.pool"],
            "cwd": str(REPO_ROOT),
            "environment": environment,
            "display": False,
        }
    )


async def keep_filled(pool: HotPool, every: float) -> None:
    """Refill every `every` seconds until cancelled; a failed refill is logged and tried again later."""
    while True:
        wait = every
        try:
            await pool.fill_once()
        except (ClientError, BotoCoreError) as e:
            log.warning("Could not refill (next try in %.0fs): %s", RETRY_AFTER_FAILURE, e)
            wait = RETRY_AFTER_FAILURE
        await asyncio.sleep(wait)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(levelname).1s %(asctime)s %(name)s] %(message)s")
    spec = json.loads(os.environ["EC2HUB_POOL_SPEC"])
    settings = LaunchSettings.from_options(spec["launch"])
    profiles = [Profile.from_config(p) for p in spec["profiles"]]
    pool = HotPool(Launcher(settings), profiles, spec["wanted"], spec["server_port"])
    log.info("Keeping the hot pool full: %s", ", ".join(f"{k}={v}" for k, v in pool.wanted.items()))
    asyncio.run(keep_filled(pool, float(spec["refill_every"])))


if __name__ == "__main__":
    main()
