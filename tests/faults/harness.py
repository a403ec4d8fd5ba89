"""What every fault-injection test uses: the cloud's fault switches and the checks run after each fault."""

from __future__ import annotations

import contextlib
import html
import json
from dataclasses import dataclass, field

import requests

from localcloud.up import Stack
from tests.e2e.stack import HubClient, admin_client, aws_client, listen_port, running_stack, wait_for

# What the whole run tried and found; printed at the end of the session (see tests/conftest.py).
LEDGER = {"faults tried": 0, "instances leaked": 0, "homes lost": 0}
BILLED = ("pending", "running")


def fault_settings(**settings: str) -> dict[str, str]:
    """The fault switches on and the hub's timings shortened for tests (`settings` on top)."""
    return {
        "EC2HUB_FAULTS_PORT": str(listen_port()),
        # Room for botocore's backoff (up to ~30 s over six tries) and a boot.
        "EC2HUB_START_TIMEOUT": "60",
        "EC2HUB_HTTP_TIMEOUT": "60",
        "EC2HUB_POLL_INTERVAL": "2",
        "EC2HUB_ORPHAN_GRACE": "4",
        "EC2HUB_RECONCILE_EVERY": "2",
        "EC2HUB_IDLE_TIMEOUT": "0",
        **settings,
    }


@contextlib.contextmanager
def running_fault_stack(tmp_path_factory, subnet_base: int, **settings: str):
    """A stack of its own with the fault switches on, for one test module."""
    with running_stack(tmp_path_factory, subnet_base, **fault_settings(**settings)) as stack:
        yield stack


class Switches:
    """The local cloud's fault control API."""

    def __init__(self, stack: Stack) -> None:
        self.url = (stack.cloud_dir / "faults-url").read_text().strip()

    def set(self, path: str, **body) -> dict:
        response = requests.post(f"{self.url}/{path.lstrip('/')}", json=body, timeout=30)
        assert response.status_code == 200, response.text
        LEDGER["faults tried"] += 1
        return response.json()

    def reset(self) -> None:
        requests.delete(self.url, timeout=30).raise_for_status()


def billed_orphans(stack: Stack) -> list[str]:
    """Instances EC2 bills (pending, running) whose server the hub does not consider active."""
    ec2 = aws_client(stack, "ec2")
    filters = [
        {"Name": "tag:ec2hub:hub", "Values": [stack.outputs["hub_id"]]},
        {"Name": "instance-state-name", "Values": list(BILLED)},
    ]
    instances = [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]
    users = admin_client(stack).api("GET", "/users?include_stopped_servers=1").json()
    active = {
        (u["name"], name)
        for u in users
        for name, server in (u.get("servers") or {}).items()
        if not server.get("stopped")
    }
    found = []
    for instance in instances:
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        server = "" if tags.get("ec2hub:server") == "/" else tags.get("ec2hub:server", "")
        if (tags.get("ec2hub:user"), server) not in active:
            found.append(instance["InstanceId"])
    return found


def check_nothing_leaked(stack: Stack, timeout: float = 45) -> None:
    """After a fault settles, no instance runs for nobody; a leak is counted, then fails the test."""
    try:
        wait_for(lambda: not billed_orphans(stack), timeout, "no billed instance without its server")
    except AssertionError:
        leaked = billed_orphans(stack)
        LEDGER["instances leaked"] += len(leaked)
        raise AssertionError(f"leaked instances: {leaked}") from None


@dataclass
class Person:
    """A signed-in user with a token, a home file and the hub's view of their server."""

    stack: Stack
    name: str
    client: HubClient
    token: str = ""
    notes: dict[str, str] = field(default_factory=dict)

    def start(self, options: dict | None = None) -> requests.Response:
        return self.client.api("POST", f"/users/{self.name}/server", json=options or {})

    def start_and_wait(self, options: dict | None = None, timeout: float = 120) -> dict:
        response = self.start(options)
        assert response.status_code in (201, 202), response.text
        return self.client.wait_ready(self.name, timeout)

    def start_fails(self, options: dict | None = None, timeout: float = 120) -> str:
        """Start, wait for the hub to give up; returns what the user is told."""
        response = self.start(options)
        if response.status_code >= 400:
            return response.json().get("message", response.text)
        wait_for(lambda: self.client.server(self.name) is None, timeout, f"{self.name}'s start to fail")
        return self.told()

    def told(self) -> str:
        """The text of the page the hub shows for this user's server when it is not running."""
        page = self.client.session.get(f"{self.stack.settings.url}/hub/spawn-pending/{self.name}", timeout=30)
        return html.unescape(page.text)

    def wait_stopped_by_hub(self, timeout: float = 60) -> None:
        wait_for(
            lambda: self.client.server(self.name) is None, timeout, f"the hub to see {self.name} stopped"
        )

    def write_home(self, name: str, text: str) -> None:
        """A file in the home (~), written through the proxy as JupyterLab would."""
        if not self.token:
            self.token = self.client.token(self.name)
        body = {"type": "file", "format": "text", "content": text}
        response = self.client.user_api(self.name, self.token, "PUT", f"/contents/{name}", json=body)
        assert response.status_code in (200, 201), response.text
        self.notes[name] = text

    def check_home(self) -> None:
        """Every file written to the home is still there; a missing one counts as a lost home."""
        for name, text in self.notes.items():
            response = self.client.user_api(self.name, self.token, "GET", f"/contents/{name}")
            if response.status_code != 200 or response.json().get("content") != text:
                LEDGER["homes lost"] += 1
                raise AssertionError(
                    f"{self.name}'s ~/{name} is gone: {response.status_code} {response.text[:200]}"
                )

    def forget_home(self) -> None:
        """The instance was terminated: its disk is gone by design (S3 keeps the user's data)."""
        self.notes.clear()

    def instances(self) -> list[dict]:
        # Compared exactly here: a name in a tag filter would be a pattern.
        ec2 = aws_client(self.stack, "ec2")
        instances = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
        return [
            i
            for i in instances
            if {t["Key"]: t["Value"] for t in i.get("Tags", [])}.get("ec2hub:user") == self.name
        ]

    def live_instances(self) -> list[dict]:
        return [i for i in self.instances() if i["State"]["Name"] not in ("shutting-down", "terminated")]

    def the_instance(self) -> dict:
        [instance] = self.live_instances()
        return instance


def audit(stack: Stack) -> list[dict]:
    path = stack.cloud_dir / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]
