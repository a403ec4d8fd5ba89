"""The local cloud's "AMI": the user environment its instances boot, with users' own packages kept.

The real AMI and the user image install the requirements into a venv that sees the user's site
packages (`include-system-site-packages = true`), so `pip install --user` and `%pip install` land in
`~/.local` on the home's disk and survive a stop, a start and a resize. The repository's `.venv`
carries the same requirements but also runs the hub and the tests, which must not see anything
outside it. So the instances boot a thin venv beside it (`.venv/ami`): its own `pyvenv.cfg` lets
pip install for the user, its site-packages point at `.venv`'s, its scripts are `.venv`'s scripts run
by its own interpreter, and its `share` and `etc` are `.venv`'s (JupyterLab's extensions, settings
and kernels).

    python -m localcloud.ami        # builds (or refreshes) .venv/ami from the running venv
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

PTH_NAME = "ec2hub-image.pth"
STAMP = ".built"


def ami_dir(venv: Path) -> Path:
    return venv / "ami"


def _rewrite_scripts(venv: Path, ami: Path) -> int:
    """Each of the venv's scripts, started by the AMI's interpreter instead of the venv's."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    own = [f"#!{venv / 'bin' / name}" for name in ("python", "python3", f"python{version}")]
    count = 0
    for script in sorted((venv / "bin").iterdir()):
        target = ami / "bin" / script.name
        if script.is_symlink() or not script.is_file() or target.is_symlink():
            continue  # the interpreters: the AMI has its own
        try:
            text = script.read_text()
        except UnicodeDecodeError:
            continue  # a binary: nothing to rewrite
        first, _, rest = text.partition("\n")
        if first.strip() not in own:
            continue  # activate scripts and the like belong to the venv itself
        target.write_text(f"#!{ami / 'bin' / 'python'}\n{rest}")
        target.chmod(0o755)
        count += 1
    return count


def build(venv: Path) -> Path:
    venv = venv.resolve()
    ami = ami_dir(venv)
    if not (ami / "pyvenv.cfg").exists():
        # The base interpreter makes the venv: one made by a venv's interpreter has the same base.
        subprocess.run(
            [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(ami)],
            check=True,
        )
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(ami), "platbase": str(ami)}))
    venv_purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    # addsitedir, not a bare path: the venv's own .pth files (the editable install) count too, and
    # they come before the base interpreter's site-packages, after the user's.
    (purelib / PTH_NAME).write_text(f"import site; site.addsitedir({str(venv_purelib)!r})\n")
    for name in ("share", "etc"):
        link = ami / name
        if not link.is_symlink():
            if link.exists():
                subprocess.run(["rm", "-rf", str(link)], check=True)
            (venv / name).mkdir(exist_ok=True)
            link.symlink_to(os.path.relpath(venv / name, ami))
    _rewrite_scripts(venv, ami)
    (ami / STAMP).touch()
    return ami


def main() -> int:
    venv = Path(sys.prefix)
    if venv == Path(sys.base_prefix):
        print("run this with the venv's interpreter (.venv/bin/python -m localcloud.ami)", file=sys.stderr)
        return 2
    ami = build(venv)
    print(f"the local cloud's instances boot {ami}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
