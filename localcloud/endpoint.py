"""The local cloud's AWS endpoint: moto over HTTP behind a front that audits requests and keeps state."""

from __future__ import annotations

import io
import json
import pickle
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote

from moto.backends import get_backend
from moto.core.base_backend import BackendDict
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from localcloud.faults import Faults, error_response, request_params

# The services whose state a restart of the local cloud must keep. SSM holds only the
# tokens of running servers, and no server survives a restart, so it starts empty.
PERSISTED_SERVICES = ("ec2", "iam", "s3", "sts")

_CREDENTIAL = re.compile(r"Credential=([A-Z0-9]+)/[^/]+/[^/]+/([a-z0-9-]+)/")
_READ_ONLY = re.compile(r"^(Describe|Get|List|Head)")


class Gate:
    """Requests pass together; a snapshot waits for them and holds new ones back while it runs."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._closed = False

    @contextmanager
    def request(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._closed)
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._closed)
            self._closed = True
            self._cond.wait_for(lambda: self._active == 0)
        try:
            yield
        finally:
            with self._cond:
                self._closed = False
                self._cond.notify_all()


def describe_request(environ: dict) -> tuple[str, str, str]:
    """(access key id, service, action) of a signed AWS request, reading a form body if needed."""
    match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    key, service = (match.group(1), match.group(2)) if match else ("", "")
    action = ""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        action = target.rsplit(".", 1)[-1]
    elif environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        action = parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
    if not action:
        query_action = parse_qs(environ.get("QUERY_STRING", "")).get("Action", [""])[0]
        action = query_action or f"{environ.get('REQUEST_METHOD', '')} {environ.get('PATH_INFO', '')}"
    return key, service, action


def canonical_query(query: str) -> str:
    """The query string encoded as SigV4 signs it.

    s3fs-fuse sends "/" unencoded in query values (prefix=users/alice/) but signs it encoded;
    moto checks the signature against the raw query, so the request would fail. S3 itself
    accepts both; here the query is re-encoded before moto sees it.
    """
    if not query:
        return query
    parts = []
    for pair in query.split("&"):
        name, sep, value = pair.partition("=")
        parts.append(quote(unquote(name), safe="-_.~") + sep + quote(unquote(value), safe="-_.~"))
    return "&".join(parts)


class Front:
    """WSGI front of moto: every request passes the gate and lands in the audit log."""

    def __init__(self, app, audit_path: Path, gate: Gate, faults: Faults | None = None) -> None:
        self.app = app
        self.gate = gate
        self._iam_writes = threading.Lock()
        self.faults = faults or Faults()
        self.audit_path = audit_path
        self._audit_lock = threading.Lock()
        self.changed = threading.Event()

    def __call__(self, environ: dict, start_response):
        key, service, action = describe_request(environ)
        if service == "s3":
            environ["QUERY_STRING"] = canonical_query(environ.get("QUERY_STRING", ""))
        injected = self.faults.api_error_for(action, request_params(environ)) if service == "ec2" else ""
        if injected:
            return self._refuse(injected, key, service, action, start_response)
        statuses: list[str] = []

        def recording_start_response(status, headers, exc_info=None):
            statuses.append(status)
            return start_response(status, headers, exc_info)

        # moto's IAM is not safe for concurrent changes (50 starts at once once answered a 500); IAM
        # applies each change atomically, so they go through one at a time here.
        serial = self._iam_writes if service == "iam" and not _READ_ONLY.match(action) else nullcontext()
        with self.gate.request(), serial:
            result = self.app(environ, recording_start_response)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close:
                    close()
        status = int(statuses[0].split()[0]) if statuses else 0
        method = environ.get("REQUEST_METHOD", "")
        if method not in ("GET", "HEAD") and not _READ_ONLY.match(action):
            self.changed.set()
        self._audit(key, service, action, status)
        return [body]

    def _audit(self, key: str, service: str, action: str, status: int, **extra) -> None:
        entry = {"t": round(time.time(), 3), "key": key, "service": service, "action": action}
        entry["status"] = status
        entry.update(extra)
        with self._audit_lock, self.audit_path.open("a") as f:
            f.write(json.dumps(entry) + "\n")

    def _refuse(self, code: str, key: str, service: str, action: str, start_response):
        """Answer as EC2 does with `code`, without reaching moto (a fault switch asked for it)."""
        status, body = error_response(code)
        start_response(f"{status} Error", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
        self._audit(key, service, action, status, fault=code)
        return [body]


class QuietRequestHandler(MotoRequestHandler):
    """Requests are in the audit log; the console keeps only what needs attention."""

    def log_request(self, code="-", size="-") -> None:
        pass


class Endpoint:
    """moto's HTTP server on loopback, with snapshots of its state on disk."""

    def __init__(self, host: str, port: int, state_dir: Path, faults: Faults | None = None) -> None:
        self.host = host
        self.port = port
        self.state_dir = state_dir
        self.snapshot_path = state_dir / "aws-state.pickle"
        self.gate = Gate()
        self.front = Front(
            DomainDispatcherApplication(create_backend_app), state_dir / "audit.jsonl", self.gate, faults
        )
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._server = make_server(
            self.host, self.port, self.front, threaded=True, request_handler=QuietRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="aws-endpoint")
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def restore(self) -> bool:
        """Load the last snapshot into moto's backends; call before anything touches them."""
        if not self.snapshot_path.exists():
            return False
        # The snapshot is this local cloud's own file (mode 0600) in its own state folder.
        state = pickle.loads(self.snapshot_path.read_bytes())  # noqa: S301
        for service, accounts in state.items():
            backends = get_backend(service)
            for account_id, account_backend in accounts.items():
                dict.__setitem__(backends, account_id, account_backend)
            if backends not in BackendDict._instances:
                BackendDict._instances.append(backends)
        return True

    def snapshot(self) -> None:
        """Write moto's state to disk atomically, with no request half done."""
        with self.gate.exclusive():
            self.front.changed.clear()
            blob = pickle.dumps(
                {service: dict(get_backend(service)) for service in PERSISTED_SERVICES},
                protocol=pickle.HIGHEST_PROTOCOL,
            )
        tmp = self.snapshot_path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_bytes(blob)
        tmp.replace(self.snapshot_path)
