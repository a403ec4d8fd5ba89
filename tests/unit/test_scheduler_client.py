"""JupyterLab's notebook jobs as a client of the hub's jobs service: a fake service, moto's S3."""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from jupyter_scheduler.environments import EnvironmentRetrievalError
from jupyter_scheduler.exceptions import IdempotencyTokenError, InputUriError, SchedulerError
from jupyter_scheduler.models import (
    CountJobsQuery,
    CreateJob,
    CreateJobDefinition,
    CreateJobFromDefinition,
    JobFeature,
    ListJobDefinitionsQuery,
    ListJobsQuery,
    SortDirection,
    SortField,
    Status,
    UpdateJob,
    UpdateJobDefinition,
)
from jupyter_server.serverapp import ServerApp
from moto import mock_aws
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images" / "bootstrap"))
import ec2hub_scheduler  # noqa: E402
from ec2hub_scheduler import HubJobFiles, HubScheduler, HubSizes  # noqa: E402

JOB_ID = "5f0c6b0e-0d7e-4c1a-9a52-6a1d1c0f0a11"
DEFINITION_ID = "9a1e2d3c-4b5a-4f6e-8d7c-0b1a2c3d4e5f"
BUCKET = "unit-data"
PREFIX = "users/alice/"
TOKEN = "server-token"


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    body: dict | None
    authorization: str | None


class FakeJobsService:
    """The jobs service's REST API as canned answers, recording every call."""

    def __init__(self):
        self.calls: list[Call] = []
        self.answers: dict[tuple[str, str], tuple[int, object]] = {}

    def answer(self, method: str, path: str, code: int, body=None) -> None:
        """`body` may be a function of the request's body, called when the request comes."""
        self.answers[(method, path)] = (code, body)

    def paths(self) -> list[tuple[str, str]]:
        return [(call.method, call.path) for call in self.calls]

    def app(self) -> Application:
        return Application([(r"/services/jobs/(.*)", Route, {"service": self})])


class Route(RequestHandler):
    def initialize(self, service: FakeJobsService):
        self.service = service

    def reply(self, path: str) -> None:
        method = self.request.method
        body = json.loads(self.request.body) if self.request.body else None
        query = {k: [v.decode() for v in vs] for k, vs in self.request.query_arguments.items()}
        self.service.calls.append(Call(method, path, query, body, self.request.headers.get("Authorization")))
        code, answer = self.service.answers.get((method, path), (404, {"message": f"No route {path}"}))
        if callable(answer):
            answer = answer(body)
        self.set_status(code)
        self.finish(json.dumps(answer) if answer is not None else None)

    get = post = patch = delete = reply


def record(job_id=JOB_ID, **changes) -> dict:
    """A job as the service describes it: jupyter-scheduler's fields plus its own."""
    job = {
        "job_id": job_id,
        "name": "nightly",
        "input_filename": "analysis.ipynb",
        "runtime_environment_name": "ec2hub",
        "runtime_environment_parameters": {},
        "output_formats": ["ipynb", "html"],
        "parameters": {"n": "3"},
        "tags": [],
        "compute_type": "small (2 vCPU, 4 GiB, $0.042/h)",
        "package_input_folder": False,
        "idempotency_token": None,
        "job_definition_id": None,
        "url": f"/jobs/{job_id}",
        "create_time": 1_700_000_000_000,
        "update_time": 1_700_000_300_000,
        "start_time": 1_700_000_010_000,
        "end_time": 1_700_000_262_000,
        "status": "COMPLETED",
        "status_message": None,
        "packaged_files": [],
        "output_prefix": f"jobs/{job_id}/",
        "outputs": {"log": "job.log", "html": "analysis.html", "ipynb": "analysis.ipynb"},
        "duration": 252,
        "cost": 0.0112,
        "size": "small",
        "instance_id": "i-0123456789abcdef0",
    }
    job.update(changes)
    return job


