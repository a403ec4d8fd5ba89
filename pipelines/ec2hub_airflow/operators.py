"""NotebookJobOperator: a notebook of the pipeline owner's S3 folder, run as an ec2hub job on an
instance of its own, with the task deferred (no worker slot held) until the job ends.

The task succeeds with the job's id and where its outputs are (its XCom); it fails with the job's error
and a link to its outputs when the job fails or is stopped, or when it runs past the task's `timeout`
(then the job is stopped). A task killed in Airflow (marked failed, cleared) stops its job.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from ec2hub_airflow.hooks import REQUEST_TIMEOUT, Ec2hubError, Ec2hubHook, job_outputs
from ec2hub_airflow.triggers import ERROR, POLL_INTERVAL, TIMEOUT, NotebookJobTrigger

DEFAULT_TIMEOUT = 3600


class NotebookJobOperator(BaseOperator):
    """Run a notebook as an ec2hub job, as the owner of the `ec2hub` connection's token.

    :param notebook: the notebook's path in the owner's S3 folder, as their JupyterLab shows it under
        ~/s3, e.g. "pipelines/02-etl.ipynb". Its job reads it from there, with the owner's role.
    :param size: a size open to the owner's groups, by its name ("medium"); None: the cheapest.
    :param parameters: papermill parameters; Python literals keep their type in the notebook.
    :param timeout: seconds (whole) from the job's creation until the task stops it and fails; also
        the job's own timeout, which the hub enforces even with Airflow gone. At most what the owner's
        groups allow (the hub says so otherwise). Default an hour.
    :param output_formats: "ipynb" (the executed notebook) and/or "html".
    :param spot: run on a spot instance (the size must offer it).
    :param with_folder: the job reads the notebook's whole folder too (a module beside it, its data);
        keep that folder small: all of it is downloaded.
    :param job_name: the job's name in the owner's job list; default "<dag>.<task> <run id>".
    :param ec2hub_conn_id: the `ec2hub` connection.
    :param poll_interval: seconds between the trigger's questions to the jobs service.
    :param request_timeout: seconds each request to the hub may take.
    """

    template_fields: Sequence[str] = ("notebook", "size", "parameters", "job_name")
    ui_color = "#f3e1c9"

    def __init__(
        self,
        *,
        notebook: str,
        size: str | None = None,
        parameters: dict[str, Any] | None = None,
        timeout: int = DEFAULT_TIMEOUT,
        output_formats: Sequence[str] = ("ipynb",),
        spot: bool = False,
        with_folder: bool = False,
        job_name: str | None = None,
        ec2hub_conn_id: str = Ec2hubHook.default_conn_name,
        poll_interval: float = POLL_INTERVAL,
        request_timeout: float = REQUEST_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise ValueError(f"timeout is a whole number of seconds, 1 or more, not {timeout!r}")
        self.notebook = notebook
        self.size = size
        self.parameters = parameters or {}
        self.timeout = timeout
        self.output_formats = list(output_formats)
        self.spot = spot
        self.with_folder = with_folder
        self.job_name = job_name
        self.ec2hub_conn_id = ec2hub_conn_id
        self.poll_interval = poll_interval
        self.request_timeout = request_timeout
        self.job_id: str | None = None

    @cached_property
    def hook(self) -> Ec2hubHook:
        return Ec2hubHook(self.ec2hub_conn_id, request_timeout=self.request_timeout)

    def execute(self, context: Any) -> None:
        deadline = time.time() + self.timeout
        name = self.job_name or f"{self.dag_id}.{self.task_id} {context.get('run_id') or ''}".strip()
        created = self.hook.create_job(
            self.notebook,
            name=name,
            size=self.size,
            parameters=self.parameters,
            timeout=self.timeout,
            output_formats=self.output_formats,
            spot=self.spot,
            with_folder=self.with_folder,
        )
        self.job_id = created["job_id"]
        self.log.info(
            "Job %s: %s on %s, as %r", self.job_id, self.notebook, self.size or "the cheapest size", name
        )
        self.defer(
            trigger=NotebookJobTrigger(
                self.job_id,
                deadline,
                ec2hub_conn_id=self.ec2hub_conn_id,
                poll_interval=self.poll_interval,
                request_timeout=self.request_timeout,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        """The trigger's event: the job's outputs when it completed, else the task fails saying why."""
        status = event["status"]
        if status == ERROR:
            raise Ec2hubError(f"Following job {event['job_id']} failed: {event['message']}")
        job = event.get("job") or {"job_id": event["job_id"]}
        outputs = job_outputs(self.hook.url, job)
        where = f"Its outputs: {outputs['output_url']} ({outputs['output_prefix']} in the owner's S3 folder)."
        if status == "COMPLETED":
            self.log.info("Job %s completed. %s", job["job_id"], where)
            return outputs
        if status == TIMEOUT:
            after = event.get("message") or f"stopped: it is {job.get('status')} now"
            raise AirflowException(
                f"Job {job['job_id']} ran past the task's timeout of {self.timeout} s ({after}). {where}"
            )
        message = job.get("status_message") or "no message"
        raise AirflowException(f"Job {job['job_id']} {status}: {message}\n{where}")

    def on_kill(self) -> None:
        """Killed while it created its job (once deferred, the trigger's on_kill stops it)."""
        if self.job_id:
            self.hook.stop_job(self.job_id)
            self.log.info("Job %s stopped with its task", self.job_id)
