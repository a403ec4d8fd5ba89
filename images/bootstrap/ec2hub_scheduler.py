"""JupyterLab's notebook jobs, run by the hub's jobs service: each job gets an instance of its own.

jupyter-scheduler keeps its UI and REST API; the classes here replace everything behind them, so
nothing runs in the user's server. Every call goes to the hub's jobs service, over HTTP on the
server's event loop, with the server's own hub token. The one thing only this server can do is read
the notebook: it copies it (and its folder, when asked) to the job's input folder in the user's S3
prefix with its own role, then tells the service the job can start. Outputs land in the same prefix,
which is mounted at ~/s3, so the job list links to them directly and there is nothing to download.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import quote, urlencode

import boto3
from jupyter_scheduler.environments import EnvironmentManager, EnvironmentRetrievalError
from jupyter_scheduler.exceptions import IdempotencyTokenError, InputUriError, SchedulerError
from jupyter_scheduler.executors import ExecutionManager
from jupyter_scheduler.job_files_manager import JobFilesManager
from jupyter_scheduler.models import (
    CountJobsQuery,
    CreateJob,
    CreateJobDefinition,
    CreateJobFromDefinition,
    DescribeJob,
    DescribeJobDefinition,
    JobFeature,
    JobFile,
    ListJobDefinitionsQuery,
    ListJobDefinitionsResponse,
    ListJobsQuery,
    ListJobsResponse,
    RuntimeEnvironment,
    UpdateJob,
    UpdateJobDefinition,
)
from jupyter_scheduler.scheduler import BaseScheduler
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Integer, Unicode
from traitlets.log import get_logger

# The flags the bootstrap adds to jupyterhub-singleuser. The in-memory database: jupyter-scheduler
# always creates its tables, and this way it writes no file in the home.
SERVER_ARGS = [
    "--SchedulerApp.scheduler_class=ec2hub_scheduler.HubScheduler",
    "--SchedulerApp.environment_manager_class=ec2hub_scheduler.HubSizes",
    "--SchedulerApp.job_files_manager_class=ec2hub_scheduler.HubJobFiles",
    "--SchedulerApp.db_url=sqlite://",
    "--HubScheduler.execution_manager_class=ec2hub_scheduler.Features",
]

OFF = "Notebook jobs are off on this hub."
NO_KERNEL = "This notebook has no kernel: open it, pick a kernel, save it, then create the job."
NO_ANSWER = "The hub's jobs service did not answer. Try again in a minute."
REQUEST_TIMEOUT = 30.0  # seconds, for each call to the service

# The one environment the job form offers; the size (compute type) is the real choice.
ENVIRONMENT = "ec2hub"
OUTPUT_FORMATS = {"ipynb": "Notebook", "html": "HTML"}

# What a job's home-relative path to the user's S3 prefix is: ~/s3 is its mount.
MOUNT = "s3/"

# The fields of a job and of a definition the service takes at creation. The notebook's path is
# this server's business; the service gets the staged copy's file name.
JOB_FIELDS = {
    "name",
    "input_filename",
    "runtime_environment_name",
    "runtime_environment_parameters",
    "output_formats",
    "parameters",
    "tags",
    "compute_type",
    "package_input_folder",
    "idempotency_token",
}
DEFINITION_FIELDS = (JOB_FIELDS - {"idempotency_token"}) | {"schedule", "timezone"}

FEATURES = {
    JobFeature.job_name: True,
    JobFeature.parameters: True,
    JobFeature.output_formats: True,
    JobFeature.job_definition: True,
    JobFeature.idempotency_token: True,
    JobFeature.tags: True,
    JobFeature.timeout_seconds: True,
    JobFeature.max_retries: True,
    JobFeature.stop_job: True,
    JobFeature.delete_job: True,
    JobFeature.email_notifications: False,
    JobFeature.retry_on_timeout: False,
    JobFeature.min_retry_interval_millis: False,
    JobFeature.output_filename_template: False,
}


class ServiceError(SchedulerError):
    """A refusal by the jobs service; its message is written for the user."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class NoAnswer(SchedulerError):
    """The jobs service did not answer: what was asked may or may not have happened."""


