"""The WISDM pipeline (pipelines/dags/wisdm.py) run by Apache Airflow's own `airflow dags test` against a
stack of its own: each task a notebook job of alice's, on an instance of its own, as her; what it writes
is in her folder and nowhere else; a quality failure stops it before the model; a failing job fails its
task after its retries with the job's error in the task's log; no instance is left running."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import expect

from hub.gateway import PREFIX as GATEWAY_PREFIX
from hub.gateway import addresses
from hub.settings import REPO_ROOT
from tests.browser.conftest import browser, new_page, screenshot  # noqa: F401 (fixtures)
from tests.e2e.stack import approved_user, aws_client, listen_port, running_stack, wait_for

AIRFLOW = REPO_ROOT / ".venv-airflow" / "bin" / "airflow"
FOLDER = "users/alice/pipelines/wisdm/"
# Small and quick: a 2-subject sample, a few epochs; the dataset's archive out of reach (as offline),
# so land_raw generates the sample.
QUICK = {
    "archive_url": "http://127.0.0.1:9/wisdm.zip",
    "sample_subjects": 2,
    "sample_seconds_per_activity": 4,
    "epochs": 5,
    "etl_size": "medium",
}
RAISES = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "raises",
            "metadata": {},
            "outputs": [],
            "source": ["raise RuntimeError('the archive is unreachable')"],
        }
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory, subnet_base=184, EC2HUB_JOBS_PERIOD="1") as stack:
        yield stack


def land_sample(stack, folder) -> None:
    """A raw sample in alice's folder, as land_raw leaves it (for the tests that mark land_raw done)."""
    sys.path.insert(0, str(REPO_ROOT / "notebooks"))
    try:
        import wisdm
    finally:
        sys.path.pop(0)
    wisdm.generate_raw(str(folder), subjects=QUICK["sample_subjects"], seconds_per_activity=4)
    s3 = aws_client(stack, "s3")
    for path in folder.rglob("*.txt"):
        key = f"users/alice/wisdm/raw/{path.relative_to(folder).as_posix()}"
        s3.put_object(Bucket=stack.outputs["bucket"], Key=key, Body=path.read_bytes())


@pytest.fixture(scope="module")
def alice(stack, tmp_path_factory):
    """alice, with an account on the platform (a first server start makes it), her token, the
    pipeline's notebooks in her S3 folder, as she would put them there from JupyterLab, and a raw
    sample landed there (each test passes alone: those that mark land_raw done read it)."""
    client = approved_user(stack, "alice")
    client.start("alice")
    client.wait_ready("alice", timeout=180)
    client.stop("alice")
    s3 = aws_client(stack, "s3")
    bucket = stack.outputs["bucket"]
    files = {
        "01-land-raw.ipynb": REPO_ROOT / "pipelines/dags/wisdm/01-land-raw.ipynb",
        "quality-gate.ipynb": REPO_ROOT / "pipelines/dags/wisdm/quality-gate.ipynb",
        "record-accuracy.ipynb": REPO_ROOT / "pipelines/dags/wisdm/record-accuracy.ipynb",
        "02-wisdm-etl.ipynb": REPO_ROOT / "notebooks/02-wisdm-etl.ipynb",
        "03-train-activity-model.ipynb": REPO_ROOT / "notebooks/03-train-activity-model.ipynb",
        "wisdm.py": REPO_ROOT / "notebooks/wisdm.py",
    }
    for name, path in files.items():
        s3.put_object(Bucket=bucket, Key=FOLDER + name, Body=path.read_bytes())
    land_sample(stack, tmp_path_factory.mktemp("raw"))
    return client, client.token("alice")


def airflow_env(stack, token: str, tmp_path) -> dict[str, str]:
    """Airflow with its state in `tmp_path`, the repository's DAGs and the connection to the hub as alice."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "EC2HUB_"))},
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "pipelines" / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_EC2HUB_DEFAULT": json.dumps(connection(stack, token)),
        "EC2HUB_PIPELINE_RETRY_DELAY": "1",
    }


def connection(stack, token: str) -> dict:
    """The hub as alice: its URL and her token; the gateway's addresses as her server sees them."""
    where = addresses(stack.settings, stack.env)
    gateway = {
        "gateway_address": f"{where.http_url}{GATEWAY_PREFIX}",
        "gateway_proxy_address": where.tcp_address,
    }
    return {
        "conn_type": "ec2hub",
        "host": stack.settings.url,
        "password": token,
        "extra": json.dumps(gateway),
    }