def definition(**changes) -> dict:
    described = {
        "job_definition_id": DEFINITION_ID,
        "name": "nightly",
        "input_filename": "analysis.ipynb",
        "runtime_environment_name": "ec2hub",
        "runtime_environment_parameters": {},
        "output_formats": ["ipynb"],
        "parameters": {},
        "tags": [],
        "compute_type": "small (2 vCPU, 4 GiB, $0.042/h)",
        "schedule": "0 0 * * MON-FRI",
        "timezone": "Europe/Paris",
        "create_time": 1_700_000_000_000,
        "update_time": 1_700_000_000_000,
        "active": True,
        "package_input_folder": False,
        "packaged_files": [],
        "input_prefix": f"jobs/definitions/{DEFINITION_ID}/input/",
    }
    described.update(changes)
    return described


@pytest.fixture
def s3(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "EC2HUB_BUCKET": BUCKET,
        "EC2HUB_USER_PREFIX": PREFIX,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
async def service(monkeypatch):
    fake = FakeJobsService()
    sock, port = bind_unused_port()
    server = HTTPServer(fake.app())
    server.add_sockets([sock])
    monkeypatch.setenv("EC2HUB_JOBS_URL", f"http://127.0.0.1:{port}/services/jobs/")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)
    yield fake
    server.stop()
    await server.close_all_connections()


@pytest.fixture
def home(tmp_path):
    root = tmp_path / "home"
    root.mkdir()
    return root


@pytest.fixture
def scheduler(s3, service, home):
    return HubScheduler(root_dir=str(home), environments_manager=HubSizes(), db_url="sqlite://")


def write_notebook(path: Path, kernel: str | None = "python3") -> None:
    metadata = {"kernelspec": {"name": kernel, "display_name": "Python 3"}} if kernel else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": [], "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}))


def keys(s3, prefix: str = PREFIX) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return sorted(item["Key"].removeprefix(prefix) for item in listed)


def job_form(**changes) -> CreateJob:
    """What the create-job form sends."""
    fields = {
        "name": "nightly",
        "input_uri": "work/analysis.ipynb",
        "runtime_environment_name": "ec2hub",
        "runtime_environment_parameters": {},
        "output_formats": ["ipynb", "html"],
        "compute_type": "small (2 vCPU, 4 GiB, $0.042/h)",
        "idempotency_token": "token-1",
        "tags": [],
        "parameters": {"n": "3"},
        "package_input_folder": False,
    }
    fields.update(changes)
    return CreateJob(**fields)


def answer_creation(service: FakeJobsService, s3) -> dict:
    """The service creates the job and starts it, noting what was staged at the start."""
    staged = {}
    service.answer("POST", "api/jobs", 201, {"job_id": JOB_ID, "input_prefix": f"jobs/{JOB_ID}/input/"})

    def start(body):
        staged["keys"] = keys(s3)
        return record(status="QUEUED", outputs={})

    service.answer("POST", f"api/jobs/{JOB_ID}/start", 200, start)
    service.answer("DELETE", f"api/jobs/{JOB_ID}", 204)
    return staged


async def test_a_job_is_created_then_its_notebook_staged_then_it_is_started(scheduler, service, s3, home):
    write_notebook(home / "work" / "analysis.ipynb")
    (home / "work" / "data.csv").write_text("a,b\n")  # stays home: the folder is not asked for
    staged = answer_creation(service, s3)

    assert await scheduler.create_job(job_form()) == JOB_ID

    assert service.paths() == [("POST", "api/jobs"), ("POST", f"api/jobs/{JOB_ID}/start")]
    create, start = service.calls
    assert create.body == {
        "name": "nightly",
        "input_filename": "analysis.ipynb",
        "runtime_environment_name": "ec2hub",
        "runtime_environment_parameters": {},
        "output_formats": ["ipynb", "html"],
        "compute_type": "small (2 vCPU, 4 GiB, $0.042/h)",
        "idempotency_token": "token-1",
        "tags": [],
        "parameters": {"n": "3"},
        "package_input_folder": False,
    }
    assert {call.authorization for call in service.calls} == {f"token {TOKEN}"}
    assert start.body == {"packaged_files": []}
    assert staged["keys"] == [f"jobs/{JOB_ID}/input/analysis.ipynb"]
    stored = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}jobs/{JOB_ID}/input/analysis.ipynb")["Body"].read()
    assert stored == (home / "work" / "analysis.ipynb").read_bytes()


