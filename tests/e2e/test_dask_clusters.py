"""Dask clusters from a notebook: dask-gateway behind the hub, the EC2 backend launching the user's
own instances on the local cloud (moto over HTTP with IAM enforcement), as a user would use them."""

from __future__ import annotations

import json
import textwrap

import pytest
import requests

from tests.e2e.kernel import Kernel
from tests.e2e.stack import approved_user, aws_client, wait_for
from tests.faults.harness import Switches, running_fault_stack

pytestmark = pytest.mark.e2e

CLUSTER_PURPOSES = ("dask-scheduler", "dask-worker")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    settings = {
        "EC2HUB_DASK_WATCH_PERIOD": "1",
        "EC2HUB_DASK_STATUS_PERIOD": "1",
        "EC2HUB_DASK_IDLE_TIMEOUT_MIN": "1",
        # alice's groups: 3 workers per cluster at most, 2 clusters.
        "EC2HUB_DASK_LIMITS": json.dumps({"max_workers": 3, "max_cores": 12, "max_clusters": 2}),
    }
    with running_fault_stack(tmp_path_factory, subnet_base=190, **settings) as stack:
        s3 = aws_client(stack, "s3")
        bucket = stack.outputs["bucket"]
        s3.put_object(Bucket=bucket, Key="users/alice/numbers.csv", Body=b"x\n1\n2\n3\n")
        s3.put_object(Bucket=bucket, Key="users/bob/secret.csv", Body=b"x\n42\n")
        yield stack


def start_kernel(stack, user: str) -> Kernel:
    client = approved_user(stack, user)
    if not (client.server(user) or {}).get("ready"):
        client.start(user)
        client.wait_ready(user)
    return Kernel(stack.settings.url, user, client.token(user), timeout=240)


@pytest.fixture(scope="module")
def alice(stack):
    return start_kernel(stack, "alice")


@pytest.fixture(scope="module")
def bob(stack):
    return start_kernel(stack, "bob")


def run(kernel: Kernel, code: str) -> dict:
    result = kernel.run(textwrap.dedent(code))
    assert result.ok, result.errors
    return json.loads(result.stdout.strip().splitlines()[-1])


def cluster_instances(stack, cluster: str | None = None) -> list[dict]:
    ec2 = aws_client(stack, "ec2")
    response = ec2.describe_instances(
        Filters=[
            {"Name": "tag:ec2hub:purpose", "Values": list(CLUSTER_PURPOSES)},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
    )
    found = [i for r in response["Reservations"] for i in r["Instances"]]
    tags = [{t["Key"]: t["Value"] for t in i.get("Tags", [])} for i in found]
    return [
        i for i, t in zip(found, tags, strict=True) if cluster is None or t.get("ec2hub:cluster") == cluster
    ]


STOP_ALL = """
from dask_gateway import Gateway
for c in Gateway().list_clusters():
    Gateway().stop_cluster(c.name)
print("{}")
"""


@pytest.fixture(autouse=True)
def no_cluster_instance_left(request, stack):
    yield
    # A failed test may leave its clusters: stopped here, so that the next test starts clean.
    for user in ("alice", "bob"):
        if user in request.fixturenames:
            request.getfixturevalue(user).run(STOP_ALL)
    wait_for(lambda: not cluster_instances(stack), 120, "every cluster instance to be terminated")


def test_alice_scales_out_on_her_own_instances(stack, alice):
    started = run(
        alice,
        """
        import json
        from dask_gateway import Gateway
        gateway = Gateway()
        cluster = gateway.new_cluster()
        cluster.scale(2)
        client = cluster.get_client()
        client.wait_for_workers(2, timeout=180)
        print(json.dumps({"name": cluster.name, "workers": len(client.scheduler_info()["workers"]),
                          "dashboard": cluster.dashboard_link}))
        """,
    )
    assert started["workers"] == 2
    instances = cluster_instances(stack, started["name"])
    purposes = sorted({t["Key"]: t["Value"] for t in i["Tags"]}["ec2hub:purpose"] for i in instances)
    assert purposes == ["dask-scheduler", "dask-worker", "dask-worker"]
    for instance in instances:
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["ec2hub:user"] == "alice"
        assert instance["IamInstanceProfile"]["Arn"].endswith("/ec2hub-alice")
        assert instance["MetadataOptions"]["HttpTokens"] == "required"

    # Code on the workers reaches S3 as the notebook does: her prefix, not bob's.
    reads = run(
        alice,
        """
        import os, boto3, pandas as pd
        def read_mine():
            return int(pd.read_csv(os.environ["EC2HUB_DATA_URL"] + "numbers.csv")["x"].sum())
        def read_bobs():
            try:
                boto3.client("s3").get_object(Bucket=os.environ["EC2HUB_BUCKET"], Key="users/bob/secret.csv")
                return "allowed"
            except Exception as e:
                return getattr(e, "response", {}).get("Error", {}).get("Code", type(e).__name__)
        workers = list(client.scheduler_info()["workers"])
        print(json.dumps({"mine": client.submit(read_mine, workers=workers[:1], pure=False).result(),
                          "bobs": client.submit(read_bobs, workers=workers[:1], pure=False).result()}))
        """,
    )
    assert reads == {"mine": 6, "bobs": "AccessDenied"}

    # The dashboard is served through the hub, to alice once signed in.
    assert started["dashboard"].startswith(f"{stack.settings.url}/services/dask-dashboards/clusters/")
    status = approved_user(stack, "alice").session.get(started["dashboard"], timeout=30)
    assert status.status_code == 200 and "Dask" in status.text

    run(alice, "cluster.shutdown(); print(json.dumps({}))")


@pytest.fixture(scope="module")
def switches(stack):
    return Switches(stack)


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).ok
    except requests.ConnectionError:
        return False


