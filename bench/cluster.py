"""Dask clusters: time to N workers on the EC2 backend against dask-gateway's local-process backend,
and the WISDM ETL on a 2-worker gateway cluster against the same pipeline on a LocalCluster.

    .venv/bin/python bench/cluster.py [--workers 1,2,4] [--repeat 5] [--etl-repeat 3]
                                      [--subjects 51] [--seconds 180] [--partitions 1]

Startup: the platform on the local cloud (hub, dask-gateway as its service with the EC2 backend) and,
beside it on free loopback ports, a dask-gateway-server of the bench's own with dask-gateway's
UnsafeLocalBackend (scheduler and workers as local processes) and simple password sign-in, workers of
the same cores, threads and memory as the "small" size (2 vCPU). From this process, one user's
hub token (with `access:services!service=dask-gateway`) and the same dask-gateway client code time
`new_cluster()` -> `scale(N)` -> `client.wait_for_workers(N)` on each backend, the two backends taking
turns at each N (after one uncounted first cluster on each); after each cluster's shutdown, the next
waits until none of its processes (for EC2: instances and their processes) is left. Each measurement
is split into phases by the gateway's log and each process's own Dask log (the instances' console
output, the local backend's log files); the EC2 scheduler's boot also by its instance's read of the
cluster's settings from SSM (the local cloud's request log).

ETL: the user's own server (their instance, role and S3 prefix) holds a kernel that starts a 2-worker
gateway cluster (size "small": 2 threads, 85% of 4 GiB each) and a LocalCluster of 2 workers with 2
threads and the same memory limit, and runs notebook 2's pipeline (notebooks/wisdm.py, `run_etl`,
sent to both clusters' workers with `upload_file`) on each in turn, on the same raw files in the
user's S3 prefix (full scale by default: 13.2 M readings, 730 MB): both read and write through the
local cloud's S3 endpoint with the user's role (the gateway workers from their own instances'
metadata, the LocalCluster's from the server's), so the two differ in where the workers run and in
the gateway cluster's TLS. Every instance and process shares this machine's cores.

Writes bench/results/cluster.json; the hub's and the local cloud's output go to
bench/results/cluster-stack.log, the baseline gateway's to bench/results/cluster-baseline.log.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psutil
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.etl import machine  # noqa: E402
from hub.gateway.backend import WORKER_MEMORY_SHARE  # noqa: E402
from localcloud.up import Stack  # noqa: E402
from spawner.identity import UserNames  # noqa: E402
from spawner.profiles import DEFAULT_PROFILES  # noqa: E402
from tests.e2e.kernel import Kernel  # noqa: E402
from tests.e2e.stack import (  # noqa: E402
    approved_user,
    aws_client,
    listen_port,
    processes_under,
    stack_env,
    wait_for,
)

RESULTS = REPO / "bench" / "results"
USER = "clusterbench"
WORKER_SIZE = "small"
SMALL = next(p for p in DEFAULT_PROFILES if p["slug"] == WORKER_SIZE)
# The EC2 backend's memory limit for a worker of that size.
WORKER_MEMORY = int(SMALL["memory_gib"] * 2**30 * WORKER_MEMORY_SHARE)
TIMEOUT = 600
TARGET_STARTUP = 1.3  # EC2 backend within 1.3 times the local backend, at N = 2
TARGET_ETL = 1.25  # the gateway cluster within 1.25 times the LocalCluster

BASELINE_CONFIG = """
c.DaskGateway.address = "127.0.0.1:{api}"
c.Proxy.address = "127.0.0.1:{http}"
c.Proxy.tcp_address = "127.0.0.1:{tcp}"
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
c.SimpleAuthenticator.password = {password!r}
c.UnsafeLocalBackend.clusters_directory = {clusters!r}
# The platform's gateway checks its clusters and workers every 5 s (EC2HUB_DASK_STATUS_PERIOD).
c.UnsafeLocalBackend.cluster_status_period = 5.0
c.UnsafeLocalBackend.worker_status_period = 5.0
# dask 2026 has no dask-scheduler and dask-worker commands; workers without a dashboard, as the EC2
# backend starts them.
c.ClusterConfig.scheduler_cmd = ["dask", "scheduler"]
c.ClusterConfig.worker_cmd = ["dask", "worker", "--no-dashboard"]
c.ClusterConfig.worker_cores = {cores}
c.ClusterConfig.worker_threads = {cores}
c.ClusterConfig.worker_memory = {memory}
c.ClusterConfig.cluster_max_workers = 8
"""

# Runs in the user's kernel (after assignments of RAW, SIZE, THREADS, MEMORY and TIMEOUT): both
# clusters, side by side until the end of the ETL runs.
ETL_SETUP = """
import json, os, time
import fsspec, wisdm
from dask_gateway import Gateway
from distributed import Client, LocalCluster

