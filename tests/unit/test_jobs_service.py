"""The jobs service (hub/jobs): schedules, sizes and quotas, a job's life on in-process moto, its HTTP API."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from jupyterhub.services.auth import check_scopes
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application, HTTPError, RequestHandler

from hub.hub_api import hub_groups
from hub.jobs.app import make_app
from hub.jobs.checks import (
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUT,
    JobError,
    check_common,
    check_request,
    check_schedule,
    compute_type,
    due_time,
    limits_for,
    sort_key,
)
from hub.jobs.runner import Jobs, report_digest
from hub.jobs.store import COMPLETED, CREATED, FAILED, IN_PROGRESS, QUEUED, STOPPED, Definition, Job, Store
from hub.jobs.views import job_model
from spawner.launcher import Launcher
from spawner.owner import TAG_JOB, TAG_PURPOSE, TAG_USER, tags_of
from spawner.profiles import DEFAULT_PROFILES, validate_profiles
from tests.unit.test_launcher import settings_for

SIZES = validate_profiles(DEFAULT_PROFILES)
SMALL, MEDIUM, LARGE, GPU = SIZES  # GPU is for the group gpu-users; medium, large and gpu have spot
GROUPS = {"alice": [], "bob": [], "gina": ["gpu-users"], "admin": []}
MINUTE = 60_000
REPORT_URL = "http://hub:8187/services/jobs/api/runs"
NOTEBOOK = {"name": "report", "input_filename": "report.ipynb"}


def ms(moment: str) -> int:
    return int(datetime.fromisoformat(moment).replace(tzinfo=UTC).timestamp() * 1000)


T0 = ms("2025-01-15T12:00:00")  # a winter Wednesday, on the minute


class Clock:
    """The service's clock, moved by the test."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


async def groups_of(name: str) -> list[str] | None:
    return GROUPS.get(name)


class NoAWS:
    """A launcher for tests that launch nothing: everyone has an account and no job instance lives."""

    settings = SimpleNamespace(hub_id="unit-hub", bucket="unit-data")

    def __init__(self) -> None:
        self.terminated: list[str] = []
        self.withdrawn: list[str] = []

    async def owner_id(self, user: str) -> str:
        return f"AROA-{user}"

    async def call(self, operation: str, **kwargs) -> dict:
        assert operation == "describe_instances"
        return {"Reservations": []}

    async def terminate(self, instance_ids: list[str]) -> None:
        self.terminated += instance_ids

    def client(self, service: str):
        assert service == "ssm"
        return SimpleNamespace(delete_parameter=lambda Name: self.withdrawn.append(Name))


def definition(**changes) -> Definition:
    values = dict(schedule="* * * * *", timezone="UTC", active=True, staged=True, create_time=T0)
    values.update(changes)
    return Definition(**values)


# -- schedules -------------------------------------------------------------------------------------


def test_a_schedule_is_due_at_its_next_time_and_once_for_any_number_of_missed_times():
    every_minute = definition()
    assert due_time(every_minute, T0 + MINUTE - 1) is None
    assert due_time(every_minute, T0 + MINUTE) == T0 + MINUTE
    # The service was down for ten minutes: one run, at the latest missed time.
    assert due_time(every_minute, T0 + 10 * MINUTE + 30_000) == T0 + 10 * MINUTE
    fired = definition(last_fire_time=T0 + 10 * MINUTE)
    assert due_time(fired, T0 + 10 * MINUTE + 59_999) is None
    assert due_time(fired, T0 + 11 * MINUTE) == T0 + 11 * MINUTE


def test_a_schedule_runs_in_its_time_zone():
    nightly = definition(schedule="0 2 * * *", timezone="Europe/Paris")
    assert due_time(nightly, ms("2025-01-16T00:59:59")) is None
    assert due_time(nightly, ms("2025-01-16T01:00:00")) == ms("2025-01-16T01:00:00")  # CET is UTC+1
    summer = definition(schedule="0 2 * * *", timezone="Europe/Paris", create_time=ms("2025-07-15T12:00:00"))
    assert due_time(summer, ms("2025-07-16T00:00:00")) == ms("2025-07-16T00:00:00")  # CEST is UTC+2


