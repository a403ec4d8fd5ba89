"""DaskClusterOperator and Ec2hubDaskHook: the callable runs on the cluster's worker and the cluster is
shut down whatever happens (a fake gateway whose clusters are Dask clusters in this process); the
gateway client is made from the connection; a DAG file's callable travels by value."""

from __future__ import annotations

import json
import subprocess
import sys

import cloudpickle
import pytest
from dask_gateway import JupyterHubAuth
from distributed import Client, LocalCluster, get_worker
from ec2hub_airflow.gateway import DaskClusterOperator, Ec2hubDaskHook, module_to_ship, pickled_call
from ec2hub_airflow.hooks import Ec2hubError


class FakeCluster:
    """A cluster the fake gateway connected to: a Dask cluster in this process."""

    def __init__(self, name: str, gateway: FakeGateway) -> None:
        self.name = name
        self.gateway = gateway

    async def __aenter__(self) -> FakeCluster:
        self.local = await LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None, asynchronous=True
        )
        return self

    async def __aexit__(self, *exc) -> None:
        await self.local.close()

    async def scale(self, n: int) -> None:
        self.gateway.scaled.append(n)

    def get_client(self, set_as_default: bool = True) -> Client:
        return Client(self.local, set_as_default=set_as_default, asynchronous=True)


class FakeGateway:
    """dask-gateway's Gateway, asynchronous, recording what it was asked."""

    def __init__(self) -> None:
        self.submitted: list[dict] = []
        self.scaled: list[int] = []
        self.stopped: list[str] = []
        self.closed = False

    async def __aenter__(self) -> FakeGateway:
        return self

    async def __aexit__(self, *exc) -> None:
        self.closed = True

    async def submit(self, **options) -> str:
        self.submitted.append(options)
        return "ec2hub.5f0c6b0e"

    def connect(self, name: str) -> FakeCluster:
        return FakeCluster(name, self)

    async def stop_cluster(self, name: str) -> None:
        self.stopped.append(name)


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    fake = FakeGateway()
    monkeypatch.setattr(Ec2hubDaskHook, "gateway", lambda self, asynchronous=False: fake)
    return fake


def rows_kept(rows: int, *, dropped: int) -> dict:
    return {"kept": rows - dropped, "on_a_worker": bool(get_worker().address)}


def bad_rows(rows: int) -> None:
    raise ValueError(f"{rows} rows and no header")


def test_the_callable_runs_on_a_worker_of_a_new_cluster_that_is_then_shut_down(gateway):
    task = DaskClusterOperator(
        task_id="etl",
        python_callable=rows_kept,
        op_args=[1000],
        op_kwargs={"dropped": 12},
        workers=3,
        cluster_options={"worker_size": "medium", "idle_timeout": 600},
    )

    assert task.execute({}) == {"kept": 988, "on_a_worker": True}
    submitted = {"unattended": True, "worker_size": "medium", "idle_timeout": 600}
    assert gateway.submitted == [submitted] and gateway.scaled == [3]
    assert gateway.stopped == ["ec2hub.5f0c6b0e"] and gateway.closed


def test_a_callable_that_fails_fails_the_task_and_the_cluster_is_shut_down_all_the_same(gateway):
    task = DaskClusterOperator(task_id="etl", python_callable=bad_rows, op_args=[7])

    with pytest.raises(ValueError, match="7 rows and no header"):
        task.execute({})
    assert gateway.stopped == ["ec2hub.5f0c6b0e"]


async def test_a_task_killed_while_its_cluster_runs_shuts_it_down(gateway):
    task = DaskClusterOperator(task_id="etl", python_callable=bad_rows)
    task.cluster_name = "ec2hub.5f0c6b0e"

    task.on_kill()  # as Airflow's signal handler calls it: while the task's event loop runs

    assert gateway.stopped == ["ec2hub.5f0c6b0e"]


async def test_the_gateway_client_has_the_connections_addresses_and_the_owners_token(jobs_service):
    async with Ec2hubDaskHook().gateway(asynchronous=True) as gateway:
        assert gateway.address == f"{jobs_service.url}/services/dask-gateway"
        assert gateway.proxy_address == "gateway://127.0.0.1:1"
        assert isinstance(gateway.auth, JupyterHubAuth) and gateway.auth.api_token == jobs_service.token


def test_a_connection_without_the_gateways_address_says_what_it_lacks(jobs_service, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_EC2HUB_BARE", json.dumps({"conn_type": "ec2hub", "host": jobs_service.url})
    )
    with pytest.raises(Ec2hubError, match="'ec2hub_bare' has no gateway_address"):
        Ec2hubDaskHook("ec2hub_bare").gateway()


def test_a_dag_files_callable_travels_by_value_and_installed_code_by_name():
    assert module_to_ship(rows_kept) is sys.modules[rows_kept.__module__]
    assert module_to_ship(json.dumps) is None
    assert module_to_ship(Client) is None


def test_a_dag_files_callable_runs_from_its_pickle_where_its_module_cannot_be_imported(tmp_path):
    try:
        call = pickled_call(bad_rows, [3], {})
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[bad_rows.__module__])
    code = "import pickle, sys\ntry:\n    pickle.loads(sys.stdin.buffer.read())\nexcept ValueError as e:\n"
    code += "    print(e)"
    ran = subprocess.run([sys.executable, "-c", code], input=call, capture_output=True, cwd=tmp_path)
    assert ran.stdout.decode().strip() == "3 rows and no header", ran.stderr.decode()[-500:]