raw_url = os.environ["EC2HUB_DATA_URL"] + RAW + "/"
gateway = Gateway()
gateway_cluster = gateway.new_cluster(worker_size=SIZE)
gateway_cluster.scale(2)
clients = {"gateway": gateway_cluster.get_client(set_as_default=False)}
clients["gateway"].wait_for_workers(2, timeout=TIMEOUT)
local_cluster = LocalCluster(
    n_workers=2, threads_per_worker=THREADS, memory_limit=MEMORY, dashboard_address=None
)
clients["localcluster"] = Client(local_cluster, set_as_default=False)
for client in clients.values():
    client.upload_file("wisdm.py")
print(json.dumps({name: {w: {"threads": i["nthreads"], "memory_limit": i["memory_limit"]}
                         for w, i in client.scheduler_info()["workers"].items()}
                  for name, client in clients.items()}))
"""
# After assignments of ENGINE, OUTPUT and PARTITIONS.
ETL_RUN = """
client = clients[ENGINE]
output_url = os.environ["EC2HUB_DATA_URL"] + OUTPUT + "/"
started = time.perf_counter()
with client.as_current():
    report = wisdm.run_etl(raw_url, output_url, partitions_per_sensor=PARTITIONS)
seconds = time.perf_counter() - started
fs, path = fsspec.core.url_to_fs(output_url)
fs.rm(path, recursive=True)
print(json.dumps({"etl_s": seconds, "rows_in": report.quality.rows_in, "rows_out": report.quality.rows_out,
                  "balanced": report.balanced, "files": len(report.files)}))
"""
ETL_END = """
for client in clients.values():
    client.close()
gateway_cluster.shutdown()
local_cluster.close()
print("{}")
"""


# ----------------------------------------------------------------------------------------------------
# Logs: when each step of a cluster's start happened

GATEWAY_LINE = re.compile(r"\[I (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) DaskGateway\S*\s+(.*)$")
DASK_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - distributed\.")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def local_time(stamp: str) -> float:
    return datetime.strptime(stamp.replace(",", "."), "%Y-%m-%d %H:%M:%S.%f").timestamp()


def gateway_events(log: Path, cluster: str) -> list[tuple[float, str]]:
    """(time, message) of the gateway's log lines about `cluster` and its workers."""
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        match = GATEWAY_LINE.search(ANSI.sub("", line))
        if match:
            lines.append((local_time(match.group(1)), match.group(2)))
    created = re.compile(rf"^Created worker (\S+) for cluster {cluster}$")
    names = {cluster} | {m.group(1) for _, message in lines if (m := created.match(message))}
    return [(t, message) for t, message in lines if any(name in message for name in names)]


def dask_log_times(text: str, marker: str) -> tuple[float | None, float | None]:
    """When a Dask process wrote its first log line, and the line holding `marker`."""
    first = marked = None
    for line in text.splitlines():
        match = DASK_LINE.match(line)
        if not match:
            continue
        when = local_time(match.group(1))
        first = when if first is None else first
        if marker in line and marked is None:
            marked = when
    return first, marked


def first_event(events, pattern: str) -> float | None:
    return next((t for t, message in events if re.search(pattern, message)), None)


def phases(events, scheduler_log: str, worker_logs: dict[str, str], client: dict) -> dict:
    """Seconds of each step, from the client's call to the last worker's registration.

    Scheduler: API (request to the gateway's submit), launch (the instance or process requested),
    boot (until the scheduler's first log line: for EC2 the instance's boot, its bootstrap and
    Python's imports), start (until the gateway hears of it), and back to the client. Workers, for the
    one that registered last: from scale() to its submission, launch, boot, registration, and the
    client seeing it.
    """
    submitting = first_event(events, r"^Submitting cluster")
    submitted = first_event(events, r"^Cluster \S+ submitted")
    running = first_event(events, r"^Cluster \S+ is running")
    sched_first, _ = dask_log_times(scheduler_log, "Scheduler at:")
    registered = {}
    for worker, text in worker_logs.items():
        first, done = dask_log_times(text, "Registered to:")
        registered[worker] = (first, done)
    times = {
        "api_s": (client["t0"], submitting),
        "scheduler_launch_s": (submitting, submitted),
        "scheduler_boot_s": (submitted, sched_first),
        "scheduler_start_s": (sched_first, running),
        "new_cluster_return_s": (running, client["t_new"]),
    }
    last = max(registered, key=lambda w: registered[w][1] or 0, default=None)
    if last is not None:
        w_submitting = first_event(events, rf"^Submitting worker {last}")
        w_submitted = first_event(events, rf"^Worker {last} submitted")
        w_first, w_done = registered[last]
        times.update(
            {
                "scale_to_submit_s": (client["t_scale"], w_submitting),
                "worker_launch_s": (w_submitting, w_submitted),
                "worker_boot_s": (w_submitted, w_first),
                "worker_register_s": (w_first, w_done),
                "client_sees_s": (w_done, client["t_ready"]),
            }
        )
    return {
        name: round(end - start, 3)
        for name, (start, end) in times.items()
        if start is not None and end is not None
    }


