"""Ec2hubHook against the fake jobs service: what a job's creation sends, the service's refusals as
errors with its messages, bounded requests; the connection and the provider's registration."""

from __future__ import annotations

import datetime
import json
import time
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace

import airflow
import jsonschema
import pytest
from ec2hub_airflow.hooks import (
    OLD_SERVICE,
    Ec2hubError,
    Ec2hubHook,
    check_notebook,
    hub_url,
    parameter_texts,
)


def create(hook: Ec2hubHook, **overrides) -> dict:
    arguments = {"name": "wisdm.etl", "size": "medium", "timeout": 600} | overrides
    return hook.create_job("pipelines/02-etl.ipynb", **arguments)


def test_a_job_runs_a_notebook_of_the_owners_folder_with_its_size_parameters_and_timeout(jobs_service):
    created = create(Ec2hubHook(), parameters={"rows": 1000, "day": "2026-12-01"})

    [body] = jobs_service.bodies
    assert body["input_path"] == "pipelines/02-etl.ipynb" and body["input_filename"] == "02-etl.ipynb"
    assert body["compute_type"] == "medium" and body["timeout_seconds"] == 600 and body["max_retries"] == 0
    assert body["parameters"] == {"rows": "1000", "day": "'2026-12-01'"}
    assert body["package_input_folder"] is False, "the notebook alone, unless asked"
    assert Ec2hubHook().get_job(created["job_id"])["status"] == "IN_PROGRESS"
    create(Ec2hubHook(), with_folder=True)
    assert jobs_service.bodies[-1]["package_input_folder"] is True


def test_a_token_without_access_gets_the_services_message(jobs_service):
    with pytest.raises(Ec2hubError, match="This token does not give access to the jobs service") as caught:
        Ec2hubHook("ec2hub_wrong").get_job("5f0c6b0e-0d7e-4c1a-9a52-6a1d1c0f0a11")
    assert caught.value.status == 403 and caught.value.final


def test_the_connections_test_button_says_whether_the_token_reaches_the_jobs_service(jobs_service):
    assert Ec2hubHook().test_connection() == (
        True,
        f"The jobs service of {jobs_service.url} answered: sizes small, medium.",
    )
    works, message = Ec2hubHook("ec2hub_wrong").test_connection()
    assert not works and "This token does not give access to the jobs service" in message


def test_a_size_the_owner_may_not_use_is_refused_with_the_sizes_they_may(jobs_service):
    with pytest.raises(Ec2hubError, match="Sizes you may use: small, medium") as caught:
        create(Ec2hubHook(), size="gpu-large")
    assert caught.value.status == 403


def test_a_hub_that_does_not_answer_in_time_is_an_error_not_a_wait(jobs_service):
    created = create(Ec2hubHook())
    jobs_service.hang = True
    started = time.monotonic()
    with pytest.raises(Ec2hubError, match="did not answer in time") as caught:
        Ec2hubHook(request_timeout=0.2).get_job(created["job_id"])
    assert time.monotonic() - started < 5
    assert caught.value.status is None and not caught.value.final


def test_a_service_that_ignores_input_path_gets_its_job_deleted_and_the_task_a_clear_error(jobs_service):
    jobs_service.takes_input_path = False
    with pytest.raises(Ec2hubError, match="does not run notebooks that are already") as caught:
        create(Ec2hubHook())
    assert str(caught.value) == OLD_SERVICE
    assert jobs_service.deleted and not jobs_service.jobs


@pytest.mark.parametrize(
    "path",
    [
        "s3://bucket/users/alice/etl.ipynb",
        "/home/alice/etl.ipynb",
        "../bob/etl.ipynb",
        "etl.py",
        "a//b.ipynb",
    ],
)
def test_a_notebook_is_a_path_in_the_owners_folder(path):
    with pytest.raises(Ec2hubError, match="not a notebook's path in your S3 folder"):
        check_notebook(path)


def test_a_notebook_given_as_jupyterlab_shows_it_under_s3_is_taken():
    assert check_notebook("~/s3/pipelines/02-etl.ipynb") == "pipelines/02-etl.ipynb"


def test_parameters_travel_as_python_literals_and_others_are_refused():
    assert parameter_texts({"n": 5, "text": "5", "flags": [True, None], "ratio": 0.25}) == {
        "n": "5",
        "text": "'5'",
        "flags": "[True, None]",
        "ratio": "0.25",
    }
    with pytest.raises(Ec2hubError, match="'day'.*not a Python literal"):
        parameter_texts({"day": datetime.date(2026, 12, 1)})


def test_the_hub_url_is_https_unless_the_connection_names_a_scheme():
    def conn(host, port=None):
        return SimpleNamespace(conn_id="c", host=host, port=port)

    assert hub_url(conn("hub.example.org")) == "https://hub.example.org"
    assert hub_url(conn("http://127.0.0.1/", 8000)) == "http://127.0.0.1:8000"
    assert hub_url(conn("https://hub.example.org:8443/base/")) == "https://hub.example.org:8443/base"
    with pytest.raises(Ec2hubError, match="no hub URL"):
        hub_url(conn(""))


def test_the_provider_registers_the_ec2hub_connection_type_as_airflow_reads_it():
    [entry] = [
        e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("ec2hub_airflow")
    ]
    info = entry.load()()
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    [connection] = info["connection-types"]
    assert connection["connection-type"] == Ec2hubHook.conn_type == "ec2hub"
    module, _, name = connection["hook-class-name"].rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name) is Ec2hubHook
