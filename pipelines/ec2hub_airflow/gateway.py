"""Dask clusters of the hub's dask-gateway for Airflow tasks, as the `ec2hub` connection's owner:
Ec2hubDaskHook opens one and always shuts it down; DaskClusterOperator runs a Python callable on it.

The callable runs on one of the cluster's workers, an instance with the owner's role, so it reaches the
owner's S3 folder while the Airflow worker never does; inside it, `distributed.worker_client()` spreads
work over the cluster. Its result is the task's XCom. Needs the `dask` extra (dask-gateway, and the
distributed of the user image: client and cluster must run the same).
"""

from __future__ import annotations

import asyncio
import functools
import pickle
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import cached_property
from importlib.metadata import packages_distributions
from types import ModuleType
from typing import Any

from airflow.sdk import BaseOperator

from ec2hub_airflow.hooks import Ec2hubError, Ec2hubHook

KILL_TIMEOUT = 60.0  # seconds for a killed task's cluster to be stopped


def module_to_ship(function: Callable) -> ModuleType | None:
    """The module to send by value with `function`: a DAG file's, which the cluster cannot import by
    name (Airflow loads DAG files under names of its own). Installed packages and the standard library
    go by name: the cluster has them (the user image); cloudpickle sends __main__ by value already."""
    module = sys.modules.get(getattr(function, "__module__", None) or "")
    if module is None or module.__name__ == "__main__":
        return None
    top = module.__name__.partition(".")[0]
    if top in sys.stdlib_module_names or top in packages_distributions():
        return None
    return module


class RunsWhenLoaded:
    """A call that pickles as itself: loading the pickle makes the call, and returns its result."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call

    def __reduce__(self) -> tuple[Callable[[], Any], tuple]:
        return self.call, ()


def pickled_call(function: Callable, args: Sequence[Any], kwargs: dict[str, Any]) -> bytes:
    """`function(*args, **kwargs)` as a pickle that a worker runs with `pickle.loads` (it needs only
    cloudpickle there). Dask itself pickles a task with plain pickle first, which sends a function by
    name, so a DAG file's function would not load on the cluster: cloudpickle sends its module by value."""
    import cloudpickle

    module = module_to_ship(function)
    if module is not None:
        cloudpickle.register_pickle_by_value(module)
    return cloudpickle.dumps(RunsWhenLoaded(functools.partial(function, *args, **kwargs)))


class Ec2hubDaskHook(Ec2hubHook):
    """The hub's dask-gateway (the connection's gateway_address and gateway_proxy_address)."""

    hook_name = "ec2hub dask-gateway"

    def gateway(self, *, asynchronous: bool = False) -> Any:
        try:
            from dask_gateway import Gateway, JupyterHubAuth
        except ImportError:
            raise Ec2hubError("dask-gateway is missing here: pip install 'ec2hub-airflow[dask]'.") from None
        address = self.connection_field("gateway_address")
        if not address:
            raise Ec2hubError(
                f"The connection {self.ec2hub_conn_id!r} has no gateway_address: the hub's dask-gateway, "
                "as DASK_GATEWAY__ADDRESS shows it in a user's server."
            )
        return Gateway(
            address=address,
            proxy_address=self.connection_field("gateway_proxy_address"),
            auth=JupyterHubAuth(api_token=self.token),
            asynchronous=asynchronous,
        )

    @asynccontextmanager
    async def cluster(self, *, workers: int = 2, options: dict[str, Any] | None = None) -> AsyncIterator[Any]:
        """A new cluster of `workers` workers with the gateway's `options` (worker_size, spot,
        idle_timeout; unattended unless the options say otherwise, since the owner's server need not
        run), shut down on the way out whatever happens, once its name is known.

        Asynchronous: dask-gateway's blocking client closes itself a second time when collected, and
        that close fails (with a traceback in the task's log)."""
        async with self.gateway(asynchronous=True) as gateway:
            options = {"unattended": True, **(options or {})}
            name = await gateway.submit(**options)
            self.log.info("Dask cluster %s submitted (%d workers, %s)", name, workers, options)
            try:
                async with gateway.connect(name) as cluster:
                    await cluster.scale(workers)
                    yield cluster
            finally:
                await gateway.stop_cluster(name)
                self.log.info("Dask cluster %s shut down", name)


class DaskClusterOperator(BaseOperator):
    """Run `python_callable(*op_args, **op_kwargs)` on a new Dask cluster of the hub, then end it.

    :param python_callable: runs on one of the cluster's workers; its result is the task's XCom.
    :param workers: how many workers the cluster gets.
    :param cluster_options: the gateway's options: worker_size (a size open to the owner's groups),
        spot, idle_timeout (seconds; the gateway ends a cluster idle that long, even if Airflow is gone).
    :param ec2hub_conn_id: the `ec2hub` connection, with the gateway's addresses in its extra.
    """

    template_fields: Sequence[str] = ("op_args", "op_kwargs", "cluster_options")
    ui_color = "#fde0c8"

    def __init__(
        self,
        *,
        python_callable: Callable,
        op_args: Sequence[Any] | None = None,
        op_kwargs: dict[str, Any] | None = None,
        workers: int = 2,
        cluster_options: dict[str, Any] | None = None,
        ec2hub_conn_id: str = Ec2hubHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not callable(python_callable):
            raise ValueError("python_callable must be callable")
        self.python_callable = python_callable
        self.op_args = list(op_args or [])
        self.op_kwargs = dict(op_kwargs or {})
        self.workers = workers
        self.cluster_options = dict(cluster_options or {})
        self.ec2hub_conn_id = ec2hub_conn_id
        self.cluster_name: str | None = None

    @cached_property
    def hook(self) -> Ec2hubDaskHook:
        return Ec2hubDaskHook(self.ec2hub_conn_id)

    def execute(self, context: Any) -> Any:
        return asyncio.run(self.run(pickled_call(self.python_callable, self.op_args, self.op_kwargs)))

    async def run(self, call: bytes) -> Any:
        async with self.hook.cluster(workers=self.workers, options=self.cluster_options) as cluster:
            self.cluster_name = cluster.name
            async with cluster.get_client(set_as_default=False) as client:
                return await client.submit(pickle.loads, call, pure=False)

    def on_kill(self) -> None:
        """Killed while its callable ran: the cluster goes now, whatever the task does next. Airflow
        calls this from a signal handler, while the task's event loop runs: so in a thread of its own."""
        if self.cluster_name:
            with ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, self.stop_cluster(self.cluster_name)).result(timeout=KILL_TIMEOUT)

    async def stop_cluster(self, name: str) -> None:
        async with self.hook.gateway(asynchronous=True) as gateway:
            await gateway.stop_cluster(name)
        self.log.info("Dask cluster %s shut down with its task", name)
