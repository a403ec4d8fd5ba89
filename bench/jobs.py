"""Notebook jobs: what a job on an instance of its own costs beyond its instance's boot, against the
same notebook run with papermill inside the user's own server.

    .venv/bin/python bench/jobs.py [--repeat 5] [--size small]

Startup: the platform on the local cloud (hub, jobs service with EC2HUB_JOBS_PERIOD=1), user alice
signed up and approved, her server running (size "small"), a small notebook in it (a `parameters`
cell, then pandas imported, a small frame summed, the total printed). Then `--repeat` rounds, the two
ways taking turns (which goes first alternates):

- job: JupyterLab's jobs API in alice's server (`POST {hub}/user/alice/scheduler/jobs`, compute type
  "small", outputs ipynb and html), timed from just before that request; the service's job JSON
  (`{hub}/services/jobs/api/jobs/<id>`, alice's token) polled every 0.2 s until the job has ended.
  Its times, all from this machine's one clock: `start_time` (the service recorded the launch),
  `run_start_time` (the instance's bootstrap began the run, before fetching the input),
  `first_cell_start` and `last_cell_end` (papermill's marks in the executed notebook), `end_time`
  (the service recorded COMPLETED). "Boot" is run_start_time - start_time; overhead beyond boot is
  (first_cell_start - submit - boot) + (end_time - last_cell_end). The next round waits until the
  job's instance is gone.
- papermill in the server: a kernel of alice's server runs `papermill.execute_notebook` on the same
  notebook with the same parameters (papermill and nbformat imported beforehand), timed with
  time.time() around the call; call -> first cell plus last cell -> return is papermill's own overhead.

Target: under 3 s of overhead beyond the instance's boot (median). Writes bench/results/jobs.json
(the hub's and the local cloud's output to bench/results/jobs-stack.log) and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.etl import machine  # noqa: E402
from localcloud.up import Stack  # noqa: E402
from tests.e2e.kernel import Kernel  # noqa: E402
from tests.e2e.stack import stack_env, wait_for  # noqa: E402
from tests.e2e.test_jobs import ENDED, JOB_DEADLINE, Lab, job_instances, notebook  # noqa: E402

RESULTS = REPO / "bench" / "results"
USER = "alice"
SUBNET_BASE = 112
POLL = 0.2  # seconds between reads of the job's JSON
TARGET_OVERHEAD = 3.0  # seconds beyond the instance's boot
ROWS = 1000
FOLDER = "jobs-bench"
NOTEBOOK = f"{FOLDER}/small.ipynb"
SMALL = notebook(
    "import pandas as pd",
    "frame = pd.DataFrame({'x': range(rows)})\ntotal = int((frame['x'] * 2).sum())",
    "print('total', total)",
    parameters="rows = 10",
)

# Runs once in alice's kernel: the imports, so that no round pays for them.
PAPERMILL_SETUP = """
import json, os, time
from datetime import datetime, timezone
import nbformat, papermill

def epoch_s(moment):
    parsed = datetime.fromisoformat(moment)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()

print(json.dumps({"cwd": os.getcwd(), "papermill": papermill.__version__}))
"""
# After assignments of INPUT, OUTPUT and PARAMETERS; the call as the job's bootstrap makes it.
PAPERMILL_RUN = """
assert os.path.exists(INPUT), (INPUT, os.getcwd())
called = time.time()
papermill.execute_notebook(
    INPUT, OUTPUT, parameters=PARAMETERS, cwd=os.path.dirname(INPUT), log_output=True, progress_bar=False
)
returned = time.time()
executed = nbformat.read(OUTPUT, as_version=4)
starts = [c.metadata.get("papermill", {}).get("start_time") for c in executed.cells if c.cell_type == "code"]
print(json.dumps({
    "called": called,
    "first_cell_start": epoch_s(next(filter(None, starts))),
    "last_cell_end": epoch_s(executed.metadata["papermill"]["end_time"]),
    "returned": returned,
}))
"""

# The table's rows: (label, the job's figure, papermill-in-server's figure or None).
TABLE = [
    ("submit → first cell", "submit_to_first_cell_s", "call_to_first_cell_s"),
    ("boot (run start − launch)", "boot_s", None),
    ("submit → launch", "submit_to_launch_s", None),
    ("run start → first cell", "run_start_to_first_cell_s", "call_to_first_cell_s"),
    ("last cell → completed", "last_cell_to_completed_s", "last_cell_to_return_s"),
    ("overhead beyond boot", "overhead_beyond_boot_s", "overhead_s"),
]


@contextlib.contextmanager
def jobs_platform(state: Path, log: TextIO) -> Iterator[Stack]:
    """The platform on the local cloud with the jobs service's 1 s rounds; stopped whatever happens."""
    env = {**stack_env(state, subnet_base=SUBNET_BASE), "EC2HUB_JOBS_PERIOD": "1"}
    stack = Stack(env, output=log)
    stack.start()  # stops what it started if it fails
    try:
        yield stack
    finally:
        stack.stop()