@dataclass(frozen=True)
class JobsService:
    """The hub's jobs service, called with this server's hub token."""

    url: str  # empty when the hub has no jobs service
    token: str
    log: Any = field(default_factory=get_logger, compare=False, repr=False)

    @classmethod
    def from_environ(cls, log=None) -> JobsService:
        return cls(
            os.environ.get("EC2HUB_JOBS_URL", ""),
            os.environ.get("JUPYTERHUB_API_TOKEN", ""),
            log or get_logger(),
        )

    def check_on(self) -> None:
        if not self.url:
            raise SchedulerError(OFF)

    async def call(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        query: dict | None = None,
        missing: str | None = None,
    ) -> dict:
        """The service's JSON answer; a `ServiceError` with its message when it refuses.

        `missing` is the message for a 404 that comes without one.
        """
        self.check_on()
        url = self.url.rstrip("/") + "/" + path
        if query:
            url += "?" + urlencode(query, doseq=True)
        has_body = method in ("POST", "PATCH", "PUT")
        request = HTTPRequest(
            url,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            body=json.dumps(body or {}) if has_body else None,
            request_timeout=REQUEST_TIMEOUT,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (HTTPClientError, OSError) as e:
            self.log.warning("The jobs service did not answer %s %s: %s", method, path, e)
            raise NoAnswer(NO_ANSWER) from e
        if response.code < 400:
            try:
                return json.loads(response.body) if response.body else {}
            except ValueError as e:
                self.log.warning(
                    "The jobs service answered %s %s with no JSON: %r", method, path, response.body
                )
                raise SchedulerError("The hub's jobs service gave an answer this server cannot read.") from e
        message = service_message(response.body)
        self.log.info("The jobs service answered %s %s with %d: %s", method, path, response.code, message)
        if not message:
            message = missing if response.code == 404 and missing else None
        raise ServiceError(message or f"The hub's jobs service answered {response.code}.", response.code)


def service_message(body: bytes | None) -> str | None:
    try:
        message = json.loads(body or b"").get("message")
    except (ValueError, AttributeError):
        return None
    return message if isinstance(message, str) and message else None


@dataclass(frozen=True)
class UserFolder:
    """The user's S3 prefix, where jobs take their input and leave their outputs."""

    bucket: str
    prefix: str  # "users/alice/", or "" at the bucket's root

    @classmethod
    def from_environ(cls) -> UserFolder:
        prefix = os.environ.get("EC2HUB_USER_PREFIX", "").strip("/")
        return cls(os.environ.get("EC2HUB_BUCKET", ""), f"{prefix}/" if prefix else "")

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def upload(self, files: list[tuple[str, str]]) -> None:
        """Copy each (local path, key under the prefix), with the server's own role. Blocks."""
        s3 = boto3.client("s3")
        for path, key in files:
            s3.upload_file(path, self.bucket, self.prefix + key)


@dataclass(frozen=True)
class Input:
    """A notebook to send to a job, and the files of its folder that go with it."""

    notebook: str  # absolute path
    filename: str
    files: list[tuple[str, str]] = field(default_factory=list)  # (absolute path, path from the folder)

    @property
    def packaged_files(self) -> list[str]:
        return [relative for _, relative in self.files]

    def uploads(self, input_prefix: str) -> list[tuple[str, str]]:
        return [(self.notebook, input_prefix + self.filename)] + [
            (path, input_prefix + relative) for path, relative in self.files
        ]


def kernel_name(notebook: str) -> str | None:
    """The kernel the notebook was saved with, if any."""
    try:
        with open(notebook, encoding="utf-8") as f:
            metadata = json.load(f).get("metadata") or {}
    except (OSError, ValueError, AttributeError):
        return None
    kernelspec = metadata.get("kernelspec") if isinstance(metadata, dict) else None
    return (kernelspec or {}).get("name") if isinstance(kernelspec, dict) else None


def folder_files(folder: str, notebook: str, skipped: set[str]) -> list[tuple[str, str]]:
    """The regular files under `folder`, as (path, relative path), the notebook aside.

    Hidden files and folders (checkpoints among them), symbolic links and the `skipped` folders
    (absolute paths) stay out: links lead to the S3 mounts or anywhere else in the disk.
    """
    found = []
    for top, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and not os.path.islink(os.path.join(top, d))
            and os.path.join(top, d) not in skipped
        )
        for name in sorted(files):
            path = os.path.join(top, name)
            if name.startswith(".") or path == notebook or os.path.islink(path) or not os.path.isfile(path):
                continue
            found.append((path, os.path.relpath(path, folder).replace(os.sep, "/")))
    return sorted(found, key=lambda item: item[1])