def dags_test(stack, token: str, tmp_path, conf: dict, *skip: str) -> tuple[str, str, dict[str, str]]:
    """`airflow dags test wisdm` with the connection to the hub as alice (the tasks `skip` only marked
    done): its output (the task logs), the run's state and each task's, as Airflow recorded them."""
    env = airflow_env(stack, token, tmp_path)

    def airflow(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(AIRFLOW), *arguments], env=env, capture_output=True, text=True, timeout=1200
        )

    assert airflow("db", "migrate").returncode == 0
    skipping = ["--mark-success-pattern", "|".join(skip)] if skip else []
    run = airflow("dags", "test", "wisdm", "--conf", json.dumps(conf), *skipping)

    def answer(*arguments: str):
        # The JSON is the last line: warnings may come before it.
        return json.loads(airflow(*arguments, "-o", "json").stdout.strip().splitlines()[-1])

    [dag_run] = answer("dags", "list-runs", "wisdm")
    tasks = answer("tasks", "states-for-dag-run", "wisdm", dag_run["run_id"])
    return run.stdout + run.stderr, dag_run["state"], {t["task_id"]: t["state"] for t in tasks}


def jobs_of(client, token: str) -> list[dict]:
    response = client.session.get(
        f"{client.base_url}/services/jobs/api/jobs",
        headers={"Authorization": f"token {token}"},
        params={"max_items": 1000},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["jobs"]


def keys(stack) -> set[str]:
    s3 = aws_client(stack, "s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=stack.outputs["bucket"])
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def running_job_instances(stack) -> list[dict]:
    ec2 = aws_client(stack, "ec2")
    filters = [
        {"Name": "tag:ec2hub:purpose", "Values": ["job"]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
    ]
    return [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]


@contextlib.contextmanager
def airflow_ui(env: dict[str, str]) -> Iterator[str]:
    """Airflow's API server and UI over the state in `env` (every visitor an admin, as in a local
    trial); its URL."""
    port = listen_port()
    env = {**env, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}
    # The DAG as the UI reads it (a scheduler's DAG processor would write it).
    reserialize = [str(AIRFLOW), "dags", "reserialize"]
    subprocess.run(reserialize, env=env, check=True, capture_output=True, timeout=300)
    server = subprocess.Popen(
        [str(AIRFLOW), "api-server", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return requests.get(f"{url}/api/v2/monitor/health", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_for(healthy, 180, "Airflow's API server")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def test_the_pipeline_runs_each_task_as_a_job_of_its_owner_and_writes_only_to_her_folder(
    stack,
    alice,
    tmp_path_factory,
    new_page,  # noqa: F811 (the browser tests' fixture)
):
    client, token = alice
    before = keys(stack)
    home = tmp_path_factory.mktemp("run")
    output, state, states = dags_test(stack, token, home, QUICK)
    assert state == "success", (states, output[-3000:])

    jobs = {j["name"].split(" ")[0]: j for j in jobs_of(client, token)}
    tasks = ("land_raw", "etl", "quality_gate", "model", "record_accuracy")
    assert [jobs[f"wisdm.{t}"]["status"] for t in tasks] == ["COMPLETED"] * 5
    # Each on an instance of its own, tagged for alice and its job.
    ec2 = aws_client(stack, "ec2")
    instances = set()
    for task in tasks:
        job = jobs[f"wisdm.{task}"]
        [reservation] = ec2.describe_instances(
            Filters=[{"Name": "tag:ec2hub:job", "Values": [job["job_id"]]}]
        )["Reservations"]
        [instance] = reservation["Instances"]
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert (tags["ec2hub:user"], tags["ec2hub:purpose"]) == ("alice", "job")
        instances.add(instance["InstanceId"])
    assert len(instances) == 5
    assert jobs["wisdm.etl"]["size"] == "medium"

    # The Parquet, the model and the record are in alice's folder, and nothing was written elsewhere.
    written = keys(stack) - before
    assert not [k for k in written if not k.startswith("users/alice/")], written
    assert any(
        k.startswith("users/alice/wisdm/parquet/readings/") and k.endswith(".parquet") for k in written
    )
    assert "users/alice/models/wisdm-activity.keras" in written
    history = (
        aws_client(stack, "s3")
        .get_object(Bucket=stack.outputs["bucket"], Key="users/alice/pipelines/wisdm/accuracy.csv")["Body"]
        .read()
        .decode()
    )
    assert re.fullmatch(r"run,accuracy\n\S+,[01]\.\d{4}\n", history), history
    wait_for(lambda: not running_job_instances(stack), 60, "no job instance left")

    # The run in Airflow's UI: the DAG's tasks and its run.
    with airflow_ui(airflow_env(stack, token, home)) as url:
        page = new_page()
        page.goto(f"{url}/dags/wisdm")
        for task in tasks:
            expect(page.get_by_text(task, exact=True).first).to_be_visible()
        screenshot(page, "airflow-dag")


def test_a_quality_failure_fails_the_gate_and_the_model_never_runs(stack, alice, tmp_path_factory):
    client, token = alice
    models_before = len([j for j in jobs_of(client, token) if j["name"].startswith("wisdm.model ")])
    # The ETL's quality report (the ETL itself marked done): a few rows dropped, when none may be.
    report = {"quality": {"rows_in": 2000, "malformed": 2, "duplicates": 1, "out_of_range": 1}}
    aws_client(stack, "s3").put_object(
        Bucket=stack.outputs["bucket"],
        Key="users/alice/wisdm/parquet/quality.json",
        Body=json.dumps(report).encode(),
    )
    output, state, states = dags_test(
        stack, token, tmp_path_factory.mktemp("gate"), {**QUICK, "max_dropped_share": 0}, "land_raw", "etl"
    )
    assert "quality gate: " in output and "of the rows dropped, more than 0.000%" in output
    assert state == "failed"
    assert states.get("quality_gate") == "failed", states
    assert states.get("model") == "upstream_failed" and states.get("record_accuracy") == "upstream_failed"
    assert len([j for j in jobs_of(client, token) if j["name"].startswith("wisdm.model ")]) == models_before
    wait_for(lambda: not running_job_instances(stack), 60, "no job instance left")


def test_a_failing_job_fails_its_task_after_its_retries_with_the_jobs_error(stack, alice, tmp_path_factory):
    client, token = alice
    s3 = aws_client(stack, "s3")
    bucket = stack.outputs["bucket"]
    land = FOLDER + "01-land-raw.ipynb"
    good = s3.get_object(Bucket=bucket, Key=land)["Body"].read()
    s3.put_object(Bucket=bucket, Key=land, Body=json.dumps(RAISES).encode())
    try:
        output, state, states = dags_test(stack, token, tmp_path_factory.mktemp("fails"), QUICK)
    finally:
        s3.put_object(Bucket=bucket, Key=land, Body=good)
    assert "RuntimeError: the archive is unreachable" in output
    assert "ALERT wisdm: land_raw failed" in output
    assert state == "failed"
    assert states.get("land_raw") == "failed" and states.get("etl") == "upstream_failed", states
    failed = [
        j
        for j in jobs_of(client, token)
        if j["name"].startswith("wisdm.land_raw ") and j["status"] == "FAILED"
    ]
    assert len(failed) == 3, "the first try and its two retries, each a job of its own"
    wait_for(lambda: not running_job_instances(stack), 60, "no job instance left")


def test_the_etl_runs_on_a_dask_cluster_of_its_owner_that_is_shut_down_after(stack, alice, tmp_path_factory):
    client, token = alice
    # The ETL alone, on a cluster (the raw sample is landed; the model is not retrained).
    output, state, states = dags_test(
        stack,
        token,
        tmp_path_factory.mktemp("dask"),
        {**QUICK, "etl_on": "dask", "etl_size": "small"},
        "^land_raw$",
        "^model$",
        "^record_accuracy$",
    )
    assert state == "success", (states, output[-3000:])
    assert (states["etl_on_dask"], states["etl"], states["quality_gate"]) == ("success", "skipped", "success")
    assert "Dask cluster" in output and "shut down" in output
    ec2 = aws_client(stack, "ec2")
    filters = [{"Name": "tag:ec2hub:purpose", "Values": ["dask-scheduler", "dask-worker"]}]
    instances = [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]
    assert instances and all(
        {t["Key"]: t["Value"] for t in i["Tags"]}["ec2hub:user"] == "alice" for i in instances
    )

    def cluster_gone() -> bool:
        described = ec2.describe_instances(Filters=filters)["Reservations"]
        return all(
            i["State"]["Name"] in ("shutting-down", "terminated") for r in described for i in r["Instances"]
        )

    wait_for(cluster_gone, 120, "the cluster's instances to end")