@pytest.mark.parametrize("changes", [{"active": False}, {"staged": False}, {"schedule": None}])
def test_a_paused_unstaged_or_unscheduled_definition_never_fires(changes):
    assert due_time(definition(**changes), T0 + 60 * MINUTE) is None


def test_schedules_are_five_cron_fields_in_a_known_time_zone():
    assert check_schedule(" 0 2 * * 1-5 ", "Europe/Paris") == ("0 2 * * 1-5", "Europe/Paris")
    assert check_schedule("", None) == (None, "UTC")
    for schedule in ("0 2 * *", "0 2 * * * *", "61 * * * *"):
        with pytest.raises(JobError, match="is not a schedule"):
            check_schedule(schedule, "UTC")
    with pytest.raises(JobError, match="Unknown time zone 'Mars/Olympus'"):
        check_schedule("0 2 * * *", "Mars/Olympus")


# -- sizes, quotas and the fields of a job ----------------------------------------------------------


def test_a_size_outside_the_users_groups_is_refused_naming_the_sizes_they_may_use():
    alice_sizes = [s for s in SIZES if s.allowed_for(GROUPS["alice"])]
    with pytest.raises(JobError, match=r"'gpu' is not open to your groups.*small, medium, large\.") as e:
        check_request({"size": "gpu"}, alice_sizes, DEFAULT_LIMITS)
    assert e.value.status == 403
    with pytest.raises(JobError, match="None of the sizes") as e:
        check_request({}, [], DEFAULT_LIMITS)
    assert e.value.status == 403


def test_the_default_size_is_the_cheapest_and_a_size_is_named_by_slug_or_compute_type():
    assert check_request({}, [LARGE, MEDIUM, SMALL], DEFAULT_LIMITS).size == SMALL
    assert check_request({"size": "large"}, SIZES, DEFAULT_LIMITS).size == LARGE
    shown = compute_type(MEDIUM)
    assert shown == "medium (4 vCPU, 16 GiB, $0.192/h)"
    assert check_request({"compute_type": shown}, SIZES, DEFAULT_LIMITS).size == MEDIUM


def test_timeout_retries_and_spot_come_from_tags_within_the_groups_limits():
    assert check_request({"tags": ["timeout=30"]}, SIZES, DEFAULT_LIMITS).timeout_seconds == 30
    assert check_request({}, SIZES, DEFAULT_LIMITS).timeout_seconds == DEFAULT_TIMEOUT
    short = {**DEFAULT_LIMITS, "max_timeout": 600}
    with pytest.raises(JobError, match=r"timeout of 601 s is longer than your groups allow \(600 s\)") as e:
        check_request({"tags": ["timeout=601"]}, SIZES, short)
    assert e.value.status == 403
    assert check_request({"tags": ["retries=5"]}, SIZES, DEFAULT_LIMITS).max_retries == 5
    with pytest.raises(JobError, match="At most 5 retries"):
        check_request({"tags": ["retries=6"]}, SIZES, DEFAULT_LIMITS)
    with pytest.raises(JobError, match="timeout must be a whole number"):
        check_request({"tags": ["timeout=soon"]}, SIZES, DEFAULT_LIMITS)
    assert check_request({"size": "medium", "tags": ["spot"]}, SIZES, DEFAULT_LIMITS).spot is True
    assert check_request({"size": "medium"}, SIZES, DEFAULT_LIMITS).spot is False
    with pytest.raises(JobError, match="Size small is not offered on spot"):
        check_request({"size": "small", "tags": ["spot"]}, SIZES, DEFAULT_LIMITS)


def test_a_job_naming_no_timeout_gets_the_longest_its_groups_allow_when_below_the_default():
    assert check_request({}, SIZES, {**DEFAULT_LIMITS, "max_timeout": 600}).timeout_seconds == 600


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"input_filename": "work/report.ipynb"}, "without folders"),
        ({"input_filename": "report.py"}, "without folders"),
        ({"input_filename": ".hidden.ipynb"}, "without folders"),
        ({"name": "  "}, "needs a name"),
        ({"output_formats": ["ipynb", "pdf"]}, "not pdf"),
        ({"parameters": {"not a name": 1}}, "Python identifiers"),
        ({"parameters": ["alpha"]}, "Python identifiers"),
        ({"tags": "spot"}, "Tags are a list"),
    ],
)
def test_the_fields_of_a_job_are_refused_with_what_is_wrong(changes, problem):
    with pytest.raises(JobError, match=problem):
        check_common({**NOTEBOOK, **changes})


