"""Test helpers for the real stack: free ports, a signed-in hub client, bounded waits."""

from __future__ import annotations

import contextlib
import html
import json
import os
import random
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlparse

import boto3
import requests

from localcloud.up import Stack, StartError

# Ports for the stacks' listeners come from below the kernel's ephemeral range (32768-60999 here):
# a port picked from that range can be taken by an outgoing connection before the stack binds it.
LISTEN_PORTS = (20000, 32000)


def worker_ports(worker: str, workers: int) -> tuple[int, int]:
    """The part of LISTEN_PORTS for one of the run's pytest-xdist workers ("gw0", "gw1", ...; "" when
    the run has no workers), so that two workers never hand out the same port."""
    low, high = LISTEN_PORTS
    if not worker:
        return low, high
    index, share = int(worker.removeprefix("gw")), (high - low) // workers
    return low + index * share, low + (index + 1) * share


_PORTS = worker_ports(
    os.environ.get("PYTEST_XDIST_WORKER", ""), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
)
_GIVEN_PORTS: set[int] = set()


def listen_port() -> int:
    """A port for a listener: free now, outside the range outgoing connections draw from, in this
    worker's part of it, and never given before in this test run (a stack asks for ten before it
    binds any of them)."""
    if len(_GIVEN_PORTS) >= _PORTS[1] - _PORTS[0]:
        raise RuntimeError(f"every port of {_PORTS} was handed out in this run")
    while True:
        port = random.randrange(*_PORTS)
        if port in _GIVEN_PORTS:
            continue
        _GIVEN_PORTS.add(port)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def stack_env(state_dir: Path, subnet_base: int) -> dict[str, str]:
    """Environment of a stack of its own: own ports, own state, own subnets (so its instance
    addresses never meet those of a `make up` running beside the tests)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EC2HUB_", "AWS_"))}
    env.update(
        EC2HUB_STATE_DIR=str(state_dir),
        EC2HUB_PORT=str(listen_port()),
        EC2HUB_HUB_PORT=str(listen_port()),
        EC2HUB_PROXY_API_PORT=str(listen_port()),
        EC2HUB_INSTANCES_PORT=str(listen_port()),
        EC2HUB_GATEWAY_PORT=str(listen_port()),
        EC2HUB_GATEWAY_TCP_PORT=str(listen_port()),
        EC2HUB_GATEWAY_API_PORT=str(listen_port()),
        EC2HUB_DASHBOARDS_PORT=str(listen_port()),
        EC2HUB_JOBS_PORT=str(listen_port()),
        EC2HUB_AWS_PORT=str(listen_port()),
        EC2HUB_LOCAL_SUBNETS=f"127.0.{subnet_base}.0/24,127.0.{subnet_base + 1}.0/24",
    )
    return env


@contextlib.contextmanager
def running_stack(tmp_path_factory, subnet_base: int, **settings: str) -> Iterator[Stack]:
    """A stack of its own for one test module (ports, state, subnets; `settings` on top), its
    output in `stack.log` of its state folder; stopped at the end whatever happened."""
    state = tmp_path_factory.mktemp("state")
    env = {**stack_env(state, subnet_base), **settings}
    with (state / "stack.log").open("w") as log:
        stack = Stack(env, output=log)
        try:
            stack.start()
        except StartError as error:
            # The log's end says why (a port taken, a traceback): in the report, not only on disk.
            log.flush()
            tail = (state / "stack.log").read_text(errors="replace").splitlines()[-60:]
            raise StartError(f"{error}; the end of {state / 'stack.log'}:\n" + "\n".join(tail)) from error
        try:
            yield stack
        finally:
            stack.stop()


def wait_for(check, timeout: float, what: str):
    """Poll `check` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def is_localhost(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


@contextlib.contextmanager
def localhost_subdomains() -> Iterator[None]:
    """Names under .localhost resolve to loopback in this process, as browsers resolve them (RFC 6761):
    a stack with EC2HUB_SUBDOMAIN_HOST=http://hub.localhost:PORT gives every user a host of its own."""
    resolve = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        return resolve("127.0.0.1" if name and is_localhost(name) else host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = resolve


class BrowserCookieJar(requests.cookies.RequestsCookieJar):
    """Secure cookies (the hub's `__Host-` ones with subdomains) go back to http://*.localhost, as
    browsers send them there: loopback counts as a secure context."""

    def set_cookie(self, cookie, *args, **kwargs):
        if cookie.secure and is_localhost(cookie.domain.lstrip(".")):
            cookie.secure = False
        return super().set_cookie(cookie, *args, **kwargs)


def user_origin(stack: Stack, user: str) -> str:
    """Where `user`'s server answers: its own host with EC2HUB_SUBDOMAIN_HOST, else the hub's."""
    host = stack.settings.subdomain_host
    if not host:
        return stack.settings.url
    parsed = urlparse(host)
    return f"{parsed.scheme}://{user}.{parsed.netloc}"


# Users of the tests sign up with this password; an admin approves them (the default sign-in method).
USER_PASSWORD = "correct horse battery staple 42"


class HubClient:
    """A browser-like session: signs in through the login form, calls the REST API with its cookie."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.cookies = BrowserCookieJar()

    def login(self, username: str, password: str) -> requests.Response:
        self.session.get(f"{self.base_url}/hub/login", timeout=10)
        return self.session.post(
            f"{self.base_url}/hub/login",
            data={"username": username, "password": password, "_xsrf": self.session.cookies["_xsrf"]},
            allow_redirects=False,
            timeout=30,
        )

    def sign_up(self, username: str, password: str) -> requests.Response:
        self.session.get(f"{self.base_url}/hub/signup", timeout=10)
        return self.session.post(
            f"{self.base_url}/hub/signup",
            data={
                "username": username,
                "signup_password": password,
                "signup_password_confirmation": password,
                "_xsrf": self.session.cookies["_xsrf"],
            },
            timeout=30,
        )

    def approve(self, username: str) -> requests.Response:
        """As an admin: press Authorize on the user's row of the authorization page (a POST carrying
        the page's XSRF token); returns the page shown afterwards."""
        page = self.session.get(f"{self.base_url}/hub/authorize", params={"user": username}, timeout=30)
        assert page.status_code == 200, page.text
        row = page.text[page.text.index(f'<tr id="{html.escape(username)}"') :]
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', row).group(1)
        response = self.session.post(
            f"{self.base_url}/hub/authorize/{quote(username, safe='')}",
            data={"_xsrf": html.unescape(xsrf), "action": "approve"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"X-XSRFToken": self.session.cookies.get("_xsrf", "")}
        return self.session.request(
            method, f"{self.base_url}/hub/api{path}", headers=headers, timeout=30, **kwargs
        )

    def server(self, user: str, name: str = "") -> dict | None:
        response = self.api("GET", f"/users/{user}")
        response.raise_for_status()
        return response.json()["servers"].get(name)

    def start(self, user: str) -> None:
        response = self.api("POST", f"/users/{user}/server")
        assert response.status_code in (201, 202), response.text

    def wait_ready(self, user: str, timeout: float = 90) -> dict:
        def ready():
            server = self.server(user)
            return server if server and server["ready"] else None

        return wait_for(ready, timeout, f"{user}'s server to be ready")

    def stop(self, user: str, timeout: float = 90) -> None:
        response = self.api("DELETE", f"/users/{user}/server")
        assert response.status_code in (202, 204), response.text
        wait_for(lambda: self.server(user) is None, timeout, f"{user}'s server to stop")

    def token(self, user: str) -> str:
        response = self.api("POST", f"/users/{user}/tokens", json={"note": "e2e", "expires_in": 3600})
        assert response.status_code == 201, response.text
        return response.json()["token"]

    def user_api(self, user: str, token: str, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(
            method,
            f"{self.base_url}/user/{user}/api{path}",
            headers={"Authorization": f"token {token}"},
            timeout=30,
            **kwargs,
        )


def admin_client(stack: Stack) -> HubClient:
    client = HubClient(stack.settings.public_url)
    response = client.login(stack.settings.admin_user, stack.settings.admin_password)
    assert response.status_code == 302, "the admin from the settings signs in"
    return client


def client_at(stack: Stack, address: str) -> HubClient:
    """A client at an address of its own: the proxy, on loopback like the tests, passes on the
    X-Forwarded-For a loopback client sends, and the hub counts failed sign-ins against it."""
    client = HubClient(stack.settings.url)
    client.session.headers["X-Forwarded-For"] = address
    return client


def approved_user(stack: Stack, username: str, password: str = USER_PASSWORD) -> HubClient:
    """A person who signed up, was approved by the admin, and is signed in (an existing one signs in).

    Signing up first, rather than trying to sign in, keeps failed sign-ins (which the hub throttles
    per address: every test signs in from loopback) for the tests about them.
    """
    client = HubClient(stack.settings.public_url)
    if "already in use" in client.sign_up(username, password).text:
        response = client.login(username, password)
        if response.status_code == 302:
            return client
    admin_client(stack).approve(username)
    response = client.login(username, password)
    assert response.status_code == 302, f"{username} signs in once approved"
    return client


def aws_client(stack: Stack, service: str, profile: str = "admin"):
    keys = {}
    section = None
    for line in Path(stack.outputs["credentials_file"]).read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == profile and "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            keys[key] = value
    return boto3.client(
        service,
        region_name=stack.outputs["aws_region"],
        endpoint_url=stack.outputs["aws_endpoint_url"],
        aws_access_key_id=keys["aws_access_key_id"],
        aws_secret_access_key=keys["aws_secret_access_key"],
    )


def instances_of(ec2, user: str) -> list[dict]:
    response = ec2.describe_instances(Filters=[{"Name": "tag:ec2hub:user", "Values": [user]}])
    return [i for r in response["Reservations"] for i in r["Instances"] if i["State"]["Name"] != "terminated"]


def processes_under(path: Path) -> list[int]:
    """PIDs of processes whose working directory is inside `path` (an instance's disk)."""
    found = []
    root = str(path.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + "/"):
            found.append(int(entry.name))
    return found


def audit_entries(stack: Stack) -> list[dict]:
    path = stack.cloud_dir / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]