# ----------------------------------------------------------------------------------------------------
# The two backends


class Backend:
    """One dask-gateway, the client code every measurement shares, and how to see a cluster gone."""

    name = ""
    log: Path

    def __init__(self, gateway) -> None:
        self.gateway = gateway
        # Every cluster object stays referenced until the end: each holds a client of its own whose
        # __del__ closes it synchronously, which deadlocks when a garbage collection runs it on the
        # clients' shared event loop thread (dask-gateway 2026.3.0; it hung a run in wait_for_workers).
        self.kept: list = []

    def new_cluster(self):
        return self.gateway.new_cluster()

    def dask_logs(self, cluster: str) -> tuple[str, dict[str, str]]:
        raise NotImplementedError

    def boot_phases(self, events, scheduler_log: str) -> dict:
        return {}

    def gone(self, cluster: str) -> bool:
        raise NotImplementedError

    def measure(self, workers: int) -> dict:
        t0 = time.time()
        cluster = self.new_cluster()
        self.kept.append(cluster)
        t_new = time.time()
        cluster.scale(workers)
        t_scale = time.time()
        client = cluster.get_client(set_as_default=False)
        client.wait_for_workers(workers, timeout=TIMEOUT)
        t_ready = time.time()
        name = cluster.name
        try:
            scheduler_log, worker_logs = self.dask_logs(name)
            events = gateway_events(self.log, name)
            times = {"t0": t0, "t_new": t_new, "t_scale": t_scale, "t_ready": t_ready}
            split = phases(events, scheduler_log, worker_logs, times)
            split.update(self.boot_phases(events, scheduler_log))
        finally:
            client.close()
            cluster.shutdown()
        wait_for(lambda: self.gone(name), TIMEOUT, f"cluster {name} of {self.name} to be gone")
        return {
            "seconds": round(t_ready - t0, 3),
            "new_cluster_s": round(t_new - t0, 3),
            "scale_to_ready_s": round(t_ready - t_scale, 3),
            "phases": split,
        }


class EC2Backend(Backend):
    name = "ec2"

    def __init__(self, gateway, stack: Stack, log: Path) -> None:
        super().__init__(gateway)
        self.ec2 = aws_client(stack, "ec2")
        self.stack = stack
        self.log = log

    def new_cluster(self):
        return self.gateway.new_cluster(worker_size=WORKER_SIZE)

    def instances(self, cluster: str, states=("pending", "running", "stopping", "stopped")) -> list[dict]:
        response = self.ec2.describe_instances(
            Filters=[
                {"Name": "tag:ec2hub:cluster", "Values": [cluster]},
                {"Name": "instance-state-name", "Values": list(states)},
            ]
        )
        return [i for r in response["Reservations"] for i in r["Instances"]]

    def dask_logs(self, cluster: str) -> tuple[str, dict[str, str]]:
        scheduler, workers = "", {}
        events = gateway_events(self.log, cluster)
        worker_of = {
            m.group(2): m.group(1)
            for _, message in events
            if (m := re.match(r"Worker (\S+) of cluster \S+: instance (\S+)", message))
        }
        for instance in self.instances(cluster):
            text = self.ec2.get_console_output(InstanceId=instance["InstanceId"]).get("Output", "")
            purpose = {t["Key"]: t["Value"] for t in instance["Tags"]}["ec2hub:purpose"]
            if purpose == "dask-scheduler":
                scheduler = text
            elif instance["InstanceId"] in worker_of:
                workers[worker_of[instance["InstanceId"]]] = text
        return scheduler, workers

    def boot_phases(self, events, scheduler_log: str) -> dict:
        """The scheduler's boot in two, at its instance's read of the cluster's settings from SSM (in
        the local cloud's request log): the instance's start and the bootstrap until then, and from
        there (the exec of `dask scheduler`, Python's imports) to Dask's first log line."""
        launched = first_event(events, r"scheduler instance i-")
        first, _ = dask_log_times(scheduler_log, "Scheduler at:")
        if launched is None or first is None:
            return {}
        with (self.stack.cloud_dir / "audit.jsonl").open() as audit:
            entries = [json.loads(line) for line in audit if '"GetParameter"' in line]
        read = next((e["t"] for e in entries if e["service"] == "ssm" and launched <= e["t"] <= first), None)
        if read is None:
            return {}
        return {
            "scheduler_bootstrap_to_settings_s": round(read - launched, 3),
            "scheduler_settings_to_dask_log_s": round(first - read, 3),
        }

    def gone(self, cluster: str) -> bool:
        """No instance of the cluster is live, and no process of any of them is left."""
        states = ("pending", "running", "stopping", "stopped", "shutting-down", "terminated")
        instances = self.instances(cluster, states)
        disks = self.stack.cloud_dir / "instances"
        return all(i["State"]["Name"] == "terminated" for i in instances) and not any(
            processes_under(disks / i["InstanceId"]) for i in instances if (disks / i["InstanceId"]).exists()
        )