def test_the_fields_of_a_job_are_normalised():
    common = check_common({**NOTEBOOK, "name": " report ", "parameters": {"alpha": 0.5}, "tags": [1]})
    assert common["name"] == "report"
    assert common["output_formats"] == ["ipynb"]
    assert common["parameters"] == {"alpha": "0.5"}
    assert common["tags"] == ["1"]


def test_a_group_raises_a_limit_and_the_largest_of_several_groups_wins():
    per_group = {"physics": {"max_concurrent": 8}, "ml": {"max_concurrent": 16, "max_timeout": 2 * 86400}}
    assert limits_for([], {}, per_group) == DEFAULT_LIMITS
    assert limits_for(["physics"], {"max_concurrent": 2}, per_group)["max_concurrent"] == 8
    both = limits_for(["physics", "ml"], {}, per_group)
    assert both == {**DEFAULT_LIMITS, "max_concurrent": 16, "max_timeout": 2 * 86400}
    # A group's smaller limit never lowers the default.
    assert limits_for(["physics"], {"max_concurrent": 10}, per_group)["max_concurrent"] == 10


def test_lists_sort_by_known_fields_only():
    assert sort_key("name:asc,create_time:desc") == [("name", False), ("create_time", True)]
    assert sort_key("") == [("create_time", True)]
    with pytest.raises(JobError, match="Cannot sort by 'owner'"):
        sort_key("owner")


# -- jobs and definitions in the store ---------------------------------------------------------------


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(f"sqlite:///{tmp_path}/jobs.sqlite")


@pytest.fixture
def local(store) -> Jobs:
    """The service with a launcher that launches nothing."""
    return Jobs(store, NoAWS(), SIZES, report_url=REPORT_URL, groups_of=groups_of, clock=Clock())


async def test_a_job_is_its_owners_only_and_stopping_it_in_the_queue_launches_nothing(local):
    job = await local.create_job("alice", [], NOTEBOOK)
    assert job.status == CREATED and job.size == "small"
    assert job.input_prefix.endswith(f"jobs/{job.job_id}/input/")
    assert local.store.job(job.job_id, owner="bob") is None
    assert local.store.job(job.job_id, owner="alice").job_id == job.job_id
    local.start_job(job, ["ignored.csv"])
    assert local.store.job(job.job_id).status == QUEUED
    with pytest.raises(JobError, match="started already"):
        local.start_job(job, [])
    await local.stop_job(job)
    await local.tick()  # a launch would count an attempt, even one NoAWS cannot make
    stopped = local.store.job(job.job_id)
    assert stopped.status == STOPPED and stopped.instance_id is None and stopped.attempt == 0


async def test_a_notebook_already_in_the_users_folder_runs_queued_at_once_and_alone(local):
    """What a pipeline sends: a notebook's path in the owner's S3 folder, read by the job's instance
    with the owner's role; nothing to stage, no folder packaged with it."""
    body = {"name": "etl", "input_path": "pipelines/02-etl.ipynb", "output_formats": ["ipynb"]}
    job = await local.create_job("alice", [], body)
    assert job.status == QUEUED and job.input_filename == "02-etl.ipynb"
    assert job.input_prefix == "users/alice/pipelines/" and not job.package_input_folder
    for path in ("../bob/x.ipynb", "/users/bob/x.ipynb", "a/../../x.ipynb", "a//x.ipynb", "x.py", ".x.ipynb"):
        with pytest.raises(JobError, match="input_path is a notebook's path in your S3 folder"):
            await local.create_job("alice", [], {**body, "input_path": path})


