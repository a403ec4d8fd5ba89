"""Jupyter server extension of the user image: a kernel running a cell counts as activity.

Jupyter counts a kernel's messages as activity, so a long silent cell (a model training for an
hour) looks idle, and the hub's idle culler would stop the server under it. While any kernel is
busy, this marks the server active; jupyterhub-singleuser reports that to the hub.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from tornado.ioloop import PeriodicCallback

# jupyter_server counts every web-app setting whose name ends in "_last_activity".
SETTING = "ec2hub_busy_kernels_last_activity"


def _jupyter_server_extension_points():
    return [{"module": "ec2hub_activity"}]


def check_interval() -> float:
    """Seconds between checks: half the interval at which the server reports activity to the hub."""
    reported_every = float(os.environ.get("JUPYTERHUB_ACTIVITY_INTERVAL") or 300)
    return min(max(reported_every / 2, 1.0), 60.0)


def _load_jupyter_server_extension(serverapp) -> None:
    kernels = serverapp.kernel_manager
    settings = serverapp.web_app.settings

    def mark_busy_kernels() -> None:
        for kernel_id in kernels.list_kernel_ids():
            if getattr(kernels.get_kernel(kernel_id), "execution_state", "") == "busy":
                settings[SETTING] = datetime.now(UTC)
                return

    PeriodicCallback(mark_busy_kernels, check_interval() * 1000).start()
    serverapp.log.info("A busy kernel counts as activity (checked every %.0fs)", check_interval())