@contextlib.contextmanager
def kernel_of(stack: Stack, lab: Lab) -> Iterator[Kernel]:
    kernel = Kernel(stack.settings.url, lab.user, lab.token, timeout=300)
    try:
        yield kernel
    finally:
        kernel.shutdown()


def printed_json(kernel: Kernel, code: str) -> dict:
    """Run `code` in the kernel; the JSON of its last printed line."""
    result = kernel.run(code)
    if not result.ok:
        raise RuntimeError("\n".join(result.errors))
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_job(stack: Stack, lab: Lab, compute_type: str) -> dict:
    """One job through JupyterLab's jobs API, until the service reports it ended and its instance
    is gone; its intervals in seconds."""
    submitted = time.time()
    job_id = lab.submit(NOTEBOOK, compute_type=compute_type, parameters={"rows": str(ROWS)})
    deadline = time.monotonic() + JOB_DEADLINE
    while (job := lab.job(job_id))["status"] not in ENDED:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} did not end within {JOB_DEADLINE} s")
        time.sleep(POLL)
    seen = time.time()
    if job["status"] != "COMPLETED" or not (job["first_cell_start"] and job["last_cell_end"]):
        raise RuntimeError(f"job {job_id} ended {job['status']}: {job.get('status_message')}")
    wait_for(lambda: not job_instances(stack, job_id=job_id), 60, f"job {job_id}'s instance to end")
    gone = time.time()
    marks = ("start_time", "run_start_time", "first_cell_start", "last_cell_end", "end_time")
    t = {k: job[k] / 1000 for k in marks}
    boot = t["run_start_time"] - t["start_time"]
    figures = {
        "submit_to_first_cell_s": t["first_cell_start"] - submitted,
        "boot_s": boot,
        "submit_to_launch_s": t["start_time"] - submitted,
        "run_start_to_first_cell_s": t["first_cell_start"] - t["run_start_time"],
        "cells_s": t["last_cell_end"] - t["first_cell_start"],
        "last_cell_to_completed_s": t["end_time"] - t["last_cell_end"],
        "last_cell_to_seen_s": seen - t["last_cell_end"],
        "completed_to_instance_gone_s": gone - t["end_time"],
        "overhead_beyond_boot_s": (t["first_cell_start"] - submitted - boot)
        + (t["end_time"] - t["last_cell_end"]),
    }
    return {"job_id": job_id, **{k: round(v, 3) for k, v in figures.items()}}


def run_papermill(kernel: Kernel, round_number: int) -> dict:
    """The same notebook with papermill in alice's kernel; its intervals in seconds."""
    values = {
        "INPUT": NOTEBOOK,
        "OUTPUT": f"{FOLDER}/small-papermill-{round_number}.ipynb",
        "PARAMETERS": {"rows": ROWS},
    }
    assignments = "".join(f"{name} = {value!r}\n" for name, value in values.items())
    t = printed_json(kernel, assignments + PAPERMILL_RUN)
    figures = {
        "call_to_first_cell_s": t["first_cell_start"] - t["called"],
        "cells_s": t["last_cell_end"] - t["first_cell_start"],
        "last_cell_to_return_s": t["returned"] - t["last_cell_end"],
    }
    figures["overhead_s"] = figures["call_to_first_cell_s"] + figures["last_cell_to_return_s"]
    return {k: round(v, 3) for k, v in figures.items()}


