"""A fake of the hub's jobs service on loopback (its routes, statuses and messages), and the `ec2hub`
connections that point at it, as Airflow reads them from the environment."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

# Airflow writes its home when imported: a folder of the tests', not ~/airflow.
os.environ["AIRFLOW_HOME"] = str(Path(tempfile.gettempdir()) / "ec2hub-airflow-tests")

PREFIX = "/services/jobs/api/"
TOKEN = "owner-token-for-tests"  # noqa: S105 (the fake service's, nothing else's)
SIZES = ("small", "medium")
MAX_TIMEOUT = 86400
ENDED = ("COMPLETED", "FAILED", "STOPPED")


@dataclass
class FakeJobsService:
    """The jobs service's job routes (and sizes). Each job follows `script`: every GET applies its next
    change (the last one stays), until the job has ended. `takes_input_path=False` is a service from
    before input_path; `hang` holds every GET until the test ends."""

    url: str = ""
    token: str = TOKEN
    script: list[dict[str, Any]] = field(default_factory=lambda: [{"status": "IN_PROGRESS"}])
    takes_input_path: bool = True
    hang: bool = False
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)

    def create(self, body: dict[str, Any]) -> tuple[int, dict]:
        self.bodies.append(body)
        size = body.get("compute_type") or SIZES[0]
        if size not in SIZES:
            names = ", ".join(SIZES)
            return 403, {"message": f"Size {size!r} is not open to your groups. Sizes you may use: {names}."}
        if body.get("timeout_seconds", 0) > MAX_TIMEOUT:
            longer = f"A timeout of {body['timeout_seconds']} s is longer than your groups allow"
            return 403, {"message": f"{longer} ({MAX_TIMEOUT} s)."}
        job_id = str(uuid.uuid4())
        self.jobs[job_id] = {
            "job_id": job_id,
            "name": body["name"],
            "input_filename": body["input_filename"],
            "parameters": body.get("parameters", {}),
            "status": "QUEUED" if self.takes_input_path else "CREATED",
            "status_message": None,
            "output_prefix": f"jobs/{job_id}/",
            "outputs": {},
            "timeout_seconds": body.get("timeout_seconds"),
            "script": list(self.script),
        }
        if self.takes_input_path:
            return 201, {"job_id": job_id, "input_path": body["input_path"]}
        return 201, {"job_id": job_id, "input_prefix": f"jobs/{job_id}/input/"}

    def get(self, job_id: str) -> tuple[int, dict]:
        if self.hang:
            self.released.wait(10)
        job = self.jobs.get(job_id)
        if job is None:
            return 404, {"message": f"No job {job_id}."}
        if job["status"] not in ENDED and job["script"]:
            job.update(job["script"].pop(0) if len(job["script"]) > 1 else job["script"][0])
        return 200, self.describe(job)

    def stop(self, job_id: str) -> tuple[int, dict]:
        job = self.jobs.get(job_id)
        if job is None:
            return 404, {"message": f"No job {job_id}."}
        self.stopped.append(job_id)
        if job["status"] not in ENDED:
            job.update(status="STOPPED", status_message="Stopped by its owner.")
        return 200, self.describe(job)

    def delete(self, job_id: str) -> tuple[int, dict]:
        self.deleted.append(job_id)
        return (204, {}) if self.jobs.pop(job_id, None) else (404, {"message": f"No job {job_id}."})

    @staticmethod
    def describe(job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if k != "script"}

    def answer(self, method: str, path: str, authorization: str | None, body: dict) -> tuple[int, dict]:
        if authorization != f"token {TOKEN}":
            return 403, {"message": "This token does not give access to the jobs service."}
        parts = path.removeprefix(PREFIX).split("/") if path.startswith(PREFIX) else []
        if method == "GET" and parts == ["sizes"]:
            return 200, {"sizes": [{"slug": size} for size in SIZES], "default": SIZES[0]}
        if method == "POST" and parts == ["jobs"]:
            return self.create(body)
        if len(parts) == 2 and parts[0] == "jobs" and method in ("GET", "DELETE"):
            return self.get(parts[1]) if method == "GET" else self.delete(parts[1])
        if method == "POST" and len(parts) == 3 and parts[0] == "jobs" and parts[2] == "stop":
            return self.stop(parts[1])
        return 404, {"message": "Not found."}


def handler_for(service: FakeJobsService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def respond(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            path = urlsplit(self.path).path
            status, answer = service.answer(self.command, path, self.headers.get("Authorization"), body)
            data = json.dumps(answer).encode() if status != 204 else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = respond

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def jobs_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeJobsService]:
    """The fake service, and the connections `ec2hub_default` (the owner's token) and `ec2hub_wrong`."""
    service = FakeJobsService()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(service))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    service.url = f"http://127.0.0.1:{server.server_address[1]}"
    extra = {
        "gateway_address": f"{service.url}/services/dask-gateway",
        "gateway_proxy_address": "gateway://127.0.0.1:1",
    }
    for name, token in (("EC2HUB_DEFAULT", TOKEN), ("EC2HUB_WRONG", "another-token")):
        connection = {"conn_type": "ec2hub", "host": service.url, "password": token, "extra": extra}
        monkeypatch.setenv(f"AIRFLOW_CONN_{name}", json.dumps(connection))
    yield service
    service.released.set()
    server.shutdown()
    server.server_close()
    thread.join(5)