def stack_log(stack) -> str:
    return (stack.settings.state_dir / "stack.log").read_text(errors="replace")


def new_cluster(kernel: Kernel, var: str, workers: int = 0, **options) -> str:
    """A cluster of `kernel`'s user, kept in the kernel as `var`; returns its name."""
    started = run(
        kernel,
        f"""
        import json
        from dask_gateway import Gateway
        gateway = Gateway()
        {var} = gateway.new_cluster(**{options!r})
        if {workers}:
            {var}.scale({workers})
            {var}_client = {var}.get_client()
            {var}_client.wait_for_workers({workers}, timeout=180)
        print(json.dumps({{"name": {var}.name}}))
        """,
    )
    return started["name"]


def test_bob_can_neither_see_nor_reach_nor_change_alices_cluster(stack, alice, bob):
    name = new_cluster(alice, "shared_secret", workers=1)
    scheduler = next(
        i
        for i in cluster_instances(stack, name)
        if {t["Key"]: t["Value"] for t in i["Tags"]}["ec2hub:purpose"] == "dask-scheduler"
    )
    tried = run(
        bob,
        f"""
        import json, os
        from dask_gateway import Gateway
        from distributed import Client
        from distributed.security import Security
        gateway = Gateway()
        def outcome(call):
            try:
                call()
                return "allowed"
            except Exception as e:
                return type(e).__name__ + ": " + str(e)[:200]
        print(json.dumps({{
            "listed": [c.name for c in gateway.list_clusters()],
            "connect": outcome(lambda: gateway.connect("{name}")),
            "scale": outcome(lambda: gateway.scale_cluster("{name}", 3)),
            "stop": outcome(lambda: gateway.stop_cluster("{name}")),
            "scheduler": outcome(lambda: Client("tls://{scheduler["PrivateIpAddress"]}:8786",
                                                security=Security.temporary(), timeout=10)),
            # The gateway's proxy itself, which his server reaches, with the cluster's name.
            "proxy": __import__("requests").get(
                os.environ["DASK_GATEWAY__ADDRESS"] + "/clusters/{name}/status", timeout=10).status_code,
        }}))
        """,
    )
    assert name not in tried["listed"]
    for action in ("connect", "scale", "stop"):
        assert "lacks permissions" in tried[action] or "Forbidden" in tried[action], tried
    assert tried["scheduler"] != "allowed"
    assert tried["proxy"] == 404
    # Nor its dashboard, signed in or not, even with the link.
    dashboard = f"{stack.settings.url}/services/dask-dashboards/clusters/{name}/status"
    assert approved_user(stack, "bob").session.get(dashboard, timeout=30).status_code == 404
    anonymous = requests.get(dashboard, timeout=30)
    assert "/hub/login" in anonymous.url and "Dask" not in anonymous.text
    assert approved_user(stack, "alice").session.get(dashboard, timeout=30).status_code == 200
    # Alice's cluster is untouched: still one worker, still computing.
    check = run(alice, "print(json.dumps({'sum': shared_secret_client.submit(sum, [1, 2]).result()}))")
    assert check == {"sum": 3}
    assert len(cluster_instances(stack, name)) == 2
    run(alice, "shared_secret.shutdown(); print('{}')")


