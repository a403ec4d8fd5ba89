"""Fault switches of the local cloud: failed and slow boots, dying instances, reclaimed spot, AWS errors.

All switches are off unless the control API is turned on (`--faults-port` or EC2HUB_FAULTS_PORT),
and that API listens on loopback only. It is what the fault-injection tests use to make the
cloud misbehave the way EC2 does, so that the hub's handling of each failure can be shown.

    POST   /boot/fail        {"count": 1}                     the next N boots fail (EC2 launch error)
    POST   /boot/delay       {"seconds": 20}                  instances stay pending this long (0: off)
    POST   /instances/<id>/kill                               end every process of a running instance
    POST   /instances/<id>/terminate                          terminate it as someone outside the hub
    POST   /instances/<id>/reclaim                            AWS takes a spot instance back (stops it)
    POST   /api-errors       {"action": "RunInstances", "code": "RequestLimitExceeded", "count": 3,
                              "subnet": "subnet-..." (optional)}
    GET    /                                                  the switches as they are now
    DELETE /                                                  every switch off
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from moto.ec2.models.instances import StateReason

from localcloud.backends import find_instance

log = logging.getLogger("localcloud.faults")

# The errors the switches can make EC2 answer with, and the HTTP status EC2 uses for each.
API_ERRORS = {
    "InsufficientInstanceCapacity": (
        500,
        "We currently do not have sufficient capacity in the Availability Zone you requested.",
    ),
    "RequestLimitExceeded": (503, "Request limit exceeded."),
    "UnauthorizedOperation": (403, "You are not authorized to perform this operation."),
    "InternalError": (500, "An internal error has occurred."),
}

# The longest a slow boot may be made to take: a switch left on must not hang a test run.
MAX_BOOT_DELAY = 600.0


class FaultError(ValueError):
    """A switch was asked for something it cannot do; the message says what."""


@dataclass
class ApiError:
    action: str
    code: str
    remaining: int
    subnet: str = ""


class Faults:
    """The switches. Thread-safe: the endpoint, the runtime and the control API share one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.boot_failures = 0
        self.boot_delay = 0.0
        self.api_errors: list[ApiError] = []
        self.tried: dict[str, int] = {}

    def reset(self) -> None:
        with self._lock:
            self.boot_failures = 0
            self.boot_delay = 0.0
            self.api_errors = []

    def describe(self) -> dict:
        with self._lock:
            return {
                "boot_failures": self.boot_failures,
                "boot_delay": self.boot_delay,
                "api_errors": [e.__dict__.copy() for e in self.api_errors],
                "tried": dict(self.tried),
            }

    def _count(self, name: str) -> None:
        self.tried[name] = self.tried.get(name, 0) + 1

    def record(self, name: str) -> None:
        """Count a fault tried from outside the switches (an instance killed, terminated, reclaimed)."""
        with self._lock:
            self._count(name)

    # -- boots ------------------------------------------------------------------------------------

    def fail_boots(self, count: int) -> None:
        if count < 0:
            raise FaultError("count must be 0 or more")
        with self._lock:
            self.boot_failures = count
            self._count("boot-fail")

    def delay_boots(self, seconds: float) -> None:
        if not 0 <= seconds <= MAX_BOOT_DELAY:
            raise FaultError(f"seconds must be between 0 and {MAX_BOOT_DELAY:.0f}")
        with self._lock:
            self.boot_delay = float(seconds)
            self._count("boot-delay")

    def take_boot_failure(self) -> bool:
        """True (once per armed failure) when this boot is to fail."""
        with self._lock:
            if self.boot_failures <= 0:
                return False
            self.boot_failures -= 1
            return True

    # -- API errors -------------------------------------------------------------------------------

    def add_api_error(self, action: str, code: str, count: int, subnet: str = "") -> None:
        if code not in API_ERRORS:
            raise FaultError(f"code must be one of {', '.join(sorted(API_ERRORS))}")
        if not action or count < 1:
            raise FaultError("an action and a count of 1 or more are needed")
        with self._lock:
            self.api_errors.append(ApiError(action, code, count, subnet))
            self._count(f"api-error:{code}")

    def api_error_for(self, action: str, params: dict[str, str]) -> str:
        """The error code this call is to fail with ("" for none); each use counts down one call."""
        with self._lock:
            for error in self.api_errors:
                if error.action != action or (error.subnet and params.get("SubnetId") != error.subnet):
                    continue
                error.remaining -= 1
                if error.remaining <= 0:
                    self.api_errors.remove(error)
                return error.code
        return ""


