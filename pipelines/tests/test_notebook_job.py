"""NotebookJobOperator and NotebookJobTrigger against the fake jobs service: deferral, success,
failure, timeout, cancel, and a hub that stops answering."""

from __future__ import annotations

import time

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from airflow.sdk.module_loading import import_string
from ec2hub_airflow.hooks import Ec2hubError
from ec2hub_airflow.operators import NotebookJobOperator
from ec2hub_airflow.triggers import NotebookJobTrigger

CONTEXT = {"run_id": "scheduled__2026-12-01T00:00:00+00:00"}
FAILURE = "ValueError: 12% of the rows were dropped (in cell [4])\n\nLast lines of the log:\n..."


def operator(**overrides) -> NotebookJobOperator:
    arguments = {
        "task_id": "etl",
        "notebook": "pipelines/02-etl.ipynb",
        "size": "medium",
        "poll_interval": 0.001,
    }
    return NotebookJobOperator(**(arguments | overrides))


def defer(task: NotebookJobOperator) -> NotebookJobTrigger:
    """The trigger the task deferred to, made again from what it serialized (as the triggerer does)."""
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(CONTEXT)
    assert deferred.value.method_name == "execute_complete"
    classpath, kwargs = deferred.value.trigger.serialize()
    return import_string(classpath)(**kwargs)


async def first_event(trigger: NotebookJobTrigger) -> dict:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("the trigger fired no event")


def test_the_task_creates_its_job_and_defers_to_a_trigger_that_follows_it(jobs_service):
    task = operator(timeout=900)
    started = time.time()

    trigger = defer(task)

    [job_id] = jobs_service.jobs
    assert task.job_id == trigger.job_id == job_id
    assert started + 900 <= trigger.deadline <= time.time() + 900
    assert trigger.poll_interval == 0.001
    assert jobs_service.jobs[job_id]["name"] == f"adhoc_airflow.etl {CONTEXT['run_id']}"


async def test_a_completed_job_completes_the_task_with_its_id_and_outputs(jobs_service):
    jobs_service.script = [
        {"status": "QUEUED"},
        {"status": "IN_PROGRESS"},
        {"status": "COMPLETED", "outputs": {"ipynb": "02-etl.ipynb", "log": "job.log"}},
    ]
    task = operator()
    event = await first_event(defer(task))

    result = task.execute_complete(CONTEXT, event)

    job_id = task.job_id
    assert result == {
        "job_id": job_id,
        "status": "COMPLETED",
        "output_prefix": f"jobs/{job_id}/",
        "outputs": {"ipynb": f"jobs/{job_id}/02-etl.ipynb", "log": f"jobs/{job_id}/job.log"},
        "output_url": f"{jobs_service.url}/hub/user-redirect/lab/tree/s3/jobs/{job_id}/",
    }
    assert not jobs_service.stopped


async def test_a_failed_job_fails_the_task_with_its_error_and_where_its_outputs_are(jobs_service):
    jobs_service.script = [{"status": "IN_PROGRESS"}, {"status": "FAILED", "status_message": FAILURE}]
    task = operator()
    event = await first_event(defer(task))

    with pytest.raises(AirflowException) as failed:
        task.execute_complete(CONTEXT, event)

    message = str(failed.value)
    assert f"Job {task.job_id} FAILED: ValueError: 12% of the rows were dropped (in cell [4])" in message
    assert f"/hub/user-redirect/lab/tree/s3/jobs/{task.job_id}/" in message


async def test_a_job_stopped_by_its_owner_fails_the_task(jobs_service):
    jobs_service.script = [{"status": "STOPPED", "status_message": "Stopped by its owner."}]
    task = operator()
    event = await first_event(defer(task))

    with pytest.raises(AirflowException, match="STOPPED: Stopped by its owner."):
        task.execute_complete(CONTEXT, event)


async def test_past_the_tasks_timeout_the_job_is_stopped_and_the_task_fails(jobs_service):
    task = operator(timeout=60)
    trigger = defer(task)
    # The triggerer made it again at the deadline: the job still runs.
    classpath, kwargs = trigger.serialize()
    event = await first_event(NotebookJobTrigger(**(kwargs | {"deadline": time.time()})))

    assert jobs_service.stopped == [task.job_id]
    expected = rf"Job {task.job_id} ran past the task's timeout of 60 s \(stopped: it is STOPPED now\)"
    with pytest.raises(AirflowException, match=expected):
        task.execute_complete(CONTEXT, event)


async def test_a_task_killed_while_deferred_stops_its_job(jobs_service):
    task = operator()
    trigger = defer(task)

    await trigger.on_kill()

    assert jobs_service.stopped == [task.job_id]
    assert jobs_service.jobs[task.job_id]["status"] == "STOPPED"


def test_a_task_killed_while_running_stops_its_job(jobs_service):
    task = operator()
    defer(task)

    task.on_kill()

    assert jobs_service.stopped == [task.job_id]


async def test_a_deleted_job_ends_the_wait_at_once_with_the_services_message(jobs_service):
    task = operator()
    trigger = defer(task)
    jobs_service.jobs.clear()

    event = await first_event(trigger)

    assert event["status"] == "error"
    with pytest.raises(Ec2hubError, match=f"No job {task.job_id}"):
        task.execute_complete(CONTEXT, event)


async def test_a_hub_that_stops_answering_ends_the_wait_after_max_errors(jobs_service):
    task = operator(request_timeout=0.05)
    classpath, kwargs = defer(task).serialize()
    jobs_service.hang = True

    event = await first_event(NotebookJobTrigger(**(kwargs | {"max_errors": 2})))

    assert event["status"] == "error" and "did not answer in time" in event["message"]


def test_a_timeout_is_whole_seconds():
    with pytest.raises(ValueError, match="whole number of seconds"):
        operator(timeout=0.5)