async def test_with_its_folder_a_job_takes_the_folders_files_but_no_hidden_file_link_mount_or_output(
    scheduler, service, s3, home, tmp_path
):
    write_notebook(home / "analysis.ipynb")
    (home / "data").mkdir()
    (home / "data" / "sales.csv").write_text("a,b\n")
    (home / "notes.txt").write_text("notes")
    (home / ".ipynb_checkpoints").mkdir()
    (home / ".ipynb_checkpoints" / "analysis-checkpoint.ipynb").write_text("{}")
    (home / ".cache").mkdir()
    (home / ".cache" / "big.bin").write_text("cache")
    (home / ".bashrc").write_text("")
    (home / "jobs" / "analysis-old").mkdir(parents=True)
    (home / "jobs" / "analysis-old" / "analysis.html").write_text("<html/>")
    elsewhere = tmp_path / "mounts"
    (elsewhere / "s3").mkdir(parents=True)
    (elsewhere / "s3" / "lake.parquet").write_text("lake")
    (elsewhere / "shared").mkdir()
    (home / "s3").symlink_to(elsewhere / "s3")
    (home / "shared").symlink_to(elsewhere / "shared")
    (home / "data" / "linked.parquet").symlink_to(elsewhere / "s3" / "lake.parquet")
    staged = answer_creation(service, s3)

    await scheduler.create_job(job_form(input_uri="analysis.ipynb", package_input_folder=True))

    assert service.calls[-1].body == {"packaged_files": ["data/sales.csv", "notes.txt"]}
    assert staged["keys"] == [
        f"jobs/{JOB_ID}/input/analysis.ipynb",
        f"jobs/{JOB_ID}/input/data/sales.csv",
        f"jobs/{JOB_ID}/input/notes.txt",
    ]


async def test_a_folder_larger_than_the_limit_is_refused_before_anything_is_created(
    scheduler, service, s3, home
):
    write_notebook(home / "work" / "analysis.ipynb")
    (home / "work" / "data.bin").write_bytes(b"x" * 2048)
    scheduler.max_input_folder_bytes = 1024

    with pytest.raises(SchedulerError, match="more than the .* a job can take with it"):
        await scheduler.create_job(job_form(package_input_folder=True))
    assert service.calls == []


async def test_a_notebook_without_a_kernel_is_refused_before_anything_is_created(
    scheduler, service, s3, home
):
    write_notebook(home / "work" / "analysis.ipynb", kernel=None)

    with pytest.raises(SchedulerError) as refused:
        await scheduler.create_job(job_form())
    assert str(refused.value) == (
        "This notebook has no kernel: open it, pick a kernel, save it, then create the job."
    )
    assert service.calls == []
    assert keys(s3) == []


async def test_a_missing_notebook_is_an_input_error(scheduler, service):
    with pytest.raises(InputUriError, match="work/analysis.ipynb"):
        await scheduler.create_job(job_form())
    assert service.calls == []


async def test_the_services_refusal_reaches_the_user_in_its_words(scheduler, service, s3, home):
    write_notebook(home / "work" / "analysis.ipynb")
    service.answer("POST", "api/jobs", 403, {"message": "The size 'huge' is not one of yours."})

    with pytest.raises(SchedulerError) as refused:
        await scheduler.create_job(job_form(compute_type="huge"))
    assert str(refused.value) == "The size 'huge' is not one of yours."
    assert keys(s3) == []


