"""The hub at scale: 10,000 users and 1,000 running instances; how fast the admin's pages answer.

    .venv/bin/python bench/hub_scale.py [--users 10000] [--servers 1000] [--repeat 10]

A hub that has been in use is built in three steps: users are created through the hub's REST API,
the sign-up records NativeAuthenticator keeps for them are written beside (one shared password
hash: bcrypt of 10,000 passwords would take minutes and measures nothing), and 1,000 of them get a
server whose instance is launched in the local cloud, running and tagged as the spawner tags it.
The hub is then restarted on that database, as after an upgrade: it polls every server's instance,
checks that each server answers, and keeps them all. The instances boot no user-data; one process
answers HTTP at all their addresses in place of 1,000 Jupyter servers (bench/standin_servers.py).
The hub (jupyterhub_config.py), proxy, Instances service and EC2 API are the production ones.

Measured, as the signed-in admin: the hub's admin page and the REST API calls its table makes
(first page, a name search, only running servers, the last page), the sign-up approvals page, and
the Instances page (first page, next page, one user's); then in Chromium, from navigation until the
admin table shows its rows and until the Instances table is drawn. Writes
bench/results/hub_scale.json: p50, p95, max of each, the hub's restart time with 1,000 servers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from localcloud.up import Stack  # noqa: E402
from spawner.owner import DEFAULT_SERVER_TAG  # noqa: E402
from spawner.spawner import STATE_VERSION  # noqa: E402
from tests.e2e.stack import admin_client, aws_client, stack_env, wait_for  # noqa: E402

RESULTS = REPO / "bench" / "results"
TARGET_SECONDS = 1.0
BATCH = 500
# The port EC2Spawner's servers listen on (c.EC2Spawner.server_port's default).
JUPYTER_PORT = 8888


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 3),
        "p95": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 3),
        "max": round(ordered[-1], 3),
    }


def user_name(n: int) -> str:
    return f"user{n:05d}"


def create_users(admin, count: int) -> None:
    for start in range(0, count, BATCH):
        names = [user_name(n) for n in range(start, min(start + BATCH, count))]
        response = admin.api("POST", "/users", json={"usernames": names})
        assert response.status_code == 201, response.text


def launch_instances(stack: Stack, count: int) -> dict[str, dict]:
    """One running instance per server, tagged as EC2Spawner tags it: user name -> instance."""
    ec2 = aws_client(stack, "ec2")
    outputs = stack.outputs
    subnets = outputs["subnet_ids"]

    def launch(n: int) -> tuple[str, dict]:
        user = user_name(n)
        tags = {
            "Name": f"ec2hub-{user}",
            "ec2hub:hub": outputs["hub_id"],
            "ec2hub:user": user,
            "ec2hub:server": DEFAULT_SERVER_TAG,
        }
        response = ec2.run_instances(
            ImageId=outputs["ami_id"],
            InstanceType="t3.medium",
            MinCount=1,
            MaxCount=1,
            SubnetId=subnets[n % len(subnets)],
            SecurityGroupIds=outputs["security_group_ids"],
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
            ],
        )
        return user, response["Instances"][0]

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(launch, range(count)))


def answer_at(addresses: list[str], log) -> subprocess.Popen:
    """HTTP answers where the servers' Jupyter would listen, until killed."""
    process = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "standin_servers.py"), str(JUPYTER_PORT), *addresses],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    if process.stdout.readline().strip() != "ready":
        process.kill()
        raise RuntimeError("the stand-in servers did not start; see bench/results/hub_scale.log")
    return process


def seed_database(stack: Stack, users: int, instances: dict[str, dict]) -> None:
    """With the hub stopped: sign-up records for everyone, a running server for each instance."""
    import bcrypt
    from jupyterhub import orm
    from nativeauthenticator.orm import UserInfo

    db = stack.settings.state_dir / "hub" / "jupyterhub.sqlite"
    session = orm.new_session_factory(f"sqlite:///{db}")()
    shared_hash = bcrypt.hashpw(b"not a real password, never used", bcrypt.gensalt())
    known = {u for (u,) in session.query(UserInfo.username)}
    session.add_all(
        UserInfo(username=user_name(n), password=shared_hash, is_authorized=True)
        for n in range(users)
        if user_name(n) not in known
    )
    now = datetime.now(UTC).replace(tzinfo=None)
    for user in session.query(orm.User).filter(orm.User.name.in_(list(instances))):
        instance = instances[user.name]
        spawner = next((s for s in user._orm_spawners if s.name == ""), None)
        if spawner is None:
            spawner = orm.Spawner(name="", user=user)
            session.add(spawner)
        spawner.server = orm.Server(
            proto="http", ip=instance["PrivateIpAddress"], port=JUPYTER_PORT, base_url=f"/user/{user.name}/"
        )
        spawner.state = {"version": STATE_VERSION, "instance_id": instance["InstanceId"]}
        spawner.started = spawner.last_activity = now
        spawner.user_options = {"profile": "medium"}
        user.last_activity = now
    session.commit()
    session.close()


def timed(function, repeat: int) -> tuple[dict, object]:
    values, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        values.append(time.perf_counter() - start)
    return stats(values), result


