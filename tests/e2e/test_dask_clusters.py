"""Dask clusters from a notebook: dask-gateway behind the hub, the EC2 backend launching the user's
own instances on the local cloud (moto over HTTP with IAM enforcement), as a user would use them."""

from __future__ import annotations

import json
import textwrap

import pytest
import requests

from tests.e2e.kernel import Kernel
from tests.e2e.stack import approved_user, aws_client, wait_for
from tests.faults.harness import running_fault_stack

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


@pytest.fixture(autouse=True)
def no_cluster_instance_left(request, stack):
    yield
    if "stack" in request.fixturenames:
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

    # The dashboard is served through the hub.
    status = requests.get(started["dashboard"], timeout=30)
    assert status.status_code == 200 and "Dask" in status.text

    run(alice, "cluster.shutdown(); print(json.dumps({}))")