async def test_a_token_used_before_is_an_idempotency_error(scheduler, service, s3, home):
    write_notebook(home / "work" / "analysis.ipynb")
    service.answer("POST", "api/jobs", 409, {"message": "A job has this token."})

    with pytest.raises(IdempotencyTokenError, match="token-1"):
        await scheduler.create_job(job_form())


async def test_a_job_the_service_does_not_know_is_named_when_it_gives_no_message(scheduler, service):
    service.answer("GET", f"api/jobs/{JOB_ID}", 404, None)

    with pytest.raises(SchedulerError, match=f"^No job {JOB_ID}$"):
        await scheduler.get_job(JOB_ID)


async def test_when_staging_fails_the_job_is_deleted_and_not_started(scheduler, service, s3, home):
    write_notebook(home / "work" / "analysis.ipynb")
    answer_creation(service, s3)
    scheduler.folder = ec2hub_scheduler.UserFolder("no-such-bucket", PREFIX)

    with pytest.raises(SchedulerError) as refused:
        await scheduler.create_job(job_form())
    assert str(refused.value).startswith(
        "Could not copy analysis.ipynb to your S3 folder (NoSuchBucket), so the job was not created."
    )
    assert service.paths() == [("POST", "api/jobs"), ("DELETE", f"api/jobs/{JOB_ID}")]


async def test_a_refused_start_deletes_the_job(scheduler, service, s3, home):
    write_notebook(home / "work" / "analysis.ipynb")
    answer_creation(service, s3)
    service.answer("POST", f"api/jobs/{JOB_ID}/start", 409, {"message": "You have 4 jobs running."})

    with pytest.raises(SchedulerError, match="You have 4 jobs running."):
        await scheduler.create_job(job_form())
    assert service.paths()[-1] == ("DELETE", f"api/jobs/{JOB_ID}")


async def test_the_job_list_links_the_outputs_through_the_s3_mount(scheduler, service):
    other = "0b9d7c6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
    service.answer(
        "GET",
        "api/jobs",
        200,
        {
            "jobs": [
                record(),
                record(other, status="IN_PROGRESS", outputs={}, duration=None, cost=None, end_time=None),
            ],
            "total_count": 30,
            "next_token": "25",
        },
    )
    query = ListJobsQuery(
        status=Status.COMPLETED,
        tags=[],
        sort_by=[
            SortField(name="create_time", direction=SortDirection.desc),
            SortField(name="name", direction=SortDirection.asc),
        ],
        max_items=25,
    )

    page = await scheduler.list_jobs(query)

    assert service.calls[0].query == {
        "status": ["COMPLETED"],
        "sort_by": ["create_time:desc,name:asc"],
        "max_items": ["25"],
    }
    assert (page.total_count, page.next_token) == (30, "25")
    done, running = page.jobs
    assert (done.job_id, done.status, done.end_time, done.downloaded) == (
        JOB_ID,
        Status.COMPLETED,
        1_700_000_262_000,
        True,
    )
    assert "cost" not in done.dict() and "outputs" not in done.dict()
    assert [(f.display_name, f.file_format, f.file_path) for f in done.job_files] == [
        ("Notebook · 4m12s · $0.01", "ipynb", f"s3/jobs/{JOB_ID}/analysis.ipynb"),
        ("HTML", "html", f"s3/jobs/{JOB_ID}/analysis.html"),
        ("Log", "log", f"s3/jobs/{JOB_ID}/job.log"),
        ("Input", "input", None),
    ]
    assert [(f.file_format, f.file_path) for f in running.job_files] == [("input", None)]
    assert scheduler.get_staging_paths(done) == {
        "ipynb": f"s3://{BUCKET}/{PREFIX}jobs/{JOB_ID}/analysis.ipynb",
        "html": f"s3://{BUCKET}/{PREFIX}jobs/{JOB_ID}/analysis.html",
        "log": f"s3://{BUCKET}/{PREFIX}jobs/{JOB_ID}/job.log",
        "input": f"s3://{BUCKET}/{PREFIX}jobs/{JOB_ID}/input/analysis.ipynb",
    }


