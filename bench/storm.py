"""Start storm: 50 users' servers started at once on the local cloud; JSON to bench/results/storm.json.

Every server must reach JupyterLab's API through the proxy, none may fail, and once they are all
stopped no instance may still be billed. Meanwhile the hub's REST API is asked a question every
quarter second; its latency during the storm (p50, p95, max) is what users feel while it lasts.

    .venv/bin/python bench/storm.py [--users 50] [--subnet-base 172]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from localcloud.up import Stack  # noqa: E402
from tests.e2e.stack import admin_client, aws_client, stack_env, wait_for  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "storm.json"
SAMPLE_EVERY = 0.25
# Each user's client asks whether their server is ready this often (the spawn page follows one
# progress stream instead; a poll every 2 s is about as much load on the hub).
POLL_EVERY = 2.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(round(q * (len(ordered) - 1))), len(ordered) - 1)]


class HubApi:
    """The hub's REST API with an admin token (one sign-in, not one per thread)."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"token {token}"}

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(
            method, f"{self.base_url}/hub/api{path}", headers=self.headers, timeout=60, **kwargs
        )

    def server(self, user: str) -> dict | None:
        response = self.api("GET", f"/users/{user}")
        response.raise_for_status()
        return response.json()["servers"].get("")


class ApiSampler(threading.Thread):
    """Asks the hub's REST API for one user's model every SAMPLE_EVERY seconds; keeps the latencies."""

    def __init__(self, admin: HubApi, user: str) -> None:
        super().__init__(daemon=True)
        self.admin = admin
        self.user = user
        self.latencies: list[float] = []
        self.errors = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            began = time.perf_counter()
            try:
                ok = self.admin.api("GET", f"/users/{self.user}").status_code == 200
            except requests.RequestException:
                ok = False
            if ok:
                self.latencies.append(time.perf_counter() - began)
            else:
                self.errors += 1
            self.done.wait(SAMPLE_EVERY)


def wait_until(check, timeout: float, every: float):
    """`check()` every `every` seconds until it returns something truthy; TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done after {timeout:.0f}s")
        time.sleep(every)


def ready_or_gone(admin: HubApi, name: str):
    """The server once ready, "gone" once the hub gave up on it, else None (still starting)."""
    server = admin.server(name)
    if server is None:
        return "gone"
    return server if server.get("ready") else None


def billed_instances(stack: Stack) -> list[str]:
    ec2 = aws_client(stack, "ec2")
    filters = [
        {"Name": "tag:ec2hub:hub", "Values": [stack.outputs["hub_id"]]},
        {"Name": "instance-state-name", "Values": ["pending", "running"]},
    ]
    return [
        i["InstanceId"]
        for r in ec2.describe_instances(Filters=filters)["Reservations"]
        for i in r["Instances"]
    ]


def storm(users: int, subnet_base: int, state_dir: Path) -> dict:
    env = stack_env(state_dir, subnet_base)
    env.update(EC2HUB_IDLE_TIMEOUT="0")
    log = (state_dir / "stack.log").open("w")
    stack = Stack(env, output=log)
    stack.start()
    try:
        signed_in = admin_client(stack)
        admin = HubApi(stack.settings.url, signed_in.token(stack.settings.admin_user))
        names = [f"storm{i:02d}" for i in range(users)]
        created = admin.api("POST", "/users", json={"usernames": names})
        assert created.status_code == 201, created.text
        tokens = {}
        for name in names:
            response = admin.api("POST", f"/users/{name}/tokens", json={"note": "storm", "expires_in": 3600})
            assert response.status_code == 201, response.text
            tokens[name] = response.json()["token"]

        sampler = ApiSampler(admin, stack.settings.admin_user)
        sampler.start()
        began = time.perf_counter()
        ready_after: dict[str, float] = {}
        failures: dict[str, str] = {}

        def start_and_reach(name: str) -> None:
            response = admin.api("POST", f"/users/{name}/server")
            if response.status_code not in (201, 202):
                failures[name] = f"start: {response.status_code} {response.text[:200]}"
                return
            try:
                server = wait_until(lambda: ready_or_gone(admin, name), 900, every=POLL_EVERY)
            except TimeoutError as e:
                failures[name] = f"not ready: {e}"
                return
            if server == "gone":
                failures[name] = "start failed (see the hub log)"
                return
            lab = requests.get(
                f"{stack.settings.url}/user/{name}/api/status",
                headers={"Authorization": f"token {tokens[name]}"},
                timeout=60,
            )
            if lab.status_code != 200:
                failures[name] = f"JupyterLab API: {lab.status_code} {lab.text[:200]}"
                return
            ready_after[name] = time.perf_counter() - began

        with ThreadPoolExecutor(users) as pool:
            list(pool.map(start_and_reach, names))
        storm_seconds = time.perf_counter() - began
        sampler.done.set()
        sampler.join(timeout=10)

        stop_began = time.perf_counter()

        def stop(name: str) -> None:
            try:
                response = admin.api("DELETE", f"/users/{name}/server")
                assert response.status_code in (202, 204), response.text
                wait_for(lambda: admin.server(name) is None, 300, f"{name} to stop")
            except (AssertionError, requests.RequestException) as e:
                failures[f"{name} (stop)"] = str(e)

        with ThreadPoolExecutor(users) as pool:
            list(pool.map(stop, names))
        try:
            wait_for(lambda: not billed_instances(stack), 120, "every instance to stop")
        except AssertionError:
            pass
        leaked = billed_instances(stack)
        stop_seconds = time.perf_counter() - stop_began
        spawn_times = sorted(ready_after.values())
        return {
            "users": users,
            "reached_jupyterlab_api": len(ready_after),
            "failures": len(failures),
            "failure_details": failures,
            "leaked_instances_after_stop": len(leaked),
            "seconds_until_all_reached": round(storm_seconds, 1),
            "seconds_to_stop_all": round(stop_seconds, 1),
            "time_to_reach_seconds": {
                "p50": round(percentile(spawn_times, 0.5), 2),
                "p95": round(percentile(spawn_times, 0.95), 2),
                "max": round(max(spawn_times), 2) if spawn_times else None,
            },
            "hub_api_latency_during_storm_ms": {
                "samples": len(sampler.latencies),
                "errors": sampler.errors,
                "p50": round(statistics.median(sampler.latencies) * 1000, 1) if sampler.latencies else None,
                "p95": round(percentile(sampler.latencies, 0.95) * 1000, 1),
                "max": round(max(sampler.latencies) * 1000, 1) if sampler.latencies else None,
            },
        }
    finally:
        stack.stop()
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--subnet-base", type=int, default=172)
    parser.add_argument("--keep-state", action="store_true", help="keep the stack's state folder (logs)")
    args = parser.parse_args()
    state_dir = Path(tempfile.mkdtemp(prefix="ec2hub-storm-"))
    result = storm(args.users, args.subnet_base, state_dir)
    result["state_dir"] = str(state_dir) if args.keep_state else None
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not args.keep_state:
        import shutil

        shutil.rmtree(state_dir, ignore_errors=True)
    ok = result["failures"] == 0 and result["leaked_instances_after_stop"] == 0
    return 0 if ok and result["reached_jupyterlab_api"] == args.users else 1


if __name__ == "__main__":
    raise SystemExit(main())
