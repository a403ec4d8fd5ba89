"""NotebookJobTrigger: follows an ec2hub job from Airflow's triggerer until it ends, so that a task
waiting for its notebook holds no worker slot.

It asks the jobs service every `poll_interval` seconds, each request bounded by `request_timeout`, until
the job ends or the task's deadline passes, when it stops the job. A hub that does not answer (or answers
5xx, as its proxy does while the hub restarts) is asked again, up to `max_errors` times in a row; a
refusal (the token revoked, the job deleted) ends the wait at once. The event it fires is the job as the
service describes it (NotebookJobOperator.execute_complete reads it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent

from ec2hub_airflow.hooks import ENDED, REQUEST_TIMEOUT, Ec2hubError, Ec2hubHook

POLL_INTERVAL = 30.0
MAX_ERRORS = 10
# Events that are not one of the job's own ends.
TIMEOUT = "timeout"
ERROR = "error"


class NotebookJobTrigger(BaseTrigger):
    """Fires once: {"status": COMPLETED|FAILED|STOPPED, "job": {...}}, or {"status": "timeout", "job":
    {...}} once it stopped the job at `deadline` (epoch seconds), or {"status": "error", "message": ...}."""

    def __init__(
        self,
        job_id: str,
        deadline: float,
        *,
        ec2hub_conn_id: str = Ec2hubHook.default_conn_name,
        poll_interval: float = POLL_INTERVAL,
        request_timeout: float = REQUEST_TIMEOUT,
        max_errors: int = MAX_ERRORS,
    ) -> None:
        super().__init__()
        self.job_id = job_id
        self.deadline = deadline
        self.ec2hub_conn_id = ec2hub_conn_id
        self.poll_interval = poll_interval
        self.request_timeout = request_timeout
        self.max_errors = max_errors

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{NotebookJobTrigger.__module__}.{NotebookJobTrigger.__qualname__}",
            {
                "job_id": self.job_id,
                "deadline": self.deadline,
                "ec2hub_conn_id": self.ec2hub_conn_id,
                "poll_interval": self.poll_interval,
                "request_timeout": self.request_timeout,
                "max_errors": self.max_errors,
            },
        )

    async def _hook(self) -> Ec2hubHook:
        return await Ec2hubHook.aconnect(self.ec2hub_conn_id, request_timeout=self.request_timeout)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = await self._hook()
        async with hook.async_client() as client:
            event = await self._follow(hook, client)
        yield TriggerEvent(event)

    async def _follow(self, hook: Ec2hubHook, client: httpx.AsyncClient) -> dict[str, Any]:
        errors = 0
        # Bounded by the deadline (and by max_errors): every round either ends or sleeps toward it.
        while True:
            try:
                job = await hook.aget_job(client, self.job_id)
            except Ec2hubError as e:
                errors += 1
                if e.final or errors > self.max_errors:
                    return {"status": ERROR, "job_id": self.job_id, "message": str(e)}
                self.log.warning(
                    "Job %s: %s (%d of %d errors in a row)", self.job_id, e, errors, self.max_errors
                )
            else:
                errors = 0
                if job.get("status") in ENDED:
                    return {"status": job["status"], "job": job}
            if time.time() >= self.deadline:
                return await self._stop_at_deadline(hook, client)
            await asyncio.sleep(self.poll_interval)

    async def _stop_at_deadline(self, hook: Ec2hubHook, client: httpx.AsyncClient) -> dict[str, Any]:
        try:
            job = await hook.astop_job(client, self.job_id)
        except Ec2hubError as e:
            return {"status": TIMEOUT, "job_id": self.job_id, "message": f"Stopping it failed: {e}"}
        if job.get("status") == "COMPLETED":  # it ended just before the stop
            return {"status": "COMPLETED", "job": job}
        return {"status": TIMEOUT, "job_id": self.job_id, "job": job}

    async def on_kill(self) -> None:
        """The task was marked failed or cleared while it waited: its job stops too."""
        hook = await self._hook()
        async with hook.async_client() as client:
            job = await hook.astop_job(client, self.job_id)
        self.log.info("Job %s stopped with its task (now %s)", self.job_id, job.get("status"))