@pytest.mark.parametrize(
    ("duration", "cost", "label"),
    [
        (42, None, "Notebook · 42s"),
        (3725.4, 0.13, "Notebook · 1h02m · $0.13"),
        (None, 0.001, "Notebook · <$0.01"),
        (None, None, "Notebook"),
    ],
)
def test_the_notebooks_link_shows_what_is_known_of_duration_and_cost(duration, cost, label):
    files = ec2hub_scheduler.job_files(record(duration=duration, cost=cost))
    assert files[0].display_name == label


async def test_the_presence_check_of_lab_is_passed_through(scheduler, service):
    service.answer("GET", "api/jobs", 200, {"jobs": [], "total_count": 7})

    page = await scheduler.list_jobs(ListJobsQuery(max_items=0))

    assert service.calls[0].query == {"sort_by": ["create_time:desc"], "max_items": ["0"]}
    assert (page.jobs, page.total_count, page.next_token) == ([], 7, None)


async def test_count_stop_rename_and_delete_go_to_the_service(scheduler, service):
    service.answer("GET", "api/jobs/count", 200, {"count": 2})
    service.answer("POST", f"api/jobs/{JOB_ID}/stop", 200, record(status="STOPPING"))
    service.answer("PATCH", f"api/jobs/{JOB_ID}", 200, record(name="renamed"))
    service.answer("DELETE", f"api/jobs/{JOB_ID}", 204)

    assert await scheduler.count_jobs(CountJobsQuery()) == 2
    await scheduler.stop_job(JOB_ID)
    await scheduler.update_job(JOB_ID, UpdateJob(name="renamed"))
    await scheduler.delete_job(JOB_ID)

    assert [(c.method, c.path, c.query, c.body) for c in service.calls] == [
        ("GET", "api/jobs/count", {"status": ["IN_PROGRESS"]}, None),
        ("POST", f"api/jobs/{JOB_ID}/stop", {}, {}),
        ("PATCH", f"api/jobs/{JOB_ID}", {}, {"name": "renamed"}),
        ("DELETE", f"api/jobs/{JOB_ID}", {}, None),
    ]


async def test_a_definition_is_created_staged_then_activated(scheduler, service, s3, home):
    write_notebook(home / "work" / "analysis.ipynb")
    service.answer(
        "POST",
        "api/job_definitions",
        201,
        {"job_definition_id": DEFINITION_ID, "input_prefix": f"jobs/definitions/{DEFINITION_ID}/input/"},
    )
    service.answer("POST", f"api/job_definitions/{DEFINITION_ID}/start", 200, definition())
    form = CreateJobDefinition(
        name="nightly",
        input_uri="work/analysis.ipynb",
        runtime_environment_name="ec2hub",
        runtime_environment_parameters={},
        output_formats=["ipynb"],
        compute_type="small (2 vCPU, 4 GiB, $0.042/h)",
        schedule="0 0 * * MON-FRI",
        timezone="Europe/Paris",
    )

    assert await scheduler.create_job_definition(form) == DEFINITION_ID

    create, start = service.calls
    assert create.body["schedule"] == "0 0 * * MON-FRI" and create.body["timezone"] == "Europe/Paris"
    assert "input_uri" not in create.body and "idempotency_token" not in create.body
    assert start.path == f"api/job_definitions/{DEFINITION_ID}/start"
    assert keys(s3) == [f"jobs/definitions/{DEFINITION_ID}/input/analysis.ipynb"]