def upload_error_code(error: BaseException) -> str:
    """AWS's short error code ("AccessDenied") behind an upload failure, or its kind."""
    seen: BaseException | None = error
    for _ in range(5):  # boto3 wraps botocore's error once or twice
        if seen is None:
            break
        response = getattr(seen, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code"):
            return response["Error"]["Code"]
        seen = seen.__cause__ or seen.__context__
    return type(error).__name__


def format_duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


def format_cost(dollars: float) -> str:
    return "<$0.01" if 0 < dollars < 0.005 else f"${dollars:.2f}"


def job_files(record: dict) -> list[JobFile]:
    """Links to the outputs a job has left so far, through the ~/s3 mount, plus its input."""
    outputs = record.get("outputs") or {}
    output_prefix = record.get("output_prefix") or f"jobs/{record['job_id']}/"
    formats = record.get("output_formats") or []
    order = [f for f in formats if f in outputs]
    order += [f for f in outputs if f not in formats and f != "log"]
    order += ["log"] if "log" in outputs else []
    notebook = ["Notebook"]
    if record.get("duration") is not None:
        notebook.append(format_duration(record["duration"]))
    if record.get("cost") is not None:
        notebook.append(format_cost(record["cost"]))
    names = {"ipynb": " · ".join(notebook), "html": "HTML", "log": "Log"}
    files = [
        JobFile(display_name=names.get(f, f), file_format=f, file_path=MOUNT + output_prefix + outputs[f])
        for f in order
    ]
    return files + [JobFile(display_name="Input", file_format="input", file_path=None)]


def describe_job(record: dict, with_files: bool = True) -> DescribeJob:
    known = {k: v for k, v in record.items() if k in DescribeJob.__fields__}
    known.update(job_files=job_files(record) if with_files else [], downloaded=True)
    return DescribeJob(**known)


def describe_definition(record: dict) -> DescribeJobDefinition:
    return DescribeJobDefinition(**{k: v for k, v in record.items() if k in DescribeJobDefinition.__fields__})


def list_arguments(query: ListJobsQuery | ListJobDefinitionsQuery) -> dict:
    """A list query as the service's query string: sort_by=create_time:desc,name:asc."""
    arguments = {}
    for name, value in query.dict(exclude={"sort_by"}, exclude_none=True).items():
        if value != []:
            arguments[name] = value.value if isinstance(value, Enum) else value
    if query.sort_by:
        arguments["sort_by"] = ",".join(f"{f.name}:{f.direction.value}" for f in query.sort_by)
    return arguments


def path_of(*parts: str) -> str:
    return "/".join(quote(part, safe="") for part in parts)


class HubScheduler(BaseScheduler):
    """jupyter-scheduler's scheduler as a client of the hub's jobs service."""

    # The service runs jobs and keeps schedules; a task runner here would run them a second time.
    task_runner = None

    db_url = Unicode(help="jupyter-scheduler's database. Unused: the jobs service keeps the jobs.")

    max_input_folder_bytes = Integer(
        2 * 1024**3,
        config=True,
        help="""Largest total size, in bytes, of the files a job takes with it when "Run job with
        input folder" is checked (default 2 GiB). A larger folder is refused before anything is
        created. Example: `c.HubScheduler.max_input_folder_bytes = 10 * 1024**3`.""",
    )

    def __init__(self, root_dir, environments_manager, config=None, **kwargs):
        super().__init__(
            root_dir=root_dir, environments_manager=environments_manager, config=config, **kwargs
        )
        self.service = JobsService.from_environ(self.log)
        self.folder = UserFolder.from_environ()

    # Jobs

    async def create_job(self, model: CreateJob) -> str:
        notebook = await self._read_input(model.input_uri, model.input_filename, model.package_input_folder)
        try:
            created = await self.service.call(
                "POST", "api/jobs", model.dict(include=JOB_FIELDS, exclude_none=True)
            )
        except ServiceError as e:
            if e.code == 409 and model.idempotency_token:
                raise IdempotencyTokenError(model.idempotency_token) from e
            raise
        job_id = created["job_id"]
        await self._start(notebook, created["input_prefix"], path_of("api", "jobs", job_id), "job")
        return job_id

    async def update_job(self, job_id: str, model: UpdateJob):
        changes = model.dict(exclude={"status"}, exclude_none=True)
        if changes:
            await self.service.call(
                "PATCH", path_of("api", "jobs", job_id), changes, missing=f"No job {job_id}"
            )

    async def stop_job(self, job_id: str):
        await self.service.call("POST", path_of("api", "jobs", job_id, "stop"), missing=f"No job {job_id}")

    async def delete_job(self, job_id: str):
        await self.service.call("DELETE", path_of("api", "jobs", job_id), missing=f"No job {job_id}")

    async def get_job(self, job_id: str, job_files: bool | None = True) -> DescribeJob:
        record = await self.service.call("GET", path_of("api", "jobs", job_id), missing=f"No job {job_id}")
        return describe_job(record, with_files=bool(job_files))

    async def list_jobs(self, query: ListJobsQuery) -> ListJobsResponse:
        page = await self.service.call("GET", "api/jobs", query=list_arguments(query))
        return ListJobsResponse(
            jobs=[describe_job(record) for record in page.get("jobs", [])],
            total_count=page.get("total_count", 0),
            next_token=page.get("next_token"),
        )

    async def count_jobs(self, query: CountJobsQuery) -> int:
        answer = await self.service.call("GET", "api/jobs/count", query={"status": query.status.value})
        return answer["count"]

    # Job definitions

    async def create_job_definition(self, model: CreateJobDefinition) -> str:
        notebook = await self._read_input(model.input_uri, model.input_filename, model.package_input_folder)
        created = await self.service.call(
            "POST", "api/job_definitions", model.dict(include=DEFINITION_FIELDS, exclude_none=True)
        )
        definition_id = created["job_definition_id"]
        path = path_of("api", "job_definitions", definition_id)
        await self._start(notebook, created["input_prefix"], path, "job definition")
        return definition_id

    async def update_job_definition(self, job_definition_id: str, model: UpdateJobDefinition):
        path = path_of("api", "job_definitions", job_definition_id)
        missing = f"No job definition {job_definition_id}"
        # Only what the caller sent: the model's defaults (an output file name template) are not changes.
        changes = model.dict(
            exclude={"input_uri", "output_filename_template"}, exclude_unset=True, exclude_none=True
        )
        if model.input_uri:
            definition = await self.service.call("GET", path, missing=missing)
            # The edit form sends the definition's own file name when the user picked no new file.
            if model.input_uri != definition["input_filename"]:
                notebook = await self._read_input(model.input_uri, os.path.basename(model.input_uri), False)
                await self._upload(notebook, definition["input_prefix"], "the job definition was not changed")
                changes["input_filename"] = notebook.filename
        if changes:
            await self.service.call("PATCH", path, changes, missing=missing)

    async def delete_job_definition(self, job_definition_id: str):
        await self.service.call(
            "DELETE",
            path_of("api", "job_definitions", job_definition_id),
            missing=f"No job definition {job_definition_id}",
        )

    async def get_job_definition(self, job_definition_id: str) -> DescribeJobDefinition:
        record = await self.service.call(
            "GET",
            path_of("api", "job_definitions", job_definition_id),
            missing=f"No job definition {job_definition_id}",
        )
        return describe_definition(record)

    async def list_job_definitions(self, query: ListJobDefinitionsQuery) -> ListJobDefinitionsResponse:
        page = await self.service.call("GET", "api/job_definitions", query=list_arguments(query))
        return ListJobDefinitionsResponse(
            job_definitions=[describe_definition(record) for record in page.get("job_definitions", [])],
            total_count=page.get("total_count", 0),
            next_token=page.get("next_token"),
        )

    async def create_job_from_definition(self, job_definition_id: str, model: CreateJobFromDefinition) -> str:
        answer = await self.service.call(
            "POST",
            path_of("api", "job_definitions", job_definition_id, "jobs"),
            model.dict(exclude_none=True),
            missing=f"No job definition {job_definition_id}",
        )
        return answer["job_id"]

    def get_staging_paths(self, model: DescribeJob | DescribeJobDefinition) -> dict[str, str]:
        """Where a job's files are in S3 (the service's layout); the job list reads them through ~/s3."""
        if isinstance(model, DescribeJobDefinition):
            input_key = f"jobs/definitions/{model.job_definition_id}/input/{model.input_filename}"
            return {"input": self.folder.url(input_key)}
        paths = {
            f.file_format: self.folder.url(f.file_path.removeprefix(MOUNT))
            for f in model.job_files
            if f.file_path and f.file_path.startswith(MOUNT)
        }
        paths["input"] = self.folder.url(f"jobs/{model.job_id}/input/{model.input_filename}")
        return paths

    # Input staging

    async def _read_input(self, input_uri: str, filename: str, with_folder: bool | None) -> Input:
        """The notebook (and its folder) to send, checked before anything is created."""
        self.service.check_on()
        if not self.folder.bucket:
            raise SchedulerError("This server has no S3 folder, so it cannot send notebooks to jobs.")
        return await asyncio.to_thread(self._collect, input_uri, filename, bool(with_folder))

    def _collect(self, input_uri: str, filename: str, with_folder: bool) -> Input:
        if not self.file_exists(input_uri):
            raise InputUriError(input_uri)
        root = os.path.abspath(self.root_dir)
        notebook = os.path.normpath(os.path.join(root, input_uri))
        if not kernel_name(notebook):
            raise SchedulerError(NO_KERNEL)
        if not with_folder:
            return Input(notebook, filename)
        # The downloaded-outputs folder and the S3 mounts of the home never go with a job.
        skipped = {os.path.join(root, name) for name in (self.output_directory, "s3", "shared")}
        files = folder_files(os.path.dirname(notebook), notebook, skipped)
        size = sum(os.path.getsize(path) for path, _ in files)
        if size > self.max_input_folder_bytes:
            raise SchedulerError(
                f"The notebook's folder holds {size / 1024**3:.1f} GiB of files, more than the "
                f"{self.max_input_folder_bytes / 1024**3:.1f} GiB a job can take with it: move the notebook "
                "to a smaller folder, or leave 'Run job with input folder' unchecked."
            )
        return Input(notebook, filename, files)

    async def _upload(self, notebook: Input, input_prefix: str, consequence: str) -> None:
        try:
            await asyncio.to_thread(self.folder.upload, notebook.uploads(input_prefix))
        except Exception as e:
            self.log.exception("Copying %s to %s failed", notebook.notebook, self.folder.url(input_prefix))
            raise SchedulerError(
                f"Could not copy {notebook.filename} to your S3 folder ({upload_error_code(e)}), "
                f"so {consequence}. Try again; if it keeps failing, tell your hub's admin."
            ) from e

    async def _start(self, notebook: Input, input_prefix: str, path: str, kind: str) -> None:
        """Stage the input under `input_prefix`, then start the record at `path`; or delete it."""
        try:
            await self._upload(notebook, input_prefix, f"the {kind} was not created")
            await self.service.call("POST", f"{path}/start", {"packaged_files": notebook.packaged_files})
        except NoAnswer:
            # The start may have gone through: the record stays, for the user to see or delete.
            raise
        except SchedulerError:
            await self._discard(path)
            raise

    async def _discard(self, path: str) -> None:
        try:
            await self.service.call("DELETE", path)
        except SchedulerError as e:
            self.log.warning("Could not delete %s after a failed start: %s", path, e)


class HubSizes(EnvironmentManager):
    """The job form's environment and sizes: one environment, the sizes the service offers the user."""

    def __init__(self):
        self.service = JobsService.from_environ()

    async def list_environments(self) -> list[RuntimeEnvironment]:
        try:
            sizes = await self.service.call("GET", "api/sizes")
        except SchedulerError as e:
            raise EnvironmentRetrievalError(str(e)) from e
        return [
            RuntimeEnvironment(
                name=ENVIRONMENT,
                label=ENVIRONMENT,
                description="An instance of its own, of the size you choose",
                file_extensions=["ipynb"],
                output_formats=list(OUTPUT_FORMATS),
                compute_types=[size["compute_type"] for size in sizes.get("sizes", [])],
                default_compute_type=sizes.get("default"),
                utc_only=False,
            )
        ]

    def manage_environments_command(self) -> str:
        return ""

    def output_formats_mapping(self) -> dict[str, str]:
        return dict(OUTPUT_FORMATS)


class Features(ExecutionManager):
    """What the hub's jobs service supports, for the scheduler's config route. It runs nothing here."""

    # jupyter-scheduler calls this as `cls.supported_features(cls)`: the extra argument is ignored.
    @classmethod
    def supported_features(cls, *_) -> dict[JobFeature, bool]:
        return dict(FEATURES)

    def execute(self):
        raise SchedulerError("Notebook jobs run on the hub's jobs service, not in this server.")


class HubJobFiles(JobFilesManager):
    """Nothing to download: a job's outputs are already in the user's S3 folder, mounted at ~/s3."""

    async def copy_from_staging(self, job_id: str, redownload: bool | None = False):
        return None
