"""Spawn-to-ready latency: EC2Spawner on the local cloud against JupyterHub's local-process spawner.

    .venv/bin/python bench/spawn.py [--sequential 8] [--concurrent 10,50] [--sizes small] [--hot-pool 0]

"Ready" is the user's Jupyter server answering its API through the proxy, measured from the start
request. Both spawners run on the same hub (jupyterhub_config.py; the baseline swaps in
SimpleLocalProcessSpawner, see bench/baseline_config.py) with the same single-user server. For
EC2Spawner the hub's log gives each start's phases (identity, AWS calls, boot, Jupyter start); the
rest of the time to ready is the hub and proxy finishing the start ("hub"). Writes
bench/results/spawn.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from localcloud.up import Stack  # noqa: E402
from tests.e2e.stack import admin_client, aws_client, stack_env  # noqa: E402

RESULTS = REPO / "bench" / "results"
TIMING = re.compile(r"Spawn timing of (\S+) \(seconds\): (\{.*\})")
READY_TIMEOUT = 300


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 3),
        "p95": round(pick(0.95), 3),
        "max": round(ordered[-1], 3),
    }


class Bench:
    def __init__(self, stack: Stack, size: str) -> None:
        self.stack = stack
        self.url = stack.settings.url
        self.size = size
        admin = admin_client(stack)
        self.headers = {"Authorization": f"token {admin.token(stack.settings.admin_user)}"}

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(
            method, f"{self.url}/hub/api{path}", headers=self.headers, timeout=60, **kwargs
        )

    def create_users(self, names: list[str]) -> None:
        response = self.api("POST", "/users", json={"usernames": names})
        assert response.status_code in (201, 409), response.text

    def spawn(self, user: str, poll: float) -> float:
        """Seconds from the start request to the server's API answering through the proxy."""
        started = time.monotonic()
        response = self.api("POST", f"/users/{user}/server", json={"size": self.size})
        assert response.status_code in (201, 202), f"{user}: {response.status_code} {response.text}"
        deadline = started + READY_TIMEOUT
        while time.monotonic() < deadline:
            answer = requests.get(
                f"{self.url}/user/{user}/api", headers=self.headers, allow_redirects=False, timeout=30
            )
            if answer.status_code == 200 and "version" in answer.text:
                return time.monotonic() - started
            time.sleep(poll)
        raise TimeoutError(f"{user}'s server was not ready within {READY_TIMEOUT}s")

    def stop(self, user: str) -> None:
        self.api("DELETE", f"/users/{user}/server")
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if not self.api("GET", f"/users/{user}").json()["servers"]:
                return
            time.sleep(0.2)
        raise TimeoutError(f"{user}'s server did not stop within {READY_TIMEOUT}s")

    def run(self, prefix: str, sequential: int, concurrent: list[int]) -> dict:
        result: dict = {}
        users = [f"{prefix}-seq-{i}" for i in range(sequential)]
        self.create_users(users)
        times = []
        for user in users:
            times.append(self.spawn(user, poll=0.02))
            self.stop(user)
        result["sequential"] = {**percentiles(times), "seconds": [round(t, 3) for t in times]}
        for n in concurrent:
            users = [f"{prefix}-c{n}-{i}" for i in range(n)]
            self.create_users(users)
            with ThreadPoolExecutor(max_workers=n) as pool:
                times = list(pool.map(lambda u: self.spawn(u, poll=0.1), users))
            with ThreadPoolExecutor(max_workers=n) as pool:
                list(pool.map(self.stop, users))
            result[f"concurrent_{n}"] = percentiles(times)
        return result