async def test_editing_a_definition_restages_only_a_new_file(scheduler, service, s3, home):
    write_notebook(home / "work" / "report.ipynb")
    path = f"api/job_definitions/{DEFINITION_ID}"
    service.answer("GET", path, 200, definition())
    service.answer("PATCH", path, 204)

    # The edit form sends the definition's own file name when no new file was picked.
    await scheduler.update_job_definition(
        DEFINITION_ID, UpdateJobDefinition(schedule="0 6 * * *", timezone="UTC", input_uri="analysis.ipynb")
    )
    assert service.calls[-1].body == {"schedule": "0 6 * * *", "timezone": "UTC"}
    assert keys(s3) == []

    await scheduler.update_job_definition(
        DEFINITION_ID, UpdateJobDefinition(schedule="0 6 * * *", input_uri="work/report.ipynb")
    )
    assert service.calls[-1].body == {"schedule": "0 6 * * *", "input_filename": "report.ipynb"}
    assert keys(s3) == [f"jobs/definitions/{DEFINITION_ID}/input/report.ipynb"]

    await scheduler.update_job_definition(DEFINITION_ID, UpdateJobDefinition(active=False))
    assert (service.calls[-1].method, service.calls[-1].body) == ("PATCH", {"active": False})


async def test_definitions_are_read_and_run_through_the_service(scheduler, service):
    service.answer("GET", f"api/job_definitions/{DEFINITION_ID}", 200, definition())
    service.answer("GET", "api/job_definitions", 200, {"job_definitions": [definition()], "total_count": 1})
    service.answer("POST", f"api/job_definitions/{DEFINITION_ID}/jobs", 201, {"job_id": JOB_ID})

    described = await scheduler.get_job_definition(DEFINITION_ID)
    assert (described.schedule, described.active) == ("0 0 * * MON-FRI", True)
    assert "input_prefix" not in described.dict()
    listed = await scheduler.list_job_definitions(ListJobDefinitionsQuery(max_items=25))
    assert [d.job_definition_id for d in listed.job_definitions] == [DEFINITION_ID]
    run = CreateJobFromDefinition(parameters={"n": "5"})
    assert await scheduler.create_job_from_definition(DEFINITION_ID, run) == JOB_ID
    assert service.calls[-1].body == {"parameters": {"n": "5"}}


async def test_the_sizes_are_the_compute_types_of_one_environment(service):
    service.answer(
        "GET",
        "api/sizes",
        200,
        {
            "sizes": [
                {"compute_type": "small (2 vCPU, 4 GiB, $0.042/h)", "slug": "small"},
                {"compute_type": "large (8 vCPU, 32 GiB, $0.333/h)", "slug": "large"},
            ],
            "default": "small (2 vCPU, 4 GiB, $0.042/h)",
        },
    )

    (environment,) = await HubSizes().list_environments()

    assert (environment.name, environment.label, environment.output_formats) == (
        "ec2hub",
        "ec2hub",
        ["ipynb", "html"],
    )
    assert environment.compute_types == [
        "small (2 vCPU, 4 GiB, $0.042/h)",
        "large (8 vCPU, 32 GiB, $0.333/h)",
    ]
    assert environment.default_compute_type == "small (2 vCPU, 4 GiB, $0.042/h)"
    assert environment.utc_only is False
    assert HubSizes().output_formats_mapping() == {"ipynb": "Notebook", "html": "HTML"}
    assert HubSizes().manage_environments_command() == ""


async def test_sizes_the_service_cannot_give_are_a_retrieval_error_with_its_message(service):
    service.answer("GET", "api/sizes", 503, {"message": "The jobs service is starting."})

    with pytest.raises(EnvironmentRetrievalError, match="^The jobs service is starting.$"):
        await HubSizes().list_environments()


