"""The OS account each running instance's processes use when the local cloud runs as root.

On EC2 every instance is a machine of its own; here instances share one, so each gets an
unprivileged account of its own while its processes run: created at boot, removed once they have
ended (stop, terminate, the local cloud's shutdown). The files of its home keep their owner's
numbers, and the next boot's account takes the same numbers again where they are free.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import signal
import subprocess
import threading
import time
from pathlib import Path

log = logging.getLogger("localcloud.accounts")

PREFIX = "ec2hub-"
COMMENT = "ec2hub local cloud instance"
# useradd and userdel lock /etc/passwd: another one at work answers "try again later".
LOCK_RETRY = 10.0
END_TIMEOUT = 10.0

_lock = threading.Lock()


def account_name(instance_id: str) -> str:
    return PREFIX + instance_id


def _shadow_tool(args: list[str]) -> subprocess.CompletedProcess:
    deadline = time.monotonic() + LOCK_RETRY
    with _lock:
        while True:
            result = subprocess.run(args, capture_output=True, text=True, check=False)
            if result.returncode == 0 or "lock" not in result.stderr or time.monotonic() > deadline:
                return result
            time.sleep(0.1)


def _free(lookup, number: int) -> bool:
    """Whether no account (pwd.getpwuid) or group (grp.getgrgid) has `number`; 0 never is."""
    try:
        lookup(number)
    except KeyError:
        return number != 0
    return False


def create(instance_id: str, home: Path) -> pwd.struct_passwd:
    """The instance's account, with `home` (created if missing) as its home, readable by it alone."""
    name = account_name(instance_id)
    home.mkdir(parents=True, exist_ok=True)
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        owner = home.stat()
        group_args = ["--user-group"]
        if _free(grp.getgrgid, owner.st_gid):
            _check(_shadow_tool(["groupadd", "--gid", str(owner.st_gid), name]), "groupadd")
            group_args = ["--gid", name]
        uid_args = ["--uid", str(owner.st_uid)] if _free(pwd.getpwuid, owner.st_uid) else []
        _check(
            _shadow_tool(
                [
                    "useradd",
                    *uid_args,
                    *group_args,
                    "--no-create-home",
                    "--home-dir",
                    str(home),
                    "--shell",
                    "/bin/bash",
                    "--comment",
                    f"{COMMENT} {instance_id}",
                    name,
                ]
            ),
            "useradd",
        )
        account = pwd.getpwnam(name)
    owner = home.stat()
    if (owner.st_uid, owner.st_gid) != (account.pw_uid, account.pw_gid):
        _hand_over(home, account.pw_uid, account.pw_gid)
    home.chmod(0o700)
    return account


def _check(result: subprocess.CompletedProcess, tool: str) -> None:
    if result.returncode != 0:
        raise OSError(f"{tool} failed ({result.returncode}): {result.stderr.strip()}")


def _hand_over(home: Path, uid: int, gid: int) -> None:
    """Every file of `home` to the account (its numbers changed since the last boot)."""
    os.lchown(home, uid, gid)
    for folder, dirs, files in os.walk(home):
        dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(folder, d))]
        for name in dirs + files:
            os.lchown(os.path.join(folder, name), uid, gid)


def processes_of(uid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("Uid:"):
                    if uid in {int(n) for n in line.split()[1:]}:
                        found.append(int(entry.name))
                    break
        except (OSError, ValueError):
            continue
    return found


def end_processes(uid: int, timeout: float = END_TIMEOUT) -> bool:
    """SIGKILL every process of `uid` (those that left the instance's process group too, such as
    kernels, which run in sessions of their own); True once none is left."""
    deadline = time.monotonic() + timeout
    while True:
        pids = processes_of(uid)
        if not pids:
            return True
        if time.monotonic() > deadline:
            return False
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def remove(instance_id: str) -> None:
    """End the account's processes and remove it (its home stays: it is the instance's disk)."""
    name = account_name(instance_id)
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        return
    if not end_processes(account.pw_uid):
        log.error("processes of %s outlived SIGKILL: %s", name, processes_of(account.pw_uid))
    result = _shadow_tool(["userdel", name])
    if result.returncode != 0:
        log.error("userdel %s failed (%s): %s", name, result.returncode, result.stderr.strip())


def leftovers(instances_dir: Path) -> list[str]:
    """Instance ids of accounts whose home is under `instances_dir`: left by a local cloud that
    ended without removing them."""
    found = []
    root = str(instances_dir.resolve())
    for account in pwd.getpwall():
        if account.pw_name.startswith(PREFIX) and account.pw_gecos.startswith(COMMENT):
            if account.pw_dir.startswith(root + "/"):
                found.append(account.pw_name[len(PREFIX) :])
    return found
