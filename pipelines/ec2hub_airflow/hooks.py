"""The `ec2hub` connection's hook: a user's notebook jobs on the hub's jobs service, over HTTP.

The connection holds the hub's URL (host) and a hub API token (password) of the pipeline's owner, with
access to the jobs service (and to the dask-gateway, for ec2hub_airflow.gateway). Airflow keeps it in its
connection store, so no DAG holds a token, and every job runs as that owner: their sizes, quotas, budget,
role and S3 folder. Every request is bounded by `request_timeout`; a refusal raises Ec2hubError with the
service's own message, which is written for people.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException

from ec2hub_airflow import CONNECTION_TYPE

JOBS_API = "services/jobs/api/"
REQUEST_TIMEOUT = 30.0  # seconds, for each request
ENDED = ("COMPLETED", "FAILED", "STOPPED")
# Where a user's S3 folder is mounted in their JupyterLab: the outputs' link goes through it.
LAB_FOLDER = "hub/user-redirect/lab/tree/s3/"
OLD_SERVICE = (
    "This hub's jobs service does not run notebooks that are already in the owner's S3 folder "
    "(input_path): update the hub to a version that does."
)


class Ec2hubError(AirflowException):
    """The hub refused (`status` is its HTTP status) or did not answer (`status` is None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def final(self) -> bool:
        """Whether asking again cannot help: a refusal, not a hub that is away or overloaded."""
        return self.status is not None and 400 <= self.status < 500 and self.status not in (408, 429)


def hub_url(conn: Any) -> str:
    """The hub's URL from the connection: its host, https:// unless it names a scheme, and its port."""
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        raise Ec2hubError(f"The connection {conn.conn_id!r} has no hub URL (its host).")
    if "://" not in host:
        host = f"https://{host}"
    parts = urlsplit(host)
    if conn.port and parts.port is None:
        parts = parts._replace(netloc=f"{parts.netloc}:{conn.port}")
    return parts.geturl()


def parameter_texts(parameters: Mapping[str, Any] | None) -> dict[str, str]:
    """The notebook's parameters as the jobs service takes them: texts of Python literals, which the job
    reads back with their type (5 stays a number, "5" a text). Anything else is refused here."""
    texts = {}
    for name, value in (parameters or {}).items():
        text = repr(value)
        try:
            same = ast.literal_eval(text) == value
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            same = False
        if not same:
            raise Ec2hubError(
                f"Parameter {name!r}: {text[:80]} is not a Python literal (a number, text, True/False, "
                "None, or a list or dict of them); pass its text instead."
            )
        texts[name] = text
    return texts


def check_notebook(path: str) -> str:
    """A notebook's path in the owner's S3 folder, as the user sees it under ~/s3 (no s3:// URL)."""
    path = path.strip().removeprefix("~/s3/")
    parts = path.split("/")
    if not path.endswith(".ipynb") or path.startswith("/") or "://" in path or ".." in parts or "" in parts:
        raise Ec2hubError(
            f"{path[:120]!r} is not a notebook's path in your S3 folder: give it as JupyterLab shows it "
            "under ~/s3, e.g. 'pipelines/02-etl.ipynb'."
        )
    return path


def job_outputs(url: str, job: Mapping[str, Any]) -> dict[str, Any]:
    """What a task returns (its XCom) and its errors name: the job, its status, where its outputs are
    (paths in the owner's S3 folder) and a link that opens that folder in the owner's JupyterLab."""
    prefix = job.get("output_prefix") or f"jobs/{job['job_id']}/"
    return {
        "job_id": job["job_id"],
        "status": job.get("status"),
        "output_prefix": prefix,
        "outputs": {kind: prefix + name for kind, name in (job.get("outputs") or {}).items()},
        "output_url": f"{url}/{LAB_FOLDER}{prefix}",
    }


def answer(response: httpx.Response) -> dict:
    """The service's JSON answer, or Ec2hubError with its message."""
    code = response.status_code
    if response.is_success:
        try:
            return response.json() if response.content else {}
        except ValueError:
            raise Ec2hubError(f"The hub's jobs service answered HTTP {code} with no JSON.", code) from None
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        message = None
    if not isinstance(message, str) or not message:
        message = f"The hub answered HTTP {code} {response.reason_phrase}"
    request = response.request
    raise Ec2hubError(f"{message} (HTTP {code}, {request.method} {request.url})", code)


def no_answer(url: str, error: httpx.HTTPError) -> Ec2hubError:
    kind = "in time" if isinstance(error, httpx.TimeoutException) else f"({type(error).__name__}: {error})"
    return Ec2hubError(f"The hub at {url} did not answer {kind}.")


def job_path(job_id: str, *rest: str) -> str:
    return "/".join(["jobs", quote(job_id, safe=""), *rest])


class Ec2hubHook(BaseHook):
    """The jobs service of the hub in the `ec2hub` connection, as the owner of its token."""

    conn_name_attr = "ec2hub_conn_id"
    default_conn_name = "ec2hub_default"
    conn_type = CONNECTION_TYPE
    hook_name = "ec2hub"

    def __init__(
        self,
        ec2hub_conn_id: str = default_conn_name,
        *,
        request_timeout: float = REQUEST_TIMEOUT,
        connection: Any = None,
    ) -> None:
        super().__init__()
        self.ec2hub_conn_id = ec2hub_conn_id
        self.request_timeout = request_timeout
        self._connection = connection

    @classmethod
    async def aconnect(cls, ec2hub_conn_id: str, **kwargs: Any) -> Ec2hubHook:
        """The hook, its connection read without blocking the event loop (for triggers)."""
        return cls(ec2hub_conn_id, connection=await cls.aget_connection(ec2hub_conn_id), **kwargs)

    @property
    def connection(self) -> Any:
        if self._connection is None:
            self._connection = self.get_connection(self.ec2hub_conn_id)
        return self._connection

    @property
    def url(self) -> str:
        return hub_url(self.connection)

    @property
    def token(self) -> str:
        if not self.connection.password:
            raise Ec2hubError(f"The connection {self.ec2hub_conn_id!r} has no hub API token (its password).")
        return self.connection.password

    def connection_field(self, name: str) -> str | None:
        """A field of the connection's extra, as the UI's form or a JSON connection writes it."""
        extra = self.connection.extra_dejson
        return extra.get(name) or extra.get(f"extra__{CONNECTION_TYPE}__{name}") or None

    def _client_settings(self) -> dict[str, Any]:
        return {
            "base_url": f"{self.url}/{JOBS_API}",
            "headers": {"Authorization": f"token {self.token}"},
            "timeout": self.request_timeout,
        }

    def get_conn(self) -> httpx.Client:
        return httpx.Client(**self._client_settings())

    def async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(**self._client_settings())

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        with self.get_conn() as client:
            try:
                response = client.request(method, path, json=body)
            except httpx.HTTPError as e:
                raise no_answer(self.url, e) from e
        return answer(response)

    async def acall(self, client: httpx.AsyncClient, method: str, path: str) -> dict:
        try:
            response = await client.request(method, path)
        except httpx.HTTPError as e:
            raise no_answer(self.url, e) from e
        return answer(response)

    def test_connection(self) -> tuple[bool, str]:
        """The connection form's Test button: the sizes the token's owner may give their jobs."""
        try:
            sizes = [size["slug"] for size in self.call("GET", "sizes").get("sizes", [])]
        except Ec2hubError as e:
            return False, str(e)
        return True, f"The jobs service of {self.url} answered: sizes {', '.join(sizes) or '(none)'}."

    # -- jobs --------------------------------------------------------------------------------------

    def create_job(
        self,
        notebook: str,
        *,
        name: str,
        size: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        timeout: int,
        output_formats: Iterable[str] = ("ipynb",),
        spot: bool = False,
        with_folder: bool = False,
    ) -> dict:
        """Queue a run of `notebook`, a path in the owner's S3 folder; returns {"job_id": ...}.

        The job's instance reads the notebook from there with the owner's role, so nothing is staged
        from here (an Airflow worker holds no credential that reaches users' data). Airflow retries the
        task, so the job has no retries of its own.
        """
        path = check_notebook(notebook)
        body = {
            "name": name[:255],
            "input_path": path,
            "input_filename": path.rsplit("/", 1)[-1],
            "compute_type": size or "",
            "parameters": parameter_texts(parameters),
            "timeout_seconds": timeout,
            "max_retries": 0,
            "output_formats": list(output_formats),
            "spot": spot,
            # The notebook's whole folder goes with it (modules and files it reads beside it).
            "package_input_folder": with_folder,
        }
        created = self.call("POST", "jobs", body)
        if "input_path" not in created:
            # A service that ignored input_path made a job waiting for staged input: it goes.
            try:
                self.call("DELETE", job_path(created["job_id"]))
            except Ec2hubError as e:
                self.log.warning("Job %s, never to start, stays in the job list: %s", created["job_id"], e)
            raise Ec2hubError(OLD_SERVICE)
        return created

    def get_job(self, job_id: str) -> dict:
        return self.call("GET", job_path(job_id))

    def stop_job(self, job_id: str) -> dict:
        """Stop the job (a queued one never starts); returns it as it is then (it may have ended)."""
        return self.call("POST", job_path(job_id, "stop"))

    async def aget_job(self, client: httpx.AsyncClient, job_id: str) -> dict:
        return await self.acall(client, "GET", job_path(job_id))

    async def astop_job(self, client: httpx.AsyncClient, job_id: str) -> dict:
        return await self.acall(client, "POST", job_path(job_id, "stop"))