async def test_without_a_jobs_service_every_call_says_jobs_are_off(monkeypatch, s3, home):
    monkeypatch.delenv("EC2HUB_JOBS_URL", raising=False)
    scheduler = HubScheduler(root_dir=str(home), environments_manager=HubSizes(), db_url="sqlite://")
    write_notebook(home / "work" / "analysis.ipynb")

    for call in (
        scheduler.create_job(job_form()),
        scheduler.list_jobs(ListJobsQuery(max_items=0)),
        scheduler.get_job(JOB_ID),
    ):
        with pytest.raises(SchedulerError, match="^Notebook jobs are off on this hub.$"):
            await call
    with pytest.raises(EnvironmentRetrievalError, match="^Notebook jobs are off on this hub.$"):
        await HubSizes().list_environments()


async def test_a_service_that_does_not_answer_is_said_so(monkeypatch, s3, home):
    sock, port = bind_unused_port()
    sock.close()  # nothing listens there
    monkeypatch.setenv("EC2HUB_JOBS_URL", f"http://127.0.0.1:{port}/services/jobs/")
    scheduler = HubScheduler(root_dir=str(home), environments_manager=HubSizes(), db_url="sqlite://")

    with pytest.raises(SchedulerError, match="did not answer"):
        await scheduler.count_jobs(CountJobsQuery())


async def test_the_features_and_files_classes_fit_how_jupyter_scheduler_calls_them(scheduler):
    features = ec2hub_scheduler.Features
    # jupyter-scheduler's config route passes the class again.
    assert features.supported_features(features) == features.supported_features()
    supported = features.supported_features()
    assert supported[JobFeature.job_definition] and supported[JobFeature.stop_job]
    assert not supported[JobFeature.email_notifications]
    assert len(supported) == len(JobFeature)
    assert await HubJobFiles(scheduler=scheduler).copy_from_staging(JOB_ID) is None
    assert scheduler.task_runner is None


def test_the_server_flags_name_this_modules_classes():
    assert ec2hub_scheduler.SERVER_ARGS == [
        "--SchedulerApp.scheduler_class=ec2hub_scheduler.HubScheduler",
        "--SchedulerApp.environment_manager_class=ec2hub_scheduler.HubSizes",
        "--SchedulerApp.job_files_manager_class=ec2hub_scheduler.HubJobFiles",
        "--SchedulerApp.db_url=sqlite://",
        "--HubScheduler.execution_manager_class=ec2hub_scheduler.Features",
    ]


async def test_a_jupyter_server_started_with_the_flags_serves_lab_from_the_service(
    service, home, tmp_path, monkeypatch
):
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    service.answer("GET", "api/sizes", 200, {"sizes": [{"compute_type": "small"}], "default": "small"})
    service.answer("GET", "api/jobs", 200, {"jobs": [], "total_count": 0})
    sock, port = bind_unused_port()
    sock.close()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    app = ServerApp()
    try:
        app.initialize(
            argv=[
                *ec2hub_scheduler.SERVER_ARGS,
                f"--port={port}",
                "--IdentityProvider.token=lab-token",
                f"--ServerApp.root_dir={home}",
                "--ServerApp.open_browser=False",
                "--ServerApp.jpserver_extensions={'jupyter_scheduler': True}",
            ],
            new_httpserver=True,
        )

        async def get(path: str):
            response = await AsyncHTTPClient().fetch(
                f"http://127.0.0.1:{port}/scheduler/{path}", headers={"Authorization": "token lab-token"}
            )
            return json.loads(response.body)

        (environment,) = await get("runtime_environments")
        assert (environment["name"], environment["compute_types"]) == ("ec2hub", ["small"])
        assert environment["output_formats"] == [
            {"name": "ipynb", "label": "Notebook"},
            {"name": "html", "label": "HTML"},
        ]
        assert await get("jobs?max_items=0") == {"jobs": [], "total_count": 0}
        assert service.calls[-1].query["max_items"] == ["0"]
        assert (await get("config"))["supported_features"]["job_definition"] is True
        assert not (tmp_path / "jupyter_data_dir" / "scheduler.sqlite").exists()
    finally:
        app.http_server.stop()
        await app._cleanup()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
