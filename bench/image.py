"""The cost of the bigger user image: the environment before the scientific stack and today's, side by side.

    .venv/bin/python bench/image.py [--reuse DIR] [--keep] [--imports 5] [--rounds 5] [--starts 3]

BEFORE is images/user/requirements.txt as of commit f6291a0 (JupyterLab, pandas, pyarrow, s3fs,
Dask, bokeh, matplotlib, TensorFlow); AFTER is the file as it is now (plus SciPy, scikit-learn,
PyTorch CPU, DuckDB, Polars and the rest). For each, in the same run:

- install: a fresh venv (`python3 -m venv`, the project's Python), pip upgraded (not timed), then
  `pip install -r requirements.txt` timed with no pip cache (`--no-cache-dir`, as a new machine or
  an image build has none), from the package indexes this machine's pip config names (local mirrors
  and /opt/wheels: the JSON records them); the venv's size on disk (du) and its package count
- imports: each main library imported in a fresh process, the median of `--imports` runs after one
  uncounted first import; the time is the import statement's, measured inside the process
- first cell: `import pandas, numpy, matplotlib.pyplot` with the page cache of the venv's and the
  standard library's files dropped (posix_fadvise DONTNEED on each file: no root needed, and nothing
  else's cache is touched) against right after one import warmed it: what a hot pool instance gains
  by importing them once in a throwaway process before its claim; rounds of cold then warm
- server start: `jupyter lab` from the venv on a free loopback port with a token, from the start of
  the process until /api/status answers 200, the median of `--starts` after one uncounted start

`--reuse DIR` keeps the venvs in DIR (under /tmp) and, on a later run, skips the installs and
reports the install figures of the run that made them. Writes bench/results/image.json, with the
machine's cores and load average before every measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
REQUIREMENTS = "images/user/requirements.txt"
BEFORE_COMMIT = "f6291a0"
INSTALL_TIMEOUT = 3600
IMPORT_TIMEOUT = 300
START_TIMEOUT = 120
STOP_TIMEOUT = 15
FIRST_CELL = "pandas, numpy, matplotlib.pyplot"
IMPORTS = (
    "pandas",
    "numpy",
    "pyarrow",
    "dask.dataframe",
    "sklearn",
    "tensorflow",
    "torch",
    "matplotlib.pyplot",
    FIRST_CELL,
)
# Loaded by the first cell's libraries and by Python itself: the files whose cache the cold runs drop.
STDLIB = Path(sysconfig.get_paths()["stdlib"])
TIMED_IMPORT = (
    "import time; started = time.perf_counter(); import {modules}; print(time.perf_counter() - started)"
)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def base_python() -> str:
    """The interpreter the project's venv was made from (a venv of a venv would point at the venv)."""
    return os.path.join(sys.base_prefix, "bin", f"python{sys.version_info.major}.{sys.version_info.minor}")


def pip_config() -> str:
    return subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60
    ).stdout.strip()