def medians(runs: list[dict]) -> dict:
    keys = [k for k in runs[0] if k.endswith("_s")]
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}


def rounds(stack: Stack, lab: Lab, compute_type: str, repeat: int) -> list[dict]:
    """`repeat` rounds of a job and a papermill run, taking turns at going first."""
    found = []
    with kernel_of(stack, lab) as kernel:
        setup = printed_json(kernel, PAPERMILL_SETUP)
        print(f"alice's kernel: cwd {setup['cwd']}, papermill {setup['papermill']}", flush=True)
        for number in range(repeat):
            result: dict = {"round": number + 1, "load_1min_before": os.getloadavg()[0]}
            order = ("job", "papermill") if number % 2 == 0 else ("papermill", "job")
            for way in order:
                if way == "job":
                    result["job"] = run_job(stack, lab, compute_type)
                else:
                    result["papermill"] = run_papermill(kernel, number)
            result["first"] = order[0]
            found.append(result)
            job, papermill = result["job"], result["papermill"]
            print(
                f"round {number + 1}: job overhead beyond boot {job['overhead_beyond_boot_s']:.2f} s"
                f" (boot {job['boot_s']:.2f} s), papermill's own {papermill['overhead_s']:.2f} s",
                flush=True,
            )
    return found


def table(job: dict, papermill: dict) -> str:
    lines = ["| interval | job median (s) | papermill in server median (s) |", "|---|---:|---:|"]
    for label, job_key, papermill_key in TABLE:
        other = f"{papermill[papermill_key]:.3f}" if papermill_key else "—"
        lines.append(f"| {label} | {job[job_key]:.3f} | {other} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5, help="rounds of job and papermill (default 5)")
    parser.add_argument("--size", default="small", help="size of alice's server and jobs (default small)")
    parser.add_argument("--output", type=Path, default=RESULTS / "jobs.json")
    args = parser.parse_args()

    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "benchmark": "Notebook jobs: overhead beyond the instance's boot vs papermill in the user's server",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "load_average_at_start": os.getloadavg(),
        "size": args.size,
        "notebook": {"cells": "parameters; import pandas; a frame of `rows` summed; print", "rows": ROWS},
        "poll_s": POLL,
        "jobs_service_period_s": 1,
    }
    stack_log = RESULTS / "jobs-stack.log"
    with (
        tempfile.TemporaryDirectory(prefix="ec2hub-bench-") as tmp,
        stack_log.open("w") as log,
        jobs_platform(Path(tmp) / "state", log) as stack,
    ):
        try:
            lab = Lab(stack, USER)
            response = lab.client.api("POST", f"/users/{USER}/server", json={"size": args.size})
            assert response.status_code in (201, 202), response.text
            lab.client.wait_ready(USER, timeout=180)
            lab.put(NOTEBOOK, SMALL)
            results["rounds"] = rounds(stack, lab, lab.compute_type(args.size), args.repeat)
            # Every job has ended: none of their instances may be left (stopping the stack would
            # hide one that the service failed to end).
            wait_for(lambda: not job_instances(stack), 60, "every job instance to end")
            results["job_instances_left"] = len(job_instances(stack))
            assert results["job_instances_left"] == 0
        except BaseException:
            args.output.with_suffix(".partial.json").write_text(json.dumps(results, indent=2) + "\n")
            raise
    results["load_average_at_end"] = os.getloadavg()
    job = medians([r["job"] for r in results["rounds"]])
    papermill = medians([r["papermill"] for r in results["rounds"]])
    results["medians"] = {"job": job, "papermill_in_server": papermill}
    results["verdict"] = {
        "target": f"under {TARGET_OVERHEAD:g} s of overhead beyond the instance's boot",
        "overhead_beyond_boot_median_s": job["overhead_beyond_boot_s"],
        "met": job["overhead_beyond_boot_s"] < TARGET_OVERHEAD,
        "papermill_own_overhead_median_s": papermill["overhead_s"],
        "job_overhead_minus_papermill_s": round(job["overhead_beyond_boot_s"] - papermill["overhead_s"], 3),
    }
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(table(job, papermill))
    print(json.dumps(results["verdict"], indent=2))
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