class LocalBackend(Backend):
    name = "local"

    def __init__(self, gateway, process: subprocess.Popen, clusters: Path, log: Path) -> None:
        super().__init__(gateway)
        self.process = psutil.Process(process.pid)
        self.clusters = clusters
        self.log = log

    def dask_logs(self, cluster: str) -> tuple[str, dict[str, str]]:
        logs = self.clusters / cluster / "logs"
        scheduler = (logs / "scheduler.log").read_text(errors="replace")
        workers = {
            p.stem.removeprefix("worker-"): p.read_text(errors="replace") for p in logs.glob("worker-*.log")
        }
        return scheduler, workers

    def gone(self, cluster: str) -> bool:
        """No scheduler or worker process is left under the gateway (its proxy stays)."""
        left = []
        for child in self.process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "dask-gateway-proxy" not in " ".join(child.cmdline()):
                    left.append(child)
        return not left


@contextlib.contextmanager
def baseline_gateway(folder: Path, log: Path):
    """dask-gateway-server with its local-process backend on free loopback ports."""
    ports = {"api": listen_port(), "http": listen_port(), "tcp": listen_port()}
    password = secrets.token_urlsafe(16)
    clusters = folder / "clusters"
    clusters.mkdir(parents=True)
    config = folder / "baseline_gateway_config.py"
    config.write_text(
        BASELINE_CONFIG.format(
            **ports,
            password=password,
            clusters=str(clusters),
            cores=SMALL["vcpu"],
            memory=WORKER_MEMORY,
        )
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "dask_gateway_server", "-f", str(config)],
            env=env,
            cwd=folder,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            health = f"http://127.0.0.1:{ports['http']}/api/health"
            wait_for(lambda: answers(health), 60, "the baseline gateway")
            yield process, ports, password, clusters
        finally:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).ok
    except requests.ConnectionError:
        return False


# ----------------------------------------------------------------------------------------------------
# The run


def summary(runs: list[dict]) -> dict:
    seconds = [r["seconds"] for r in runs]
    keys = sorted({k for r in runs for k in r["phases"]})
    return {
        "median_s": round(statistics.median(seconds), 3),
        "runs_s": seconds,
        "median_phases_s": {
            k: round(statistics.median(r["phases"][k] for r in runs if k in r["phases"]), 3) for k in keys
        },
        "runs": runs,
    }


def startup(backends: list[Backend], workers: list[int], repeat: int) -> dict:
    """Each N in turn, the backends taking turns (which goes first alternates each repetition).

    A first cluster of one worker on each backend is not counted: a gateway's first cluster pays
    one-off costs (for the EC2 backend, its AWS clients' set-up), kept under "warmup".
    """
    warmup = {b.name: b.measure(1) for b in backends}
    runs: dict = {b.name: {n: [] for n in workers} for b in backends}
    for rep in range(repeat):
        order = backends if rep % 2 == 0 else backends[::-1]
        for n in workers:
            for backend in order:
                load = os.getloadavg()[0]
                result = backend.measure(n)
                result["load_1min_before"] = load
                runs[backend.name][n].append(result)
                print(f"{backend.name:>5} N={n} rep {rep + 1}: {result['seconds']:6.2f} s", flush=True)
    return {
        name: {"warmup": warmup[name], **{str(n): summary(r) for n, r in by_n.items()}}
        for name, by_n in runs.items()
    }