def test_requests_over_the_groups_limits_are_clamped_or_refused_with_a_message(stack, alice):
    first = new_cluster(alice, "big")
    clamped = run(
        alice,
        """
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            big.scale(20)
        print(json.dumps({"messages": [str(w.message) for w in caught]}))
        """,
    )
    assert any("exceed" in m and "3 workers" in m for m in clamped["messages"]), clamped
    second = new_cluster(alice, "another")
    refused = run(
        alice,
        """
        try:
            gateway.new_cluster()
            outcome = "created"
        except Exception as e:
            outcome = str(e)
        print(json.dumps({"outcome": outcome}))
        """,
    )
    assert "most your groups allow" in refused["outcome"], refused
    assert {first, second} <= {
        c for c in run(alice, "print(json.dumps([c.name for c in gateway.list_clusters()]))")
    }
    run(alice, "big.shutdown(); another.shutdown(); print('{}')")


def test_an_idle_cluster_ends_and_its_instances_terminate(stack, alice):
    name = new_cluster(alice, "idle", idle_timeout=2)
    wait_for(lambda: not cluster_instances(stack, name), 120, "the idle cluster's instances to terminate")
    status = run(alice, f'print(json.dumps({{"status": gateway.get_cluster("{name}").status.name}}))')
    assert "STOPPED" in status["status"]


def test_a_worker_whose_boot_fails_is_replaced_and_reported(stack, alice, switches):
    name = new_cluster(alice, "flaky")
    switches.set("boot/fail", count=1)
    try:
        run(alice, "flaky.scale(1); flaky.get_client().wait_for_workers(1, timeout=180); print('{}')")
    finally:
        switches.reset()
    assert "failed to boot" in stack_log(stack)
    ec2 = aws_client(stack, "ec2")
    workers = [
        i
        for r in ec2.describe_instances(Filters=[{"Name": "tag:ec2hub:cluster", "Values": [name]}])[
            "Reservations"
        ]
        for i in r["Instances"]
        if {t["Key"]: t["Value"] for t in i["Tags"]}["ec2hub:purpose"] == "dask-worker"
    ]
    states = sorted(i["State"]["Name"] for i in workers)
    assert states == ["running", "terminated"], "the failed worker is gone and another runs"
    run(alice, "flaky.shutdown(); print('{}')")


def test_a_hub_restart_leaves_a_running_cluster_usable(stack, alice):
    name = new_cluster(alice, "lasting", workers=1)
    stack.stop_hub()
    stack.start_hub()
    health = f"http://127.0.0.1:{stack.env['EC2HUB_GATEWAY_PORT']}/services/dask-gateway/api/health"
    wait_for(lambda: answers(health), 60, "the gateway to answer again")
    after = run(
        alice,
        f"""
        again = Gateway().connect("{name}")
        again_client = again.get_client()
        print(json.dumps({{"sum": again_client.submit(sum, [4, 5]).result(timeout=60),
                          "workers": len(again_client.scheduler_info()["workers"])}}))
        """,
    )
    assert after == {"sum": 9, "workers": 1}
    run(alice, "again.shutdown(); print('{}')")


def test_stopping_a_users_server_ends_their_clusters(stack):
    carol = start_kernel(stack, "carol")
    name = new_cluster(carol, "mine", workers=1)
    approved_user(stack, "carol").stop("carol")
    wait_for(lambda: not cluster_instances(stack, name), 120, "carol's cluster instances to terminate")