def requirements_of(side: str, folder: Path) -> Path:
    path = folder / f"requirements-{side}.txt"
    if side == "before":
        text = subprocess.run(
            ["git", "show", f"{BEFORE_COMMIT}:{REQUIREMENTS}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    else:
        text = (REPO / REQUIREMENTS).read_text()
    path.write_text(text)
    return path


def du_bytes(path: Path) -> int:
    out = subprocess.run(
        ["du", "-s", "--block-size=1", str(path)], capture_output=True, text=True, timeout=300
    )
    return int(out.stdout.split()[0])


def install(venv: Path, requirements: Path) -> dict:
    """A new venv with `requirements` installed from no cache; the figures of the install."""
    subprocess.run([base_python(), "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    subprocess.run(
        [*pip, "install", "--quiet", "--no-cache-dir", "--upgrade", "pip"], check=True, timeout=600
    )
    empty = du_bytes(venv)
    load_before = load()
    started = time.monotonic()
    subprocess.run(
        [*pip, "install", "--quiet", "--no-cache-dir", "-r", str(requirements)],
        check=True,
        timeout=INSTALL_TIMEOUT,
    )
    seconds = time.monotonic() - started
    listed = subprocess.run(
        [*pip, "list", "--format=json"], capture_output=True, text=True, check=True, timeout=120
    )
    size = du_bytes(venv)
    return {
        "seconds": round(seconds, 1),
        "venv_mb": round(size / 1e6),
        "installed_mb": round((size - empty) / 1e6),
        "packages": len(json.loads(listed.stdout)),
        "pip": subprocess.run([*pip, "--version"], capture_output=True, text=True, timeout=60).stdout.split()[
            1
        ],
        "load_average_before": load_before,
    }


def side_env(venv: Path, home: Path) -> dict[str, str]:
    """A clean environment: the venv first on PATH, a home of its own (matplotlib's font cache, Jupyter)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "JUPYTER", "VIRTUAL_ENV", "MPL"))
    }
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        HOME=str(home),
        PYTHONNOUSERSITE="1",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    return env


def timed_import(venv: Path, env: dict[str, str], modules: str) -> tuple[float, float]:
    """(seconds of the import statement, seconds of the whole process) in a fresh interpreter."""
    started = time.monotonic()
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", TIMED_IMPORT.format(modules=modules)],
        env=env,
        capture_output=True,
        text=True,
        timeout=IMPORT_TIMEOUT,
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1])
    return float(done.stdout.strip().splitlines()[-1]), wall


def has_module(venv: Path, env: dict[str, str], module: str) -> bool:
    top = module.split(",")[0].split(".")[0].strip()
    check = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({top!r}) is None)"
    return subprocess.run([str(venv / "bin" / "python"), "-c", check], env=env, timeout=60).returncode == 0


def imports(venv: Path, env: dict[str, str], runs: int) -> dict:
    result: dict = {}
    for modules in IMPORTS:
        if not all(has_module(venv, env, m) for m in modules.split(",")):
            result[modules] = None  # not in this image
            continue
        load_before = load()
        first, _ = timed_import(venv, env, modules)
        seconds = [timed_import(venv, env, modules)[0] for _ in range(runs)]
        result[modules] = {
            "median_s": median(seconds),
            "seconds": [round(s, 3) for s in seconds],
            "first_s": round(first, 3),
            "load_average_before": load_before,
        }
    return result


def drop_cache(*folders: Path) -> int:
    """Drops the page cache of every file under `folders` (unmapped pages); returns the files touched."""
    count = 0
    for folder in folders:
        for root, _, files in os.walk(folder):
            for name in files:
                try:
                    fd = os.open(os.path.join(root, name), os.O_RDONLY | os.O_NOFOLLOW)
                except OSError:
                    continue
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    count += 1
                finally:
                    os.close(fd)
    return count


def cached_share(path: Path) -> float:
    """The share of `path` in the page cache (fincore), to show that a drop took effect."""
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.split()
    return round(int(out[0]) / max(1, int(out[1])), 2) if len(out) == 2 else -1.0


def first_cell_cold_warm(venv: Path, env: dict[str, str], rounds: int) -> dict:
    """The first cell's imports with the libraries' files out of the page cache, then in it."""
    probe = next((venv / "lib").glob("python*/site-packages/numpy/_core/_multiarray_umath*.so"), None)
    cold, warm, cold_wall, warm_wall, shares = [], [], [], [], []
    load_before = load()
    for _ in range(rounds):
        files = drop_cache(venv, STDLIB)
        shares.append(cached_share(probe) if probe else -1.0)
        seconds, wall = timed_import(venv, env, FIRST_CELL)
        cold.append(seconds)
        cold_wall.append(wall)
        seconds, wall = timed_import(venv, env, FIRST_CELL)
        warm.append(seconds)
        warm_wall.append(wall)
    return {
        "imports": FIRST_CELL,
        "cold_median_s": median(cold),
        "warm_median_s": median(warm),
        "cold_process_median_s": median(cold_wall),
        "warm_process_median_s": median(warm_wall),
        "cold_s": [round(s, 3) for s in cold],
        "warm_s": [round(s, 3) for s in warm],
        "files_dropped": files,
        "numpy_core_cached_after_drop": shares,
        "load_average_before": load_before,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=STOP_TIMEOUT)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT)


def server_start(venv: Path, env: dict[str, str], home: Path) -> float:
    """Seconds from launching `jupyter lab` until its /api/status answers 200."""
    port, token = free_port(), os.urandom(16).hex()
    command = [
        str(venv / "bin" / "jupyter"),
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={home}",
    ]
    if os.geteuid() == 0:  # as on this bench machine; the platform's servers never run as root
        command.append("--allow-root")
    url = f"http://127.0.0.1:{port}/api/status"
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while time.monotonic() - started < START_TIMEOUT:
            if process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {process.returncode}")
            try:
                answer = requests.get(url, headers={"Authorization": f"token {token}"}, timeout=5)
                if answer.status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"jupyter lab did not answer within {START_TIMEOUT}s")
    finally:
        stop_group(process)


def server_starts(venv: Path, env: dict[str, str], home: Path, runs: int) -> dict:
    load_before = load()
    first = server_start(venv, env, home)
    seconds = [server_start(venv, env, home) for _ in range(runs)]
    return {
        "median_s": median(seconds),
        "seconds": [round(s, 3) for s in seconds],
        "first_s": round(first, 3),
        "load_average_before": load_before,
    }


def measure(side: str, folder: Path, args: argparse.Namespace) -> dict:
    venv, home = folder / side, folder / f"home-{side}"
    requirements = requirements_of(side, folder)
    record = folder / f"install-{side}.json"
    if record.exists() and (venv / "bin" / "python").exists():
        installed = {**json.loads(record.read_text()), "reused_from": str(folder)}
    else:
        shutil.rmtree(venv, ignore_errors=True)
        installed = install(venv, requirements)
        record.write_text(json.dumps(installed))
    home.mkdir(exist_ok=True)
    env = side_env(venv, home)
    print(f"{side}: installed {installed}", flush=True)
    result = {
        "requirements": f"{REQUIREMENTS} at {BEFORE_COMMIT}" if side == "before" else f"{REQUIREMENTS} now",
        "pins": len([line for line in requirements.read_text().splitlines() if line and line[0].isalnum()]),
        "install": installed,
        "imports": imports(venv, env, args.imports),
    }
    print(f"{side}: imports {result['imports']}", flush=True)
    result["first_cell_page_cache"] = first_cell_cold_warm(venv, env, args.rounds)
    print(f"{side}: first cell {result['first_cell_page_cache']}", flush=True)
    result["server_start"] = server_starts(venv, env, home, args.starts)
    print(f"{side}: server {result['server_start']}", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reuse", type=Path, help="keep the venvs in this folder; reuse them if there")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder of the venvs")
    parser.add_argument("--imports", type=int, default=5, help="timed imports of each library (default 5)")
    parser.add_argument("--rounds", type=int, default=5, help="cold-then-warm first cells (default 5)")
    parser.add_argument("--starts", type=int, default=3, help="timed server starts (default 3)")
    parser.add_argument("--output", type=Path, default=RESULTS / "image.json")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    folder = args.reuse or Path(tempfile.mkdtemp(prefix="ec2hub-image-", dir="/tmp"))
    folder.mkdir(parents=True, exist_ok=True)
    result: dict = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": load(),
        },
        # Packages come from the indexes and find-links this machine's pip config names (local mirrors).
        "pip_config": pip_config().splitlines(),
        "page_cache_drop": "posix_fadvise(DONTNEED) on the venv's and the standard library's files",
    }
    try:
        for side in ("before", "after"):
            result[side] = measure(side, folder, args)
    finally:
        if not (args.reuse or args.keep):
            shutil.rmtree(folder, ignore_errors=True)
    result["machine"]["load_average_at_end"] = load()
    result["venvs_kept_in"] = str(folder) if (args.reuse or args.keep) else None
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
