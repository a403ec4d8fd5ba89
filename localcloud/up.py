"""`make up`: the whole platform on the local cloud, in the foreground, until Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from hub.settings import REPO_ROOT, Settings
from localcloud.provision import hub_environment

START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


class StartError(RuntimeError):
    """A part of the stack did not come up; the message says which and where its log is."""


def _wait_until(check, timeout: float, what: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        if process.poll() is not None:
            raise StartError(f"{what} exited with status {process.returncode} while starting")
        if check():
            return
        if time.monotonic() > deadline:
            raise StartError(f"{what} did not come up within {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _answers(url: str, host: str | None = None) -> bool:
    """True once `url` answers 200 (the proxy answers 404 until the hub's route is in); `host`: the
    Host header, the hub's own with EC2HUB_SUBDOMAIN_HOST (the proxy routes by host then)."""
    request = urllib.request.Request(url, headers={"Host": host} if host else {})  # noqa: S310 - as below
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - loopback URL we built
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _end(process: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM the process group, SIGKILL it if it is still there after `timeout` seconds."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    # Whatever the leader left in its group (the proxy, say) goes with it.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Stack:
    """The local cloud and the hub (with its proxy) as child processes, each in its own group.

    Used by `make up` and by the end-to-end tests, so both run the platform the same way.
    """

    def __init__(
        self, env: Mapping[str, str] | None = None, output=None, config_file: Path | None = None
    ) -> None:
        self.env = dict(os.environ if env is None else env)
        self.config_file = config_file or REPO_ROOT / "jupyterhub_config.py"
        self.settings = Settings.from_env(self.env)
        self.cloud_dir = self.settings.state_dir / "localcloud"
        self.output = output
        self.cloud: subprocess.Popen | None = None
        self.hub: subprocess.Popen | None = None
        self.outputs: dict = {}

    @property
    def hub_env(self) -> dict[str, str]:
        return {**self.env, **hub_environment(self.outputs)}

    def start_cloud(self) -> None:
        ready = self.cloud_dir / "ready"
        ready.unlink(missing_ok=True)
        self.cloud = subprocess.Popen(
            [sys.executable, "-m", "localcloud", "--state-dir", str(self.cloud_dir)],
            env=self.env,
            cwd=REPO_ROOT,
            stdout=self.output,
            stderr=subprocess.STDOUT if self.output else None,
            start_new_session=True,
        )
        _wait_until(ready.exists, START_TIMEOUT, "the local cloud", self.cloud)
        self.outputs = json.loads((self.cloud_dir / "outputs.json").read_text())

    def start_hub(self) -> None:
        hub_dir = self.settings.state_dir / "hub"
        hub_dir.mkdir(parents=True, exist_ok=True)
        self.hub = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(self.config_file)],
            env=self.hub_env,
            cwd=hub_dir,
            stdout=self.output,
            stderr=subprocess.STDOUT if self.output else None,
            start_new_session=True,
        )
        host = urlparse(self.settings.public_url).netloc
        _wait_until(
            lambda: _answers(f"{self.settings.url}/hub/api", host), START_TIMEOUT, "the hub", self.hub
        )

    def start(self) -> None:
        # The hub's database, its secrets and the local cloud's state: for whoever runs it alone.
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.settings.state_dir.chmod(0o700)
        try:
            self.start_cloud()
            self.start_hub()
        except BaseException:
            self.stop()
            raise

    def stop_hub(self) -> None:
        _end(self.hub, STOP_TIMEOUT)
        # The hub stops its proxy when it shuts down cleanly; one stopped half-way through its own
        # start leaves the proxy (a session of its own) behind: end it by its pid file.
        pid_file = self.settings.state_dir / "hub" / "proxy.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().find(b"configurable-http-proxy") >= 0:
                os.kill(pid, signal.SIGTERM)
        pid_file.unlink(missing_ok=True)

    def stop_cloud(self) -> None:
        _end(self.cloud, STOP_TIMEOUT)

    def stop(self) -> None:
        # The hub first, while the cloud still answers it; then the cloud stops the instances.
        self.stop_hub()
        self.stop_cloud()

    def wait(self, stop: threading.Event) -> str:
        """Block until `stop` is set or a part exits; returns why."""
        while not stop.wait(0.5):
            for name, process in (("the hub", self.hub), ("the local cloud", self.cloud)):
                if process is not None and process.poll() is not None:
                    return f"{name} exited with status {process.returncode}"
        return "stopped"


def banner(settings: Settings, outputs: dict, env: Mapping[str, str]) -> str:
    # A password the user chose is not echoed back; a generated one has to be shown once here.
    admin_password = (
        "(EC2HUB_ADMIN_PASSWORD)" if env.get("EC2HUB_ADMIN_PASSWORD") else settings.admin_password
    )
    return "\n".join(
        [
            "",
            "ec2hub is running on the local cloud.",
            f"  Open            {settings.public_url}",
            f"  Admin           {settings.admin_user} / {admin_password}",
            f"  New users       sign up at {settings.public_url}/hub/signup; the admin approves them at"
            f" {settings.public_url}/hub/authorize",
            "  User servers    "
            + (
                f"each on a host of its own (http://NAME.{settings.subdomain_host.split('://', 1)[1]})"
                if settings.subdomain_host
                else "on the hub's origin: for users who are all trusted (EC2HUB_SUBDOMAIN_HOST)"
            ),
            f"  AWS endpoint    {outputs['aws_endpoint_url']}"
            f" (AWS_CONFIG_FILE={outputs['config_file']}"
            f" AWS_SHARED_CREDENTIALS_FILE={outputs['credentials_file']} AWS_PROFILE=admin)",
            "  Stop            Ctrl-C (instances stop and keep their disks)",
            *isolation_note(os.geteuid()),
            "",
        ]
    )


def isolation_note(euid: int) -> list[str]:
    """Run as another user than root, the local cloud cannot give instances accounts of their own."""
    if euid == 0:
        return []
    return [
        "  Not isolated    every instance runs as this user: users can read each other's files, the"
        " hub's database and the state folder; run as root for one account per instance",
    ]


def main() -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stack = Stack()
    try:
        stack.start()
    except StartError as e:
        print(f"ec2hub: {e}", file=sys.stderr)
        return 1
    print(banner(stack.settings, stack.outputs, stack.env), flush=True)
    reason = stack.wait(stop)
    print(f"\nec2hub: {reason}; shutting down.", flush=True)
    stack.stop()
    return 0 if reason == "stopped" else 1


if __name__ == "__main__":
    raise SystemExit(main())