def assignments(**values) -> str:
    """Python lines that set the kernel's variables to these values."""
    return "".join(f"{name} = {value!r}\n" for name, value in values.items())


def etl(stack: Stack, client, token: str, raw: str, expected_rows: int, partitions: int, repeat: int) -> dict:
    """The ETL in the user's kernel, on the gateway cluster and the LocalCluster by turns."""
    source = (REPO / "notebooks" / "wisdm.py").read_text()
    uploaded = client.user_api(
        USER, token, "PUT", "/contents/wisdm.py", json={"type": "file", "format": "text", "content": source}
    )
    uploaded.raise_for_status()
    kernel = Kernel(stack.settings.url, USER, token, timeout=3600)

    def run(code: str) -> dict:
        result = kernel.run(code)
        if not result.ok:
            raise RuntimeError("\n".join(result.errors))
        return json.loads(result.stdout.strip().splitlines()[-1])

    try:
        workers = run(
            assignments(
                RAW=raw, SIZE=WORKER_SIZE, THREADS=SMALL["vcpu"], MEMORY=WORKER_MEMORY, TIMEOUT=TIMEOUT
            )
            + ETL_SETUP
        )
        runs: dict = {"gateway": [], "localcluster": []}
        for rep in range(repeat):
            order = list(runs) if rep % 2 == 0 else list(runs)[::-1]
            for engine in order:
                load = os.getloadavg()[0]
                output = f"bench-cluster/{engine}-{rep}"
                result = run(assignments(ENGINE=engine, OUTPUT=output, PARTITIONS=partitions) + ETL_RUN)
                result["load_1min_before"] = load
                result["output_matches_expected"] = result["rows_out"] == expected_rows
                runs[engine].append(result)
                print(f"{engine:>12} ETL rep {rep + 1}: {result['etl_s']:6.2f} s", flush=True)
        run(ETL_END)
    finally:
        kernel.shutdown()
    return {
        "how": (
            "both clusters started from a kernel of the user's server; notebooks/wisdm.py run_etl"
            " (sent with upload_file) on the same raw files in the user's S3 prefix, read and written"
            " through the local cloud's S3 endpoint with the user's role (gateway workers: their own"
            " instances' metadata; LocalCluster workers: the server instance's); gateway cluster: TLS"
            " through the gateway's proxy, LocalCluster: TCP inside the server; runs alternate"
        ),
        "workers": workers,
        **{
            engine: {
                "median_s": round(statistics.median(r["etl_s"] for r in results), 3),
                "runs_s": [round(r["etl_s"], 3) for r in results],
                "runs": results,
            }
            for engine, results in runs.items()
        },
    }


def versions() -> dict:
    from importlib.metadata import version

    names = ("dask", "distributed", "dask-gateway", "dask-gateway-server", "jupyterhub", "moto", "pyarrow")
    return {name: version(name) for name in names}