def wait_for_pool(ec2, size: str, count: int) -> None:
    """Until `count` pool instances of `size` run and their bootstrap waits for a claim."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        filters = [
            {"Name": "tag:ec2hub:pool", "Values": [size]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
        found = [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]
        waiting = [
            i
            for i in found
            if "waiting to be claimed" in ec2.get_console_output(InstanceId=i["InstanceId"]).get("Output", "")
        ]
        if len(waiting) >= count:
            return
        time.sleep(0.5)
    raise TimeoutError(f"the hot pool did not fill with {count} {size} instances")


def hot_pool_run(stack: Stack, size: str, pool: int, spawns: int) -> dict:
    """Sequential starts that each find a full pool (the pool refills between them)."""
    stack.stop_hub()
    stack.env["EC2HUB_HOT_POOL"] = f"{size}={pool}"
    stack.start_hub()
    bench = Bench(stack, size)
    ec2 = aws_client(stack, "ec2")
    # The hub starts the pool keeper; one start (not measured) waits for the pool to come up.
    bench.create_users(["pool-warmup"])
    bench.spawn("pool-warmup", poll=0.1)
    users = [f"hot-{i}" for i in range(spawns)]
    bench.create_users(users)
    times = []
    for user in users:
        wait_for_pool(ec2, size, pool)
        times.append(bench.spawn(user, poll=0.02))
        bench.stop(user)
    bench.stop("pool-warmup")
    return {**percentiles(times), "pool": pool, "seconds": [round(t, 3) for t in times]}


def phases_from_log(log: Path, users: set[str]) -> dict[str, dict]:
    found: dict[str, list[float]] = {}
    for line in log.read_text(errors="replace").splitlines():
        match = TIMING.search(line)
        if match and match.group(1) in users:
            for phase, seconds in json.loads(match.group(2)).items():
                found.setdefault(phase, []).append(seconds)
    return {phase: percentiles(values) for phase, values in found.items()}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sequential", type=int, default=8, help="starts one after another (default 8)")
    parser.add_argument(
        "--concurrent", default="10,50", help="sizes of the simultaneous waves (default 10,50)"
    )
    parser.add_argument("--size", default="small", help="size slug to start (default small)")
    parser.add_argument("--hot-pool", type=int, default=2, help="pool size for the hot-pool run (0: skip)")
    parser.add_argument("--output", type=Path, default=RESULTS / "spawn.json")
    args = parser.parse_args()
    concurrent = [int(n) for n in args.concurrent.split(",") if n]

    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "machine": {"cpus": len(__import__("os").sched_getaffinity(0)), "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "size": args.size,
    }
    ec2: dict = {}
    with tempfile.TemporaryDirectory(prefix="ec2hub-bench-") as tmp:
        log_path = RESULTS / "spawn-stack.log"  # the hub's and the local cloud's output, for a look after
        with log_path.open("w") as log:
            stack = Stack(stack_env(Path(tmp) / "state", subnet_base=100), output=log)
            stack.start()
            try:
                ec2 = Bench(stack, args.size).run("ec2", args.sequential, concurrent)
                ec2_users = {f"ec2-seq-{i}" for i in range(args.sequential)}
                ec2["phases_sequential"] = phases_from_log(log_path, ec2_users)
                if args.hot_pool:
                    ec2["hot_pool_sequential"] = hot_pool_run(
                        stack, args.size, args.hot_pool, args.sequential
                    )
                    hot_users = {f"hot-{i}" for i in range(args.sequential)}
                    ec2["phases_hot_pool"] = phases_from_log(log_path, hot_users)
                    del stack.env["EC2HUB_HOT_POOL"]
                stack.stop_hub()
                stack.config_file = REPO / "bench" / "baseline_config.py"
                stack.start_hub()
                baseline = Bench(stack, args.size).run("local", args.sequential, concurrent)
            except BaseException:
                args.output.with_suffix(".partial.json").write_text(
                    json.dumps({**results, "ec2spawner": ec2})
                )
                raise
            finally:
                stack.stop()
    results["ec2spawner"] = ec2
    results["local_process_baseline"] = baseline
    results["ratio_to_baseline_p50"] = {
        key: round(ec2[key]["p50"] / baseline[key]["p50"], 2) for key in baseline if key in ec2
    }
    results["overhead_over_baseline_p50_seconds"] = round(
        ec2["sequential"]["p50"] - baseline["sequential"]["p50"], 3
    )
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