def http_pages(stack: Stack, repeat: int, users: int) -> dict:
    admin = admin_client(stack)
    url = stack.settings.url
    xsrf = admin.session.cookies.get("_xsrf", "")
    session = admin.session

    def get(path: str, **params):
        def fetch():
            response = session.get(f"{url}{path}", params=params, timeout=60)
            response.raise_for_status()
            return response

        return fetch

    def api(query: dict):
        # What the admin page's table asks for (JupyterHub 6's admin app).
        base = {"include_stopped_servers": "", "offset": 0, "limit": 50, "name_filter": "", "sort": "id"}
        return get("/hub/api/users", **{**base, **query, "_xsrf": xsrf})

    # Once the hub has routed the service (after its 1,000 servers), through the hub's OAuth once,
    # as the admin's first visit does.
    wait_for(lambda: session.get(f"{url}/services/instances/", timeout=60).ok, 300, "the Instances page")
    results: dict[str, dict] = {}
    checks = {
        "admin page (HTML)": get("/hub/admin"),
        "admin table: first 50 users": api({}),
        "admin table: name search": api({"name_filter": "user0999"}),
        "admin table: running servers only": api({"state": "active"}),
        "admin table: last page": api({"offset": users - 50}),
        "sign-up approvals page": get("/hub/authorize"),
        "instances page: first page": get("/services/instances/"),
        "instances page: one user": get("/services/instances/", user=user_name(500)),
    }
    pages = {}
    for name, fetch in checks.items():
        results[name], pages[name] = timed(fetch, repeat)
    following = re.search(r'id="next-page" href="([^"]+)"', pages["instances page: first page"].text)
    assert following, "the first page of 1,000 instances links the next"
    results["instances page: next page"], _ = timed(get(following.group(1).replace("&amp;", "&")), repeat)
    first = pages["instances page: first page"].text
    results["_instances_on_first_page"] = len(re.findall(r"<tr data-instance-id=", first))
    billed = re.search(r"\((\d+) billed in the whole hub", first)
    results["_billed_at_last_check"] = billed.group(1) if billed else "no check yet"
    results["_authorize_page_bytes"] = len(pages["sign-up approvals page"].content)
    return results


def browser_pages(stack: Stack, repeat: int) -> dict:
    """From navigation until the admin sees the rows: what the 1 s is about."""
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM_ARGS, chromium_path

    url = stack.settings.url
    results = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page()
        page.goto(f"{url}/hub/login")
        page.fill("#username_input", stack.settings.admin_user)
        page.fill("#password_input", stack.settings.admin_password)
        page.click("#login_submit")
        page.wait_for_url("**/hub/**")
        page.goto(f"{url}/services/instances/")
        page.wait_for_selector("#instances tbody tr")

        def admin_table():
            page.goto(f"{url}/hub/admin")
            page.locator('[data-testid="user-row-name"]').nth(49).wait_for()

        def instances_table():
            page.goto(f"{url}/services/instances/")
            page.locator("#instances tbody tr").nth(49).wait_for()

        results["admin page until 50 rows show"], _ = timed(admin_table, repeat)
        results["instances page until 50 rows show"], _ = timed(instances_table, repeat)
        browser.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--servers", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--subnet-base", type=int, default=184)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    # Stopped with SIGTERM, the bench still stops the stack it started (the `finally` below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="ec2hub-scale-") as tmp:
        env = stack_env(Path(tmp) / "state", args.subnet_base)
        # 1,000 instances need more addresses than two /24s: two /22s of the local VPC (127.0.0.0/16).
        env["EC2HUB_LOCAL_SUBNETS"] = f"127.0.{args.subnet_base}.0/22,127.0.{args.subnet_base + 4}.0/22"
        env["EC2HUB_IDLE_TIMEOUT"] = "0"  # the seeded servers are idle by construction
        env["EC2HUB_RECONCILE_EVERY"] = "30"
        log_path = RESULTS / "hub_scale.log"
        with log_path.open("w") as log:
            stack = Stack(env, output=log)
            servers = None
            try:
                t0 = time.perf_counter()
                stack.start()
                admin = admin_client(stack)
                create_users(admin, args.users)
                created = time.perf_counter()
                instances = launch_instances(stack, args.servers)
                launched = time.perf_counter()
                servers = answer_at([i["PrivateIpAddress"] for i in instances.values()], log)
                stack.stop_hub()
                seed_database(stack, args.users, instances)
                restart = time.perf_counter()
                stack.start_hub()
                answering = time.perf_counter()

                admin = admin_client(stack)

                def all_running():
                    response = admin.session.get(
                        f"{stack.settings.url}/hub/api/users",
                        params={"state": "ready", "limit": 1},
                        headers={"Accept": "application/jupyterhub-pagination+json"},
                        timeout=60,
                    )
                    page = response.json() if response.ok else {}
                    return page.get("_pagination", {}).get("total") == args.servers

                wait_for(all_running, 600, f"the hub to keep all {args.servers} servers")
                kept = time.perf_counter()
                setup = {
                    "create_users_s": round(created - t0, 1),
                    "launch_instances_s": round(launched - created, 1),
                    "hub_restart_until_api_answers_s": round(answering - restart, 2),
                    "hub_restart_until_all_servers_kept_s": round(kept - restart, 2),
                }
                print(json.dumps(setup), flush=True)
                pages = http_pages(stack, args.repeat, args.users)
                print(json.dumps(pages, indent=1), flush=True)
                browser = browser_pages(stack, args.repeat)
            finally:
                stack.stop()
                if servers is not None:
                    servers.kill()
                    servers.wait(timeout=30)
    timings = {k: v for k, v in {**pages, **browser}.items() if not k.startswith("_")}
    result = {
        "bench": "hub_scale",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "users": args.users,
        "servers": args.servers,
        "setup": setup,
        "seconds": timings,
        "notes": {k.strip("_"): v for k, v in pages.items() if k.startswith("_")},
        "target_s": TARGET_SECONDS,
        "over_target": sorted(k for k, v in timings.items() if v["p50"] >= TARGET_SECONDS),
    }
    out = RESULTS / "hub_scale.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