def source() -> dict:
    """The commit measured, and the files of the platform that differed from it in this tree."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.rstrip()

    paths = ["hub", "spawner", "localcloud", "images", "notebooks/wisdm.py", "jupyterhub_config.py"]
    return {"commit": git("rev-parse", "HEAD"), "uncommitted": git("status", "--short", *paths).splitlines()}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="1,2,4", help="cluster sizes to time (default 1,2,4)")
    parser.add_argument("--repeat", type=int, default=5, help="starts per size and backend (default 5)")
    parser.add_argument("--etl-repeat", type=int, default=3, help="ETL runs per engine (default 3; 0: skip)")
    parser.add_argument("--subjects", type=int, default=51, help="WISDM subjects (default 51)")
    parser.add_argument(
        "--seconds", type=float, default=180, help="seconds per activity (default 180: full scale)"
    )
    parser.add_argument("--partitions", type=int, default=1, help="ETL partitions per sensor (default 1)")
    parser.add_argument("--output", type=Path, default=RESULTS / "cluster.json")
    args = parser.parse_args()
    workers = [int(n) for n in args.workers.split(",") if n]

    import wisdm  # bench/etl.py put notebooks/ on the path
    from dask_gateway import Gateway
    from dask_gateway.auth import BasicAuth, JupyterHubAuth

    RESULTS.mkdir(parents=True, exist_ok=True)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    results: dict = {
        "benchmark": "Dask clusters: time to N workers (EC2 backend vs local-process backend); WISDM ETL",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "uptime_at_start": uptime,
        "load_average_at_start": os.getloadavg(),
        "versions": versions(),
        "source": source(),
        "worker": {"size": WORKER_SIZE, "threads": SMALL["vcpu"], "memory_limit": WORKER_MEMORY},
    }
    print(uptime, flush=True)
    stack_log = RESULTS / "cluster-stack.log"
    with tempfile.TemporaryDirectory(prefix="ec2hub-bench-") as tmp, stack_log.open("w") as log:
        env = stack_env(Path(tmp) / "state", subnet_base=108)
        env["EC2HUB_DASK_LIMITS"] = json.dumps({"max_workers": 8, "max_cores": 64})
        stack = Stack(env, output=log)
        stack.start()
        try:
            client = approved_user(stack, USER)
            bucket = stack.outputs["bucket"]
            raw = "wisdm/raw"
            # Written here, put in the user's prefix as an administrator would (the bytes are the same).
            local_raw = Path(tmp) / "raw"
            generated = wisdm.generate_raw(str(local_raw), args.subjects, args.seconds, processes=2)
            s3 = aws_client(stack, "s3")
            prefix = f"{UserNames.of(USER).prefix}{raw}"
            for path in sorted(local_raw.rglob("*.txt")):
                s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(local_raw).as_posix()}")
            results["etl_data"] = {
                "subjects": args.subjects,
                "seconds_per_activity": args.seconds,
                "files": len(generated.files),
                "lines": generated.lines,
                "clean_rows": generated.clean_rows,
                "bytes": sum(p.stat().st_size for p in local_raw.rglob("*.txt")),
                "where": f"s3://<bucket>/{prefix}/ on the local cloud",
            }
            client.start(USER)
            client.wait_ready(USER, timeout=TIMEOUT)
            token = client.token(USER)
            with baseline_gateway(Path(tmp) / "baseline", RESULTS / "cluster-baseline.log") as (
                process,
                ports,
                password,
                clusters,
            ):
                ec2 = EC2Backend(
                    Gateway(
                        address=f"http://127.0.0.1:{env['EC2HUB_GATEWAY_PORT']}/services/dask-gateway",
                        proxy_address=f"gateway://127.0.0.1:{env['EC2HUB_GATEWAY_TCP_PORT']}",
                        auth=JupyterHubAuth(api_token=token),
                    ),
                    stack,
                    stack_log,
                )
                local = LocalBackend(
                    Gateway(
                        address=f"http://127.0.0.1:{ports['http']}",
                        proxy_address=f"gateway://127.0.0.1:{ports['tcp']}",
                        auth=BasicAuth(USER, password),
                    ),
                    process,
                    clusters,
                    RESULTS / "cluster-baseline.log",
                )
                results["startup"] = startup([ec2, local], workers, args.repeat)
            if args.etl_repeat:
                results["etl"] = etl(
                    stack, client, token, raw, generated.clean_rows, args.partitions, args.etl_repeat
                )
                results["etl"]["partitions_per_sensor"] = args.partitions
        finally:
            stack.stop()
    results["load_average_at_end"] = os.getloadavg()
    # Other engineers' test stacks share the machine: a 1-minute load above the cores is noted.
    results["load_high_at_start"] = results["load_average_at_start"][0] > len(os.sched_getaffinity(0))
    results["targets"] = targets(results, workers)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["targets"], indent=2))
    print(f"written {args.output}")
    return 0


def targets(results: dict, workers: list[int]) -> dict:
    found = {}
    startup_results = results.get("startup", {})
    ratios = {
        str(n): round(
            startup_results["ec2"][str(n)]["median_s"] / startup_results["local"][str(n)]["median_s"], 2
        )
        for n in workers
    }
    found["startup_ratio_ec2_to_local"] = ratios
    if "2" in ratios:
        found["startup_within_1_3x_at_2_workers"] = {
            "ratio": ratios["2"],
            "target": TARGET_STARTUP,
            "met": ratios["2"] <= TARGET_STARTUP,
        }
    if "etl" in results:
        ratio = round(results["etl"]["gateway"]["median_s"] / results["etl"]["localcluster"]["median_s"], 2)
        found["etl_within_1_25x"] = {"ratio": ratio, "target": TARGET_ETL, "met": ratio <= TARGET_ETL}
    return found


if __name__ == "__main__":
    sys.exit(main())
