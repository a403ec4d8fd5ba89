"""The WISDM activity pipeline, daily: land the raw dataset, ETL it to Parquet (as a job on one instance,
or on a Dask cluster: the `etl_on` parameter), stop at a quality gate when too many rows were dropped,
train the activity model, record its accuracy.

Every task is a notebook run as an ec2hub job on an instance of its own (or a cluster from the hub's
Dask gateway), as the owner of the `ec2hub_default` connection's token: their sizes, quotas, budget,
IAM role and S3 folder. The notebooks are in that folder, under `pipelines/wisdm/` (`make airflow`
puts them there for the local stack): the platform's 02 (ETL) and 03 (model) with `wisdm.py`, and
this folder's 01-land-raw, quality-gate and record-accuracy. Airflow holds no credential to the data;
the jobs and the cluster read and write it as the owner.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, TriggerRule, task
from ec2hub_airflow.gateway import DaskClusterOperator
from ec2hub_airflow.operators import NotebookJobOperator

FOLDER = "pipelines/wisdm"  # in the owner's S3 folder (~/s3/pipelines/wisdm in their JupyterLab)
# Seconds before a failed task's first retry (then doubling); the tests shorten it.
RETRY_DELAY = float(os.environ.get("EC2HUB_PIPELINE_RETRY_DELAY", "120"))

log = logging.getLogger(__name__)


def tell_on_failure(context) -> None:
    """A task failed after its retries: say which, and why, where the operators look (the task's log,
    and the scheduler's; an alerting hook such as e-mail or Slack goes here)."""
    task = context["task_instance"]
    log.error(
        "ALERT wisdm: %s failed in run %s (try %s): %s",
        task.task_id,
        context.get("run_id"),
        task.try_number,
        context.get("exception"),
    )


def etl_on_cluster(folder: str) -> dict:
    """On a worker of the owner's Dask cluster (an instance with their role): wisdm.py from their folder,
    loaded on every worker, then the ETL over the cluster, as notebook 02 runs it; its quality report."""
    import importlib
    import os
    import tempfile

    import fsspec
    from distributed import worker_client

    data = f"s3://{os.environ['EC2HUB_BUCKET']}/{os.environ['EC2HUB_USER_PREFIX']}"
    local = os.path.join(tempfile.mkdtemp(), "wisdm.py")
    fsspec.filesystem("s3").get_file(f"{data}{folder}/wisdm.py", local)
    with worker_client() as client:
        client.upload_file(local)  # every worker, this one too, imports it: the ETL's tasks use it
        wisdm = importlib.import_module("wisdm")
        report = wisdm.run_etl(data + "wisdm/raw/", data + "wisdm/parquet/")
    wisdm.save_report(report, data + "wisdm/parquet/quality.json")
    return report.as_dict()["quality"]


@task.branch
def etl_where(params=None) -> str:
    """The ETL's task: a job on one instance, or a Dask cluster."""
    return "etl_on_dask" if params["etl_on"] == "dask" else "etl"


with DAG(
    dag_id="wisdm",
    description="WISDM: raw sensor data to Parquet, a quality gate, an activity model",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=RETRY_DELAY),
        "retry_exponential_backoff": True,
        "on_failure_callback": tell_on_failure,
    },
    params={
        "etl_on": Param("job", enum=["job", "dask"], description="the ETL: a job, or a Dask cluster"),
        "etl_size": Param("medium", type="string", description="the ETL job's (or workers') size"),
        "max_dropped_share": Param(0.05, type="number", description="the quality gate's threshold"),
        "archive_url": Param("", type="string", description="the dataset's archive; empty: UCI's"),
        "sample_subjects": Param(6, type="integer", description="subjects of the offline sample"),
        "sample_seconds_per_activity": Param(40, type="integer"),
        "epochs": Param(60, type="integer", description="the model's training epochs"),
    },
    tags=["ec2hub", "wisdm"],
    # Parameters keep their types (an integer stays one in the notebook).
    render_template_as_native_obj=True,
) as dag:
    land = NotebookJobOperator(
        task_id="land_raw",
        notebook=f"{FOLDER}/01-land-raw.ipynb",
        with_folder=True,  # wisdm.py
        parameters={
            "archive_url": "{{ params.archive_url }}",
            "sample_subjects": "{{ params.sample_subjects }}",
            "sample_seconds_per_activity": "{{ params.sample_seconds_per_activity }}",
        },
        timeout=1800,
    )
    etl = NotebookJobOperator(
        task_id="etl",
        notebook=f"{FOLDER}/02-wisdm-etl.ipynb",
        with_folder=True,
        size="{{ params.etl_size }}",
        timeout=3600,
    )
    etl_on_dask = DaskClusterOperator(
        task_id="etl_on_dask",
        python_callable=etl_on_cluster,
        op_args=[FOLDER],
        workers=2,
        cluster_options={"worker_size": "{{ params.etl_size }}"},
    )
    gate = NotebookJobOperator(
        task_id="quality_gate",
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,  # after whichever ETL ran
        notebook=f"{FOLDER}/quality-gate.ipynb",
        parameters={"max_dropped_share": "{{ params.max_dropped_share }}"},
        timeout=600,
        retries=0,  # a verdict on the data: trying again changes nothing
    )
    model = NotebookJobOperator(
        task_id="model",
        notebook=f"{FOLDER}/03-train-activity-model.ipynb",
        parameters={"epochs": "{{ params.epochs }}"},
        timeout=3600,
    )
    record = NotebookJobOperator(
        task_id="record_accuracy",
        notebook=f"{FOLDER}/record-accuracy.ipynb",
        parameters={"run": "{{ run_id }}"},
        timeout=600,
    )
    land >> etl_where() >> [etl, etl_on_dask] >> gate >> model >> record