def request_params(environ: dict) -> dict[str, str]:
    """The form parameters of an EC2 (query protocol) request; the front has buffered its body."""
    stream = environ.get("wsgi.input")
    body = b""
    if stream is not None and hasattr(stream, "getvalue"):
        body = stream.getvalue()
    pairs = parse_qs(body.decode("utf-8", "replace")) if body else {}
    pairs.update(parse_qs(environ.get("QUERY_STRING", "")))
    return {k: v[0] for k, v in pairs.items()}


def error_response(code: str) -> tuple[int, bytes]:
    """EC2's XML error document for `code`, with EC2's HTTP status."""
    status, message = API_ERRORS[code]
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"</Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>"
    )
    return status, body.encode()


# -- what happens to an instance from outside the hub ---------------------------------------------


def terminate_from_outside(instance_id: str, gate) -> None:
    """Someone with console access terminates the instance: its disk goes with it."""
    instance = find_instance(instance_id)
    with gate.request():
        instance.ec2_backend.terminate_instances([instance_id])


def reclaim_spot(instance_id: str, gate) -> None:
    """AWS interrupts a spot instance launched to stop on interruption: stopped, disk kept."""
    instance = find_instance(instance_id)
    if instance.lifecycle != "spot":
        raise FaultError(f"{instance_id} is not a spot instance")
    with gate.request():
        instance.ec2_backend.stop_instances([instance_id])
        instance.state_reason = StateReason(
            "Server.SpotInstanceShutdown: Spot instance shutdown", "Server.SpotInstanceShutdown"
        )
        instance._reason = f"Spot interruption ({time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())})"


def fail_launch(instance, first_boot: bool) -> None:
    """EC2 could not boot the instance: a new one ends terminated, an existing one stopped (disk kept)."""
    reason = StateReason("Server.InternalError: Internal error on launch", "Server.InternalError")
    if first_boot:
        instance.ec2_backend.terminate_instances([instance.id])
    else:
        instance.ec2_backend.stop_instances([instance.id])
    instance.state_reason = reason
    instance._reason = "Internal error on launch"


# -- the control API ------------------------------------------------------------------------------


class _ControlHandler(BaseHTTPRequestHandler):
    server: FaultControl

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        log.info("fault control: " + format, *args)

    def _reply(self, status: int, document: dict) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _allowed(self) -> bool:
        if ipaddress.ip_address(self.client_address[0]).is_loopback:
            return True
        self._reply(403, {"error": "the fault switches answer loopback only"})
        return False

    def do_GET(self) -> None:
        if self._allowed():
            self._reply(200, self.server.faults.describe())

    def do_DELETE(self) -> None:
        if self._allowed():
            self.server.faults.reset()
            self._reply(200, self.server.faults.describe())

    def do_POST(self) -> None:
        if not self._allowed():
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            self.server.act(self.path.rstrip("/"), body)
        except (FaultError, LookupError, ValueError, TypeError) as e:
            self._reply(400, {"error": str(e)})
            return
        self._reply(200, self.server.faults.describe())


class FaultControl(ThreadingHTTPServer):
    """The control API: loopback only, one thread per request."""

    daemon_threads = True

    def __init__(self, port: int, faults: Faults, runtime, gate) -> None:
        super().__init__(("127.0.0.1", port), _ControlHandler)
        self.faults = faults
        self.runtime = runtime
        self.gate = gate
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def act(self, path: str, body: dict) -> None:
        parts = path.strip("/").split("/")
        if parts == ["boot", "fail"]:
            self.faults.fail_boots(int(body.get("count", 1)))
        elif parts == ["boot", "delay"]:
            self.faults.delay_boots(float(body.get("seconds", 0)))
        elif parts == ["api-errors"]:
            self.faults.add_api_error(
                str(body.get("action", "")),
                str(body.get("code", "")),
                int(body.get("count", 1)),
                str(body.get("subnet", "")),
            )
        elif len(parts) == 3 and parts[0] == "instances":
            instance_id, what = parts[1], parts[2]
            self.faults.record(what)
            if what == "kill":
                self.runtime.kill_processes(instance_id)
            elif what == "terminate":
                terminate_from_outside(instance_id, self.gate)
            elif what == "reclaim":
                reclaim_spot(instance_id, self.gate)
            else:
                raise FaultError(f"unknown instance fault {what!r}: kill, terminate or reclaim")
            self.runtime.wake()
        else:
            raise FaultError(f"unknown switch {path!r}")

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="fault-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
