"""What people see of jobs and definitions: the models the API answers with (jupyter-scheduler's
DescribeJob and DescribeJobDefinition, plus where the outputs are, the run's times and its cost)."""

from __future__ import annotations

from typing import Any

from hub.jobs.store import Definition, Job
from spawner.identity import UserNames


def job_model(job: Job, now: int) -> dict[str, Any]:
    """The job as jupyter-scheduler's DescribeJob, plus where its outputs are, its time and cost."""
    seconds = job.billed_seconds + (max(0.0, (now - job.launch_time) / 1000) if job.launch_time else 0.0)
    user_prefix = UserNames.of(job.owner).prefix
    return {
        "job_id": job.job_id,
        "name": job.name,
        "input_filename": job.input_filename,
        "runtime_environment_name": job.runtime_environment_name,
        "runtime_environment_parameters": job.runtime_environment_parameters,
        "output_formats": job.output_formats,
        "parameters": job.parameters,
        "tags": job.tags,
        "compute_type": job.compute_type,
        "package_input_folder": job.package_input_folder,
        "packaged_files": job.packaged_files,
        "idempotency_token": job.idempotency_token,
        "job_definition_id": job.job_definition_id,
        "url": "",
        "create_time": job.create_time,
        "update_time": job.update_time,
        "start_time": job.start_time,
        "end_time": job.end_time,
        "status": job.status,
        "status_message": _with_log(job.status_message, job.log_tail),
        "output_prefix": job.output_prefix.removeprefix(user_prefix),
        "outputs": job.outputs,
        "duration": round((job.end_time - job.start_time) / 1000, 3)
        if job.end_time and job.start_time
        else None,
        "cost": round(seconds / 3600 * job.price_per_hour, 4) if job.start_time else None,
        "size": job.size,
        # When its (last) run's bootstrap began, and its notebook's first cell and last cell.
        "run_start_time": job.run_start_time,
        "first_cell_start": job.first_cell_start,
        "last_cell_end": job.last_cell_end,
        "instance_id": job.instance_id,
        "attempt": job.attempt,
        "timeout_seconds": job.timeout_seconds,
        "max_retries": job.max_retries,
        "spot": job.spot,
    }


def definition_model(definition: Definition) -> dict[str, Any]:
    """The definition as jupyter-scheduler's DescribeJobDefinition, with where its input is."""
    user_prefix = UserNames.of(definition.owner).prefix
    fields = (
        "job_definition_id",
        "name",
        "input_filename",
        "runtime_environment_name",
        "runtime_environment_parameters",
        "output_formats",
        "parameters",
        "tags",
        "compute_type",
        "package_input_folder",
        "packaged_files",
        "schedule",
        "timezone",
        "active",
        "create_time",
        "update_time",
    )
    model = {f: getattr(definition, f) for f in fields}
    model.update(url="", input_prefix=definition.input_prefix.removeprefix(user_prefix))
    return model


def _with_log(message: str | None, tail: str | None) -> str | None:
    """A failure's message, with the last lines of its log (what JupyterLab's job page shows)."""
    if not message:
        return None
    lines = [line for line in (tail or "").strip().splitlines() if line.strip()][-15:]
    return message + ("\n\nLast lines of the log:\n" + "\n".join(lines) if lines else "")
