"""`make up` twice: Ctrl-C leaves no process behind, and the second run finds everything again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hub.settings import REPO_ROOT
from localcloud.up import Stack
from tests.e2e.stack import (
    approved_user,
    aws_client,
    instances_of,
    processes_under,
    stack_env,
    wait_for,
)

pytestmark = pytest.mark.e2e


def processes_of(state_dir: Path) -> list[int]:
    """Every process of this platform run: started with its state folder, or working in it."""
    found = set(processes_under(state_dir))
    marker = f"EC2HUB_STATE_DIR={state_dir}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.add(int(entry.name))
        except OSError:
            continue
    return sorted(found)


class Up:
    """`make up`'s command in the background, its output in a file, stopped with Ctrl-C (SIGINT)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log

    def __enter__(self) -> Stack:
        self.output = self.log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "localcloud.up"],
            env=self.env,
            cwd=REPO_ROOT,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(
            lambda: "ec2hub is running" in self.log.read_text() or self.process.poll() is not None,
            120,
            "make up to print its banner",
        )
        assert self.process.poll() is None, self.log.read_text()[-3000:]
        stack = Stack(self.env)
        stack.outputs = json.loads((stack.cloud_dir / "outputs.json").read_text())
        return stack

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.exit_code = self.process.wait(timeout=120)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.output.close()


def test_ctrl_c_stops_everything_and_a_second_run_finds_it_all_again(tmp_path):
    state_dir = tmp_path / "state"
    env = stack_env(state_dir, subnet_base=214)
    log = tmp_path / "up.log"

    up = Up(env, log)
    with up as stack:
        banner = log.read_text()
        assert f"Open            {stack.settings.url}" in banner
        assert f"Admin           admin / {stack.settings.admin_password}" in banner
        alice = approved_user(stack, "alice")
        alice.start("alice")
        alice.wait_ready("alice")
        token = alice.token("alice")
        note = {"type": "file", "format": "text", "content": "kept across restarts\n"}
        assert alice.user_api("alice", token, "PUT", "/contents/kept.txt", json=note).status_code == 201
        [instance] = instances_of(aws_client(stack, "ec2"), "alice")
        s3 = aws_client(stack, "s3")
        s3.put_object(Bucket=stack.outputs["bucket"], Key="shared/readme.txt", Body=b"hello, data")
    assert up.exit_code == 0, log.read_text()[-3000:]
    assert "shutting down" in log.read_text()
    assert processes_of(state_dir) == [], "Ctrl-C left processes of the platform running"

    log = tmp_path / "up-again.log"
    again = Up(env, log)
    with again as stack:
        ec2 = aws_client(stack, "ec2")
        [found] = instances_of(ec2, "alice")
        assert found["InstanceId"] == instance["InstanceId"]
        assert found["State"]["Name"] == "stopped"
        body = aws_client(stack, "s3").get_object(Bucket=stack.outputs["bucket"], Key="shared/readme.txt")
        assert body["Body"].read() == b"hello, data"

        alice = approved_user(stack, "alice")
        assert alice.server("alice") is None, "the hub sees that alice's instance is stopped"
        alice.start("alice")
        alice.wait_ready("alice")
        [running] = instances_of(ec2, "alice")
        assert running["InstanceId"] == instance["InstanceId"]
        kept = alice.user_api("alice", token, "GET", "/contents/kept.txt")
        assert kept.status_code == 200, kept.text
        assert kept.json()["content"] == "kept across restarts\n"
    assert again.exit_code == 0
    assert processes_of(state_dir) == []
