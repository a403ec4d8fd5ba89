"""An instance's own view of the files: its disk and the image, nothing else of the local cloud.

Run as root by the runtime in front of an instance's user-data: `python -m localcloud.sandbox PLAN
-- COMMAND...`. It enters a mount namespace of its own and, in it, covers with an empty tmpfs each
folder to hide (the local cloud's state folder, and any folder that only root may search, such as
/root when the image's interpreter lives under it), then mounts back, at their own paths, what the
instance needs from under them: its home, its user-data, the image's files. Nothing mounted here
reaches the host, and it all ends with the instance's last process, like a machine's mounts.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SLAVE = 0x80000


@dataclass(frozen=True)
class Plan:
    """What an instance sees: `hide` are covered, `expose` (path -> read-only) are shown again."""

    hide: tuple[str, ...]
    expose: tuple[tuple[str, bool], ...]

    def to_json(self) -> str:
        return json.dumps({"hide": list(self.hide), "expose": [list(e) for e in self.expose]})

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data = json.loads(text)
        return cls(tuple(data["hide"]), tuple((path, bool(ro)) for path, ro in data["expose"]))


def searchable_by_others(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXOTH)


def plan_for(state_dir: Path, exposed: dict[Path, bool], searchable=searchable_by_others) -> Plan:
    """The view of an instance that needs `exposed` (path -> read-only), with `state_dir` hidden.

    A folder that others may not search would keep an unprivileged instance out of what lies
    below it: the topmost such folder above each exposed path is hidden too, and the path is
    shown again inside it.
    """
    hide = {state_dir}
    for path in exposed:
        for ancestor in reversed(path.parents):
            if ancestor != Path("/") and not searchable(ancestor):
                hide.add(ancestor)
                break
    # What no hidden folder covers is seen as it is.
    shown = {str(p): ro for p, ro in exposed.items() if any(h in p.parents for h in hide)}
    return Plan(tuple(sorted(map(str, hide))), tuple(sorted(shown.items())))


def _mount(libc, source, target, fstype, flags, data=None) -> None:
    if libc.mount(_c(source), _c(target), _c(fstype), flags, _c(data)) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount {target}: {os.strerror(error)}")


def _c(text):
    return None if text is None else os.fsencode(text)


def enter(plan: Plan) -> None:
    """Enter a mount namespace of this process's own and arrange the view `plan` describes."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"unshare: {os.strerror(error)}")
    _mount(libc, None, "/", None, MS_REC | MS_SLAVE)
    # Handles on what is exposed, taken in the new namespace (a bind mount's source must be in
    # it) and before anything covers them.
    handles = {path: os.open(path, os.O_PATH | os.O_CLOEXEC) for path, _ in plan.expose}
    steps = [(path, None) for path in plan.hide] + list(plan.expose)
    # Shallowest first: a folder is hidden before what is shown again inside it is mounted, and
    # a folder shown again is there before a folder inside it is hidden.
    for path, read_only in sorted(steps, key=lambda step: (Path(step[0]).parts, step[1] is not None)):
        if read_only is None:
            if os.path.lexists(path):  # otherwise already hidden by a folder above it
                _mount(libc, "tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=64k")
            continue
        if os.path.isdir(f"/proc/self/fd/{handles[path]}"):
            os.makedirs(path, mode=0o755, exist_ok=True)
        elif not os.path.lexists(path):
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        _mount(libc, f"/proc/self/fd/{handles[path]}", path, None, MS_BIND | MS_REC)
        if read_only:
            _mount(libc, None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for handle in handles.values():
        os.close(handle)


def main(argv: list[str]) -> None:
    plan_text, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit("usage: python -m localcloud.sandbox PLAN -- COMMAND...")
    enter(Plan.from_json(plan_text))
    # Another thread of the runtime can hold the just-written user-data open for a moment.
    deadline = time.monotonic() + 5
    while True:
        try:
            os.execv(command[0], command)  # noqa: S606 - the instance's own user-data, as EC2 runs it
        except OSError as e:
            if e.errno != errno.ETXTBSY or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


if __name__ == "__main__":
    main(sys.argv[1:])
