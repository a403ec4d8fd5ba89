"""`make airflow`: Apache Airflow standalone beside the local stack (`make up`, in another terminal),
with the WISDM pipeline (pipelines/dags) and its `ec2hub_default` connection made for the admin.

The connection holds a hub token of the admin's limited to the jobs and Dask gateway services (it
lives in this process's environment, never in a DAG); the pipeline's notebooks go to the admin's S3
folder (pipelines/wisdm/), where the jobs read them with the admin's own role. Airflow keeps its
state in state/airflow/ and answers on EC2HUB_AIRFLOW_PORT (8080).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import boto3
import requests

from hub.gateway import PREFIX as GATEWAY_PREFIX
from hub.gateway import addresses
from hub.settings import REPO_ROOT, Settings

AIRFLOW = REPO_ROOT / ".venv-airflow" / "bin" / "airflow"
NOTEBOOKS = {
    "01-land-raw.ipynb": "pipelines/dags/wisdm/01-land-raw.ipynb",
    "quality-gate.ipynb": "pipelines/dags/wisdm/quality-gate.ipynb",
    "record-accuracy.ipynb": "pipelines/dags/wisdm/record-accuracy.ipynb",
    "02-wisdm-etl.ipynb": "notebooks/02-wisdm-etl.ipynb",
    "03-train-activity-model.ipynb": "notebooks/03-train-activity-model.ipynb",
    "wisdm.py": "notebooks/wisdm.py",
}
SERVER_TIMEOUT = 300.0


class NotReady(RuntimeError):
    """What stops Airflow from starting against the stack, said in one line."""


def signed_in(settings: Settings) -> requests.Session:
    session = requests.Session()
    login = f"{settings.url}/hub/login"
    try:
        session.get(login, timeout=10)
    except requests.ConnectionError:
        raise NotReady(f"no hub at {settings.url}: start the platform with `make up` first") from None
    answer = session.post(
        login,
        data={
            "username": settings.admin_user,
            "password": settings.admin_password,
            "_xsrf": session.cookies.get("_xsrf", ""),
        },
        allow_redirects=False,
        timeout=30,
    )
    if answer.status_code != 302:
        raise NotReady(f"the admin {settings.admin_user} could not sign in ({answer.status_code})")
    session.headers["X-XSRFToken"] = session.cookies.get("_xsrf", "")
    return session


def admin_token(settings: Settings, session: requests.Session) -> str:
    """A token of the admin's for the pipeline: the jobs and the Dask gateway services, nothing else.
    The admin's server is started if it is not running: a job runs in its owner's platform account,
    which the first start makes."""
    api = f"{settings.url}/hub/api/users/{settings.admin_user}"

    def ready() -> bool:
        return bool(session.get(api, timeout=30).json().get("servers", {}).get("", {}).get("ready"))

    if not ready():
        session.post(f"{api}/server", json={}, timeout=30)
        deadline = time.monotonic() + SERVER_TIMEOUT
        while not ready():
            if time.monotonic() > deadline:
                raise NotReady("the admin's server did not start: see `make up`'s output")
            time.sleep(2)
    scopes = ["access:services!service=jobs", "access:services!service=dask-gateway"]
    answer = session.post(
        f"{api}/tokens",
        json={"note": "Airflow (make airflow)", "scopes": scopes, "expires_in": 7 * 24 * 3600},
        timeout=30,
    )
    if answer.status_code != 201:
        raise NotReady(f"the hub made no token for Airflow: {answer.status_code} {answer.text[:200]}")
    return answer.json()["token"]


def put_notebooks(settings: Settings, outputs: dict) -> str:
    """The pipeline's notebooks in the admin's S3 folder; where they are."""
    s3 = boto3.Session(profile_name="admin").client("s3", endpoint_url=outputs["aws_endpoint_url"])
    folder = f"users/{settings.admin_user}/pipelines/wisdm/"
    for name, source in NOTEBOOKS.items():
        s3.put_object(Bucket=outputs["bucket"], Key=folder + name, Body=(REPO_ROOT / source).read_bytes())
    return f"s3://{outputs['bucket']}/{folder}"


def main() -> int:
    settings = Settings.from_env(os.environ)
    outputs_file = settings.state_dir / "localcloud" / "outputs.json"
    try:
        if not outputs_file.exists():
            raise NotReady("the local cloud is not running: start the platform with `make up` first")
        outputs = json.loads(outputs_file.read_text())
        os.environ["AWS_CONFIG_FILE"] = outputs["config_file"]
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = outputs["credentials_file"]
        token = admin_token(settings, signed_in(settings))
        where = put_notebooks(settings, outputs)
    except NotReady as e:
        print(f"ec2hub airflow: {e}", file=sys.stderr)
        return 1
    # The Dask gateway as the admin's server sees it (DaskClusterOperator, the ETL's `etl_on=dask`).
    listening = addresses(settings, os.environ)
    gateway = {
        "gateway_address": f"{listening.http_url}{GATEWAY_PREFIX}",
        "gateway_proxy_address": listening.tcp_address,
    }
    home = Path(settings.state_dir) / "airflow"
    port = os.environ.get("EC2HUB_AIRFLOW_PORT", "8080")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EC2HUB_"))},
        # `airflow standalone` starts its parts by name.
        "PATH": os.pathsep.join([str(AIRFLOW.parent), os.environ.get("PATH", "")]),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "pipelines" / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__API__PORT": port,
        "AIRFLOW_CONN_EC2HUB_DEFAULT": json.dumps(
            {"conn_type": "ec2hub", "host": settings.url, "password": token, "extra": json.dumps(gateway)}
        ),
    }
    print(
        f"ec2hub airflow: the pipeline's notebooks are in {where}; Airflow starts at"
        f" http://localhost:{port} (its sign-in is in {home}/simple_auth_manager_passwords.json.generated)",
        flush=True,
    )
    os.execve(str(AIRFLOW), [str(AIRFLOW), "standalone"], env)  # noqa: S606 - our own venv's airflow
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
