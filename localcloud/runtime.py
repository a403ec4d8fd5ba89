"""The instance runtime: boots each EC2 instance as a process group on its private IP, with a disk."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from moto.core.types import Base64EncodedString
from moto.ec2.models.instances import Instance
from moto.ec2.responses.general import General
from moto.ec2.responses.instances import InstanceResponse

from localcloud import accounts
from localcloud.backends import all_instances
from localcloud.faults import Faults, fail_launch
from localcloud.metadata import MetadataServer, decode_user_data
from localcloud.sandbox import plan_for

log = logging.getLogger("localcloud.runtime")

REPO_ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP_DIR = REPO_ROOT / "images" / "bootstrap"

# EC2's console output is the last 64 KiB.
CONSOLE_LIMIT = 64 * 1024

_STATE_CODES = {
    "pending": 0,
    "running": 16,
    "shutting-down": 32,
    "terminated": 48,
    "stopping": 64,
    "stopped": 80,
}


def set_state(instance: Instance, name: str) -> None:
    instance._state.name = name
    instance._state.code = _STATE_CODES[name]


class Booted:
    """What runs for one instance: its user-data process group, its metadata service and, when
    instances are isolated, the uid of its account."""

    def __init__(
        self, process: subprocess.Popen | None, metadata: MetadataServer | None, uid: int | None = None
    ) -> None:
        self.process = process
        self.metadata = metadata
        self.uid = uid
        self.exit_reported = False


class InstanceRuntime:
    """Follows EC2's view of every instance and makes the processes match it.

    moto switches instance states at once; here, as on EC2, an instance is "pending" until it
    has booted and "stopping" until its processes are gone.

    Isolated (the default when run as root), each instance runs in a view of the files of its
    own (localcloud.sandbox: its disk and the image, nothing else of the state folder) with an
    OS account of its own (localcloud.accounts) that its bootstrap drops to, and its metadata
    service answers no other account. Otherwise every instance runs as the local cloud's user.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        aws_endpoint_url: str,
        imds_port: int,
        ami_bin: Path,
        gate,
        poll_interval: float = 0.05,
        faults: Faults | None = None,
        isolate: bool | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.instances_dir = state_dir / "instances"
        self.aws_endpoint_url = aws_endpoint_url
        self.imds_port = imds_port
        self.ami_bin = ami_bin
        self.gate = gate
        self.poll_interval = poll_interval
        self.faults = faults or Faults()
        self.isolate = os.geteuid() == 0 if isolate is None else isolate
        self._image_paths: dict[Path, bool] | None = None
        self._booted: dict[str, Booted] = {}
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._workers = ThreadPoolExecutor(max_workers=16, thread_name_prefix="instance")
        self._thread: threading.Thread | None = None

    # -- hooks into moto ----------------------------------------------------------------------

    def install(self) -> None:
        """Make moto's instances move through pending/stopping/shutting-down, and its console real."""
        runtime = self
        original_init = Instance.__init__
        original_run_instances = InstanceResponse.run_instances
        launching = threading.local()

        def __init__(instance, *args, **kwargs):
            original_init(instance, *args, **kwargs)
            set_state(instance, "pending")
            # Held until RunInstances is complete (its instance profile is associated after the
            # instances exist): on EC2 an instance boots with everything its launch asked for.
            held = getattr(launching, "instances", None)
            if held is not None:
                instance._ec2hub_held = True
                held.append(instance)

        def run_instances(response):
            launching.instances = []
            try:
                return original_run_instances(response)
            finally:
                for instance in launching.instances:
                    instance._ec2hub_held = False
                launching.instances = None
                runtime._wake.set()

        def lands_in(state, original):
            def transition(instance):
                previous = original(instance)
                set_state(instance, state)
                runtime._wake.set()
                return previous

            return transition

        def get_console_output(response):
            instance_id = response._get_param("InstanceId")
            response.ec2_backend.get_instance(instance_id)  # NotFound like EC2
            text = runtime.console_output(instance_id)
            return _console_result(instance_id, text)

        Instance.__init__ = __init__
        InstanceResponse.run_instances = run_instances
        Instance.start = lands_in("pending", Instance.start)
        Instance.stop = lands_in("stopping", Instance.stop)
        Instance.terminate = lands_in("shutting-down", Instance.terminate)
        General.get_console_output = get_console_output

    # -- the loop ------------------------------------------------------------------------------

    def start(self) -> None:
        self.instances_dir.mkdir(parents=True, exist_ok=True)
        self.instances_dir.chmod(0o700)
        if self.isolate:
            for instance_id in accounts.leftovers(self.instances_dir):
                log.warning(
                    "removing the account %s left by an earlier run", accounts.account_name(instance_id)
                )
                accounts.remove(instance_id)
        else:
            log.warning(
                "not run as root: every instance runs as this user (uid %d); users are not isolated"
                " from each other nor from the state folder",
                os.geteuid(),
            )
        self._thread = threading.Thread(target=self._loop, name="instance-runtime", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            try:
                self.reconcile()
            except Exception:
                log.exception("runtime pass failed")

    def reconcile(self) -> None:
        for instance in all_instances():
            state = instance._state.name
            booted = self._booted.get(instance.id)
            if booted and booted.process and not booted.exit_reported:
                code = booted.process.poll()
                if code is not None:
                    booted.exit_reported = True
                    self._console_line(instance.id, f"user-data exited with status {code}")
            with self._lock:
                if instance.id in self._busy:
                    continue
                if getattr(instance, "_ec2hub_held", False):
                    continue
                if state in ("pending", "running") and booted is None:
                    action = self._boot
                elif state == "stopping" or (state == "stopped" and booted):
                    action = self._halt
                elif state == "shutting-down" or (state == "terminated" and booted):
                    action = self._destroy
                else:
                    continue
                self._busy.add(instance.id)
            self._workers.submit(self._run, action, instance)

    def _run(self, action, instance: Instance) -> None:
        try:
            action(instance)
        except Exception:
            log.exception("%s of %s failed", action.__name__, instance.id)
            self._console_line(instance.id, f"{action.__name__.strip('_')} failed; see localcloud log")
        finally:
            with self._lock:
                self._busy.discard(instance.id)
            self._wake.set()

    # -- transitions ---------------------------------------------------------------------------

    def disk(self, instance_id: str) -> Path:
        return self.instances_dir / instance_id

    def _console_line(self, instance_id: str, text: str) -> None:
        disk = self.disk(instance_id)
        if not disk.exists():
            return
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with (disk / "console.log").open("a") as f:
            f.write(f"[localcloud {stamp}] {text}\n")

    def console_output(self, instance_id: str) -> str:
        path = self.disk(instance_id) / "console.log"
        if not path.exists():
            return ""
        data = path.read_bytes()[-CONSOLE_LIMIT:]
        return data.decode("utf-8", "replace")

    def _wait_while_pending(self, instance: Instance, seconds: float) -> bool:
        """A slow boot: stay pending up to `seconds`; False when the instance left pending meanwhile."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._stopping.is_set():
            if instance._state.name != "pending":
                return False
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
        return instance._state.name == "pending"

    def _boot(self, instance: Instance) -> None:
        disk = self.disk(instance.id)
        first_boot = not (disk / "console.log").exists()
        delay = self.faults.boot_delay
        if delay:
            self._console_line(instance.id, f"slow boot: pending for up to {delay:.0f}s")
            if not self._wait_while_pending(instance, delay):
                return
        if self.faults.take_boot_failure():
            disk.mkdir(parents=True, exist_ok=True)
            self._console_line(instance.id, f"{instance.id} failed to boot: internal error on launch")
            with self.gate.request():
                if instance._state.name == "pending":
                    fail_launch(instance, first_boot)
            return
        home = disk / "home"
        home.mkdir(parents=True, exist_ok=True)
        disk.chmod(0o700)
        ip = instance.private_ip
        self._console_line(instance.id, f"booting {instance.id} ({instance.instance_type}) at {ip}")
        process = metadata = account = None
        user_data = decode_user_data(instance.user_data)
        if user_data.startswith(b"#!"):
            script = disk / "user-data"
            script.write_bytes(user_data)
            script.chmod(0o700)
            command = [str(script)]
            if self.isolate:
                command = self._sandboxed(command, home, script)
                account = accounts.create(instance.id, home)
            # Only the instance's own processes ask its metadata service: none without a script.
            metadata = MetadataServer(
                instance, ip, self.imds_port, allowed_uids={0, account.pw_uid} if account else None
            )
            env = {
                "PATH": os.pathsep.join([str(BOOTSTRAP_DIR), str(self.ami_bin), "/usr/bin", "/bin"]),
                "HOME": str(home),
                "LANG": "C.UTF-8",
                # The two things only EC2 can give a process: where its metadata service and
                # its AWS endpoints are. Everything else is what the image does on AWS.
                "AWS_EC2_METADATA_SERVICE_ENDPOINT": metadata.url,
                "AWS_ENDPOINT_URL": self.aws_endpoint_url,
            }
            if account is not None:
                # The image's server account (the bootstrap drops root for it), this instance's own.
                env["EC2HUB_SERVER_USER"] = account.pw_name
            try:
                metadata.start()
                process = _run_user_data(command, home, env, disk / "console.log")
            except BaseException:
                metadata.stop()  # the next try binds the same address
                if account is not None:
                    accounts.remove(instance.id)
                raise
        else:
            self._console_line(instance.id, "no user-data script: nothing to run")
        self._booted[instance.id] = Booted(process, metadata, account.pw_uid if account else None)
        with self.gate.request():
            if instance._state.name == "pending":
                set_state(instance, "running")

    def image_paths(self) -> dict[Path, bool]:
        """What of this machine an instance needs (path -> read-only): the image's environment,
        the interpreter it is built on, and the bootstrap."""
        if self._image_paths is None:
            python = self.ami_bin / "python"
            base = subprocess.run(
                [str(python), "-c", "import sys; print(sys.base_prefix)"],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout.strip()
            self._image_paths = {
                self.ami_bin.parent: True,
                Path(base).resolve(): True,
                BOOTSTRAP_DIR: True,
                REPO_ROOT: True,
            }
        return self._image_paths

    def _sandboxed(self, command: list[str], home: Path, script: Path) -> list[str]:
        plan = plan_for(self.state_dir, {**self.image_paths(), home: False, script: True})
        return [sys.executable, "-m", "localcloud.sandbox", plan.to_json(), "--", *command]

    def _kill(self, instance: Instance) -> None:
        booted = self._booted.pop(instance.id, None)
        if booted is not None:
            if booted.process is not None and booted.process.poll() is None:
                _end_process_group(booted.process)
                self._console_line(instance.id, f"processes of {instance.id} ended")
            if booted.uid is not None:
                # Processes in sessions of their own (kernels, terminals) end with the account.
                accounts.remove(instance.id)
            if booted.metadata is not None:
                booted.metadata.stop()
        # Power off: whatever the instance mounted (its S3 folders) goes with it.
        for mountpoint in mounts_under(self.disk(instance.id)):
            subprocess.run(["umount", "-l", mountpoint], check=False, capture_output=True)

    def kill_processes(self, instance_id: str) -> None:
        """Every process of a running instance dies (as in a crash); EC2 still reports it running."""
        booted = self._booted.get(instance_id)
        if booted is None or booted.process is None:
            raise LookupError(f"{instance_id} has no running processes")
        if booted.uid is not None:
            # Its processes in sessions of their own (kernels, terminals) too.
            accounts.end_processes(booted.uid)
        try:
            os.killpg(booted.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        booted.process.wait(timeout=10)
        self._console_line(instance_id, f"every process of {instance_id} was killed")

    def _halt(self, instance: Instance) -> None:
        self._kill(instance)
        with self.gate.request():
            if instance._state.name == "stopping":
                set_state(instance, "stopped")

    def _destroy(self, instance: Instance) -> None:
        self._kill(instance)
        disk = self.disk(instance.id)
        # Never delete through a mount: that would delete the user's S3 data, not the disk.
        if mounts_under(disk):
            log.error("%s still has mounts %s: its disk is kept", instance.id, mounts_under(disk))
        else:
            shutil.rmtree(disk, ignore_errors=True)
        with self.gate.request():
            if instance._state.name == "shutting-down":
                set_state(instance, "terminated")

    def shutdown(self, timeout: float = 30) -> None:
        """Stop every instance (keeping disks), as if the whole cloud were powered down."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        for instance in all_instances():
            if instance._state.name in ("pending", "running", "stopping"):
                set_state(instance, "stopping")
                self._halt(instance)
            elif instance._state.name == "shutting-down":
                self._destroy(instance)
        self._workers.shutdown(wait=True)


def _run_user_data(command: list[str], home: Path, env: dict, console_path: Path) -> subprocess.Popen:
    """Start the user-data script as a process group of its own, its output in the console log.

    With many instances booting at once, another thread's fork can still hold the just-written
    script open for a moment, and exec fails with ETXTBSY: that is retried briefly.
    """
    deadline = time.monotonic() + 5
    while True:
        try:
            with console_path.open("ab") as console:
                return subprocess.Popen(
                    command,
                    cwd=home,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=console,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as e:
            if e.errno != errno.ETXTBSY or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def mounts_under(path: Path) -> list[str]:
    """Mount points inside `path`, deepest first, from /proc/mounts."""
    root = str(path.resolve())
    found = []
    with open("/proc/mounts") as mounts:
        for line in mounts:
            mountpoint = line.split()[1].replace("\\040", " ")
            if mountpoint == root or mountpoint.startswith(root + "/"):
                found.append(mountpoint)
    return sorted(found, key=len, reverse=True)


def _end_process_group(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM the group, SIGKILL what is left after `grace` seconds."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=grace)
    # Children that outlived the leader are still in the group: wait until it is empty.
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(process.pid):
        time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _console_result(instance_id: str, text: str):
    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow

    return ActionResult(
        {
            "InstanceId": instance_id,
            "Timestamp": utcnow(),
            "Output": Base64EncodedString.from_raw_string(text),
        }
    )