async def test_an_idempotency_token_makes_one_job(local):
    await local.create_job("alice", [], {**NOTEBOOK, "idempotency_token": "t-1"})
    with pytest.raises(JobError, match="exists already") as e:
        await local.create_job("alice", [], {**NOTEBOOK, "idempotency_token": "t-1"})
    assert e.value.status == 409
    await local.create_job("bob", [], {**NOTEBOOK, "idempotency_token": "t-1"})  # bob's own
    assert len(local.store.jobs()) == 2


async def test_a_fired_schedule_queues_one_job_of_its_definition_for_all_its_missed_times(local):
    made = await local.create_definition("alice", [], {**NOTEBOOK, "schedule": "* * * * *"})
    local.start_definition(made, [])
    local.clock.advance(10 * 60 + 30)  # the service was down
    await local.fire_schedules()
    await local.fire_schedules()
    jobs = local.store.jobs(owner="alice")
    assert [(j.job_definition_id, j.status) for j in jobs] == [(made.job_definition_id, QUEUED)]
    assert jobs[0].input_prefix == made.input_prefix
    assert local.store.definition(made.job_definition_id).last_fire_time == T0 + 10 * MINUTE


async def test_a_schedule_still_fires_after_its_size_is_repriced(local):
    made = await local.create_definition("alice", [], {**NOTEBOOK, "schedule": "* * * * *"})
    local.start_definition(made, [])
    profiles = [{**entry, "price_per_hour": entry["price_per_hour"] * 1.1} for entry in DEFAULT_PROFILES]
    local.sizes = validate_profiles(profiles)  # the operator changed c.EC2Spawner.profiles
    local.clock.advance(60)
    await local.fire_schedules()
    assert [j.size for j in local.store.jobs(owner="alice")] == ["small"]


async def test_jobs_waiting_to_run_stop_at_the_users_limit_and_a_schedule_skips_its_run(local):
    local.limits = {"max_queued": 2}
    local.group_limits = {"ml": {"max_queued": 3}}
    first = await local.create_job("alice", [], NOTEBOOK)  # created: its input is being staged
    await local.create_job("alice", [], {**NOTEBOOK, "input_path": "a.ipynb"})  # queued at once
    with pytest.raises(JobError, match=r"as many jobs waiting to run as your groups allow \(2\)"):
        await local.create_job("alice", [], NOTEBOOK)
    assert (await local.create_job("bob", [], NOTEBOOK)).owner == "bob"  # bob's queue is his own
    third = await local.create_job("alice", ["ml"], NOTEBOOK)  # in the group ml, she may have 3
    await local.stop_job(third)

    made = await local.create_definition("alice", [], {**NOTEBOOK, "schedule": "* * * * *"})
    local.start_definition(made, [])
    local.clock.advance(60)
    await local.fire_schedules()  # refused: the run is skipped, the schedule goes on
    assert not local.store.jobs(owner="alice", job_definition_id=made.job_definition_id)
    await local.stop_job(first)  # one fewer waiting
    local.clock.advance(60)
    await local.fire_schedules()
    [run] = local.store.jobs(owner="alice", job_definition_id=made.job_definition_id)
    assert run.status == QUEUED


class SlowAccounts(NoAWS):
    """Looking up an account lets other requests run meanwhile, as a call to AWS does."""

    async def owner_id(self, user: str) -> str:
        await asyncio.sleep(0)
        return await super().owner_id(user)


async def test_jobs_sent_at_once_are_counted_one_by_one_against_the_limit(store):
    jobs = Jobs(store, SlowAccounts(), SIZES, report_url=REPORT_URL, groups_of=groups_of, clock=Clock())
    jobs.limits = {"max_queued": 2}
    sent = [jobs.create_job("alice", [], NOTEBOOK) for _ in range(5)]
    outcomes = await asyncio.gather(*sent, return_exceptions=True)
    assert len([o for o in outcomes if isinstance(o, Job)]) == 2
    assert len([o for o in outcomes if isinstance(o, JobError) and o.status == 429]) == 3
    same = [jobs.create_job("bob", [], {**NOTEBOOK, "idempotency_token": "t"}) for _ in range(3)]
    outcomes = await asyncio.gather(*same, return_exceptions=True)
    assert len([o for o in outcomes if isinstance(o, Job)]) == 1, "one job for one idempotency token"


def test_millisecond_times_fit_the_columns_of_postgresql():
    ddl = str(CreateTable(Job.__table__).compile(dialect=postgresql.dialect()))
    assert "create_time BIGINT" in ddl and "start_time BIGINT" in ddl


# -- a job's life, on in-process moto --------------------------------------------------------------


@pytest.fixture
async def service(account, store) -> Jobs:
    Launcher._root_devices.clear()
    launcher = Launcher(settings_for(account))
    await launcher.ensure_identity("alice", [])
    failed: list[str] = []

    async def on_failure(job: Job) -> None:
        failed.append(job.job_id)

    jobs = Jobs(
        store,
        launcher,
        SIZES,
        report_url=REPORT_URL,
        groups_of=groups_of,
        clock=Clock(),
        on_failure=on_failure,
    )
    jobs.failed = failed
    return jobs


async def queued(jobs: Jobs, **body) -> Job:
    job = await jobs.create_job("alice", [], {**NOTEBOOK, **body})
    return jobs.start_job(job, [])


def state(account, instance_id: str) -> str:
    reservations = account.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return reservations[0]["Instances"][0]["State"]["Name"]


def job_instances(account) -> list[dict]:
    filters = [{"Name": f"tag:{TAG_PURPOSE}", "Values": ["job"]}]
    reservations = account.ec2.describe_instances(Filters=filters)["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def run_settings(account, jobs: Jobs, job: Job) -> dict:
    """What the job's instance reads at boot (its report secret among them)."""
    current = jobs.store.job(job.job_id)  # at its current attempt
    parameter = account.ssm.get_parameter(Name=jobs.parameter(current), WithDecryption=True)
    return json.loads(parameter["Parameter"]["Value"])


async def test_a_started_job_is_launched_as_its_owners_job_instance(account, service):
    job = await queued(service, parameters={"alpha": 2})
    await service.tick()
    running = service.store.job(job.job_id)
    assert running.status == IN_PROGRESS and running.attempt == 1 and running.start_time == T0
    [instance] = job_instances(account)
    assert instance["InstanceId"] == running.instance_id and instance["InstanceType"] == "t3.medium"
    tags = tags_of(instance)
    assert (tags[TAG_PURPOSE], tags[TAG_JOB], tags[TAG_USER]) == ("job", job.job_id, "alice")
    settings = run_settings(account, service, job)
    assert settings["report_url"] == f"{REPORT_URL}/{job.job_id}"
    assert settings["job"]["parameters"] == {"alpha": "2"}
    assert service.reporting_job(job.job_id, settings["report_token"]).job_id == job.job_id


async def test_a_job_past_its_timeout_fails_and_its_instance_is_terminated(account, service):
    job = await queued(service, tags=["timeout=60"])
    await service.tick()
    service.clock.advance(60)
    await service.tick()
    assert service.store.job(job.job_id).status == IN_PROGRESS
    service.clock.advance(1)
    await service.tick()
    ended = service.store.job(job.job_id)
    assert ended.status == FAILED and "ran past its timeout of 60 s" in ended.status_message
    assert state(account, ended.instance_id) in ("shutting-down", "terminated")
    assert service.failed == [job.job_id]
    assert job_model(ended, service.clock())["duration"] == 61.0
    with pytest.raises(account.ssm.exceptions.ParameterNotFound):
        account.ssm.get_parameter(Name=service.parameter(ended))


async def test_a_completed_report_ends_the_job_and_its_instance_and_a_wrong_secret_is_refused(
    account, service
):
    job = await queued(service)
    await service.tick()
    secret = run_settings(account, service, job)["report_token"]
    assert service.reporting_job(job.job_id, "not-the-secret") is None
    reporting = service.reporting_job(job.job_id, secret)
    outputs = {"ipynb": "report-out.ipynb", "html": "../../bob/x.html"}
    await service.report_finished(reporting, {"status": COMPLETED, "outputs": outputs})
    ended = service.store.job(job.job_id)
    assert ended.status == COMPLETED and ended.status_message is None
    assert ended.outputs == {"ipynb": "report-out.ipynb"}  # nothing outside the job's folder
    assert state(account, ended.instance_id) in ("shutting-down", "terminated")
    assert service.reporting_job(job.job_id, secret) is None  # a run reports its end once
    assert service.failed == []


async def test_one_job_at_a_time_keeps_the_second_queued_until_the_first_ends(account, service):
    service.limits = {"max_concurrent": 1}
    first, second = await queued(service), await queued(service)
    await service.tick()
    assert [service.store.job(j.job_id).status for j in (first, second)] == [IN_PROGRESS, QUEUED]
    await service.stop_job(service.store.job(first.job_id))
    await service.tick()
    assert [service.store.job(j.job_id).status for j in (first, second)] == [STOPPED, IN_PROGRESS]
    live = [i["InstanceId"] for i in job_instances(account) if i["State"]["Name"] in ("pending", "running")]
    assert live == [service.store.job(second.job_id).instance_id]


async def test_a_restarted_service_follows_the_job_in_progress(account, service, tmp_path):
    job = await queued(service, tags=["retries=0"])
    await service.tick()
    secret = run_settings(account, service, job)["report_token"]
    restarted = Jobs(
        Store(f"sqlite:///{tmp_path}/jobs.sqlite"),
        service.launcher,
        SIZES,
        report_url=REPORT_URL,
        groups_of=groups_of,
        clock=Clock(T0 + 5 * MINUTE),
    )
    assert restarted.reporting_job(job.job_id, secret) is not None
    await restarted.tick()
    assert restarted.store.job(job.job_id).status == IN_PROGRESS
    account.ec2.terminate_instances(InstanceIds=[restarted.store.job(job.job_id).instance_id])
    await restarted.tick()
    ended = restarted.store.job(job.job_id)
    assert ended.status == FAILED and "ended before the notebook did (terminated)" in ended.status_message


async def test_a_job_stopped_while_the_round_waits_for_the_hub_is_not_launched(account, service):
    job = await queued(service)

    async def groups_while_the_owner_stops(name: str) -> list[str]:
        await service.stop_job(service.store.job(job.job_id))  # the owner's Stop arrives meanwhile
        return GROUPS[name]

    service.groups_of = groups_while_the_owner_stops
    await service.launch_queued()
    assert service.store.job(job.job_id).status == STOPPED
    assert job_instances(account) == []


# -- the HTTP API ------------------------------------------------------------------------------------

PREFIX = "/services/jobs/"


class StandInHubAuth:
    """HubAuth's `get_user` and scope check: the token is the person's name (`admin` is an
    administrator), with access to the jobs service; `<name>:narrow` is a token of theirs made for
    another service only."""

    access_scopes = {"access:services!service=jobs"}

    async def get_user(self, handler: RequestHandler, sync: bool = True) -> dict | None:
        assert sync is False  # the service never blocks on the hub
        scheme, _, token = handler.request.headers.get("Authorization", "").partition(" ")
        name, _, narrow = token.partition(":")
        if scheme != "token" or name not in GROUPS:
            return None
        scopes = ["access:services!service=dask-gateway"] if narrow else ["access:services!service=jobs"]
        return {"kind": "user", "name": name, "admin": name == "admin", "scopes": scopes}

    def check_scopes(self, required: set[str], model: dict) -> set[str]:
        return check_scopes(required, set(model["scopes"]))


@pytest.fixture
async def api(local):
    sock, port = bind_unused_port()
    server = HTTPServer(make_app(PREFIX, local, hub_auth=StandInHubAuth(), groups_of=groups_of))
    server.add_sockets([sock])
    client = AsyncHTTPClient()

    async def fetch(path: str, who: str = "", method: str = "GET", body=None, auth: str | None = None):
        headers = {"Authorization": auth if auth is not None else f"token {who}"}
        if body is not None and not isinstance(body, str):
            body = json.dumps(body)
        if method == "POST" and body is None:
            body = ""
        return await client.fetch(
            f"http://127.0.0.1:{port}{PREFIX}{path}",
            method=method,
            headers=headers,
            body=body,
            raise_error=False,
        )

    fetch.jobs = local
    yield fetch
    server.stop()
    await server.close_all_connections()


def message(response) -> str:
    return json.loads(response.body)["message"]


async def test_another_users_job_is_not_found_whatever_the_request(api):
    created = await api("api/jobs", "alice", "POST", NOTEBOOK)
    assert created.code == 201
    job_id = json.loads(created.body)["job_id"]
    assert (await api(f"api/jobs/{job_id}", "alice")).code == 200
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/stop"), ("POST", "/start")):
        response = await api(f"api/jobs/{job_id}{path}", "bob", method)
        assert response.code == 404 and message(response) == f"No job {job_id}."
    assert api.jobs.store.job(job_id).status == CREATED


async def test_without_a_hub_token_nothing_is_answered(api):
    for auth in ("", "token mallory", "Bearer alice"):
        response = await api("api/jobs", auth=auth)
        assert response.code == 403 and "Sign in to the hub" in message(response)


async def test_a_report_needs_the_secret_of_its_run(api):
    job = await api.jobs.create_job("alice", [], NOTEBOOK)
    api.jobs.store.update(job, status=IN_PROGRESS, attempt=1, report_digest=report_digest("the-secret"))
    finished = f"api/runs/{job.job_id}/finished"
    for auth in ("Bearer forged", "token alice", "the-secret"):
        response = await api(finished, method="POST", body={"status": COMPLETED}, auth=auth)
        assert response.code == 403 and message(response) == "Not the report of a running job."
    assert api.jobs.store.job(job.job_id).status == IN_PROGRESS
    response = await api(finished, method="POST", body={"status": COMPLETED}, auth="Bearer the-secret")
    assert response.code == 204 and api.jobs.store.job(job.job_id).status == COMPLETED


async def test_refusals_are_json_messages_with_their_status(api):
    response = await api("api/jobs", "alice", "POST", "{not json")
    assert response.code == 400 and message(response) == "The body is not JSON."
    assert response.headers["Content-Type"] == "application/json"
    response = await api("api/jobs", "alice", "POST", {**NOTEBOOK, "size": "gpu"})
    assert response.code == 403 and "Sizes you may use: small, medium, large." in message(response)
    api.jobs.limits = {"max_queued": 1}
    assert (await api("api/jobs", "alice", "POST", NOTEBOOK)).code == 201
    response = await api("api/jobs", "alice", "POST", NOTEBOOK)
    assert response.code == 429 and "allow (1): wait for some to start" in message(response)
    assert (await api("api/jobs", "gina", "POST", {**NOTEBOOK, "size": "gpu"})).code == 201
    assert (await api("api/nothing-here", "alice")).code == 404


async def test_metrics_are_for_administrators(api):
    job = await api.jobs.create_job("alice", [], NOTEBOOK)
    api.jobs.store.update(job, status=FAILED)
    response = await api("metrics", "bob")
    assert response.code == 403 and message(response) == "Metrics are for administrators."
    response = await api("metrics", "admin")
    assert response.code == 200
    assert 'ec2hub_job_runs_total{outcome="FAILED"} 1.0' in response.body.decode()


async def test_a_users_groups_come_from_the_hub_and_are_cached():
    asked: list[str] = []

    class Users(RequestHandler):
        def get(self, name: str) -> None:
            asked.append(name)
            assert self.request.headers["Authorization"] == "token service-token"
            if name != "alice":
                raise HTTPError(404)
            self.finish({"name": name, "groups": ["physics"]})

    sock, port = bind_unused_port()
    server = HTTPServer(Application([(r"/hub/api/users/([^/]+)", Users)]))
    server.add_sockets([sock])
    try:
        groups = hub_groups(f"http://127.0.0.1:{port}/hub/api", "service-token")
        assert await groups("alice") == ["physics"]
        assert await groups("alice") == ["physics"]
        assert await groups("nobody") is None
        assert asked == ["alice", "nobody"]
    finally:
        server.stop()


async def test_a_token_of_alices_made_for_another_service_reaches_none_of_her_jobs(api):
    job = await api.jobs.create_job("alice", GROUPS["alice"], NOTEBOOK)
    for path in (f"api/jobs/{job.job_id}", "api/jobs", "api/sizes"):
        response = await api(path, "alice:narrow")
        assert response.code == 403, path
        assert b"does not give access to the jobs service" in response.body
    assert (await api(f"api/jobs/{job.job_id}", "alice")).code == 200
