"""The image's bootstrap, where it decides alone: without FUSE the server still starts, with a note;
the S3 folders are links to hidden mount points, so JupyterLab shows when they were mounted; s3://
reads get requests in flight for the instance's size; a pool instance warms the first cell's libraries;
a job instance runs its notebook with papermill, saves the results in S3 and reports to the jobs service."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from types import SimpleNamespace

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from hub.settings import REPO_ROOT


@pytest.fixture
def bootstrap():
    path = REPO_ROOT / "images" / "bootstrap" / "ec2hub-bootstrap"
    loader = SourceFileLoader("ec2hub_bootstrap", str(path))
    module = module_from_spec(spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


@pytest.fixture
def job():
    """The bootstrap's notebook job (ec2hub_job.py beside it), as the bootstrap imports it."""
    sys.path.insert(0, str(REPO_ROOT / "images" / "bootstrap"))
    try:
        import ec2hub_job
    finally:
        sys.path.pop(0)
    return ec2hub_job


def test_without_s3fs_the_home_gets_a_note_instead_of_a_mount(bootstrap, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("EC2HUB_BUCKET", "data")
    monkeypatch.setenv("EC2HUB_USER_PREFIX", "users/alice/")
    home = tmp_path / "home"
    home.mkdir()

    bootstrap.mount_data(token="unused", region="us-east-1", home=str(home))

    assert not (home / "s3").exists()
    note = (home / bootstrap.NOTE_NAME).read_text()
    assert "could not be mounted at ~/s3" in note
    assert "s3fs-fuse is not installed" in note
    assert "s3://data/users/alice/" in note
    assert "s3fs-fuse is not installed" in capsys.readouterr().out


def test_without_a_bucket_nothing_is_mounted_and_no_note(bootstrap, tmp_path, monkeypatch):
    monkeypatch.delenv("EC2HUB_BUCKET", raising=False)
    bootstrap.mount_data(token="unused", region="us-east-1", home=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_jupyter_lists_the_s3_folders_with_the_time_they_were_mounted(bootstrap, tmp_path):
    from jupyter_server.services.contents.filemanager import FileContentsManager

    home = tmp_path / "home"
    home.mkdir()
    for name in ("s3", "shared"):
        mountpoint = bootstrap.mount_point(str(home), name)
        os.utime(mountpoint, (0, 0))  # what s3fs-fuse 1.90 reports for the root of a mount
        assert os.readlink(home / name) == os.path.join(bootstrap.MOUNTS_DIR, name)

    listing = FileContentsManager(root_dir=str(home)).get("", content=True)
    shown = {item["name"]: item for item in listing["content"]}
    assert set(shown) == {"s3", "shared"}, "the hidden folder of the mount points is not listed"
    for item in shown.values():
        assert item["type"] == "directory"
        age = datetime.now(UTC) - item["last_modified"]
        assert timedelta(0) <= age < timedelta(minutes=1), item["last_modified"]
    # Without the link, the mount point itself would show 1970.
    mounts = FileContentsManager(root_dir=str(home / bootstrap.MOUNTS_DIR))
    assert mounts.get("s3")["last_modified"].year == 1970


def test_each_boot_links_again_and_an_old_mount_point_is_replaced_its_files_kept(bootstrap, tmp_path):
    home = tmp_path / "home"
    (home / "s3").mkdir(parents=True)  # the empty mount point of an earlier bootstrap
    (home / "shared").mkdir()
    (home / "shared" / "notes.txt").write_text("written while nothing was mounted")

    for name in ("s3", "shared"):
        bootstrap.mount_point(str(home), name)
        assert (home / name).is_symlink()
    [aside] = home.glob("shared-before-*")
    assert (aside / "notes.txt").read_text() == "written while nothing was mounted"

    os.utime(home / "s3", (0, 0), follow_symlinks=False)
    bootstrap.mount_point(str(home), "s3")
    assert (home / "s3").lstat().st_mtime > time.time() - 60, "the next boot makes the link again"
    assert {p.name for p in home.iterdir()} == {bootstrap.MOUNTS_DIR, "s3", "shared", aside.name}


@pytest.mark.parametrize("vcpus, threads", [(1, 16), (2, 16), (4, 32), (8, 64), (96, 64)])
def test_s3_reads_get_requests_in_flight_for_the_instances_size(bootstrap, vcpus, threads):
    # pyarrow's own S3 client (pandas and pyarrow.dataset on s3:// URLs) runs a request per I/O thread.
    assert bootstrap.read_defaults(vcpus) == {"ARROW_IO_THREADS": str(threads)}


def test_a_pool_instance_imports_the_first_cell_once_in_a_throwaway_process(bootstrap, tmp_path, monkeypatch):
    # A stand-in library that records which process imported it and where matplotlib would cache.
    (tmp_path / "first_cell_lib.py").write_text(
        "import os, pathlib\n"
        f"pathlib.Path({str(tmp_path / 'imported')!r}).write_text("
        "f\"{os.getpid()} {os.environ['MPLCONFIGDIR']} {os.environ['MPLBACKEND']}\")\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(bootstrap, "FIRST_CELL", ("first_cell_lib",))

    bootstrap.warm_first_cell()

    pid, cache, backend = (tmp_path / "imported").read_text().split()
    assert int(pid) != os.getpid() and "first_cell_lib" not in sys.modules
    assert not os.path.exists(cache), "matplotlib's scratch cache is gone, nothing left in root's home"
    assert backend == "Agg"


def test_a_first_cell_that_cannot_import_leaves_the_pool_instance_waiting(bootstrap, monkeypatch, capsys):
    monkeypatch.setattr(bootstrap, "FIRST_CELL", ("numpy", "no_such_library_here"))
    bootstrap.warm_first_cell()
    assert "first cell not warmed: ModuleNotFoundError" in capsys.readouterr().out


# Notebook jobs: the steps after the settings are read and root is dropped (run_notebook_job).

JOB_PREFIX = "users/alice/jobs/j1/"
SECRET = "report-secret"


@pytest.fixture
def jobs_service():
    """The jobs service's report endpoint: records each report, answers the scripted statuses, then 200."""
    reports, answers = [], []

    class Reports(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reports.append(
                SimpleNamespace(path=self.path, authorization=self.headers["Authorization"], body=body)
            )
            self.send_response(answers.pop(0) if answers else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Reports)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield SimpleNamespace(
        url=f"http://127.0.0.1:{server.server_port}/services/jobs/api/runs/j1",
        reports=reports,
        answers=answers,
    )
    server.shutdown()
    server.server_close()


def notebook(*sources, parameters=None):
    cells = [new_code_cell(source) for source in sources]
    if parameters is not None:
        cells.insert(0, new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nbformat.writes(new_notebook(cells=cells, metadata={"kernelspec": kernel}))


def job_settings(jobs_service, input_name, formats=("ipynb", "html"), parameters=None):
    return {
        "job": {
            "input_prefix": JOB_PREFIX + "input/",
            "input_name": input_name,
            "output_prefix": JOB_PREFIX,
            "output_stem": "report",
            "output_formats": list(formats),
            "parameters": parameters or {},
        },
        "report_url": jobs_service.url,
        "report_token": SECRET,
    }


def run_job(job, account, tmp_path, monkeypatch, settings, inputs):
    monkeypatch.setenv("EC2HUB_BUCKET", "unit-data")
    for name, content in inputs.items():
        account.s3.put_object(Bucket="unit-data", Key=JOB_PREFIX + "input/" + name, Body=content)
    work = tmp_path / "home" / ".ec2hub-jobs" / "j1"
    job.run_notebook_job(settings, str(work), account.s3)
    return work


def saved(account, name):
    return account.s3.get_object(Bucket="unit-data", Key=JOB_PREFIX + name)


def test_a_job_runs_its_notebook_with_its_parameters_and_saves_and_reports_the_results(
    job, account, tmp_path, monkeypatch, jobs_service
):
    # The notebook was packaged with its folder: it reads a file beside it, by a relative path.
    inputs = {
        "project/report.ipynb": notebook(
            "rows = open('data/rows.csv').read().split()",
            "print(repr(n), repr(word), len(rows))",
            parameters="n = 0\nword = 'unset'",
        ),
        "project/data/rows.csv": "a\nb\n",
    }
    settings = job_settings(jobs_service, "project/report.ipynb", parameters={"n": "3", "word": "hello"})

    run_job(job, account, tmp_path, monkeypatch, settings, inputs)

    executed = nbformat.reads(saved(account, "report.ipynb")["Body"].read().decode(), as_version=4)
    printed = [output.get("text") for cell in executed.cells for output in cell.get("outputs", [])]
    assert "3 'hello' 2\n" in printed
    assert saved(account, "report.ipynb")["ContentType"] == "application/x-ipynb+json"
    page = saved(account, "report.html")
    assert page["ContentType"] == "text/html" and "<pre>3 'hello' 2" in page["Body"].read().decode()
    assert "3 'hello' 2" in saved(account, "job.log")["Body"].read().decode(), "the cells' outputs are logged"

    started, finished = jobs_service.reports
    assert started.path.endswith("/j1/started") and finished.path.endswith("/j1/finished")
    assert started.authorization == finished.authorization == f"Bearer {SECRET}"
    report = finished.body
    assert report["status"] == "COMPLETED" and report["status_message"] == ""
    assert report["outputs"] == {
        "ipynb": "report.ipynb",
        "html": "report.html",
        "log": "job.log",
        "status": "status.json",
    }
    assert "3 'hello' 2" in report["log_tail"]
    times = [report[name] for name in ("start_time", "first_cell_start", "last_cell_end", "end_time")]
    assert times == sorted(times) and started.body["attempt_started"] == report["start_time"]
    status = json.loads(saved(account, "status.json")["Body"].read())
    assert status == {name: report[name] for name in status} and len(status) == 6
    assert SECRET not in json.dumps(report) + report["log_tail"]


def test_a_failing_notebook_ends_failed_with_the_error_and_what_ran_is_saved(
    job, account, tmp_path, monkeypatch, jobs_service
):
    inputs = {"fail.ipynb": notebook("print('before the error')", "raise ValueError('bad row')")}
    settings = job_settings(jobs_service, "fail.ipynb", formats=["ipynb"])

    run_job(job, account, tmp_path, monkeypatch, settings, inputs)

    report = jobs_service.reports[-1].body
    assert report["status"] == "FAILED"
    assert "ValueError: bad row" in report["status_message"]
    assert "ValueError: bad row" in report["log_tail"] and "before the error" in report["log_tail"]
    assert set(report["outputs"]) == {"ipynb", "log", "status"}, "only the formats asked for"
    executed = saved(account, "report.ipynb")["Body"].read().decode()
    assert "before the error" in executed and "bad row" in executed
    assert json.loads(saved(account, "status.json")["Body"].read())["status"] == "FAILED"


@pytest.mark.parametrize(
    "text, value",
    [
        ("3", 3),
        ("2.5", 2.5),
        ("'x'", "x"),
        ('"s3://b/x/"', "s3://b/x/"),
        ("hello", "hello"),
        ("hello world", "hello world"),
        ("True", True),
        ("None", None),
        ("[1, 2]", [1, 2]),
        ("2024-01-31", "2024-01-31"),
        ("", ""),
    ],
)
def test_job_parameters_are_python_literals_or_else_plain_text(job, text, value):
    assert job.job_parameters({"p": text}) == {"p": value}


@pytest.mark.parametrize("key", ["../escape.py", "a/../../escape.py", "/etc/passwd", ".."])
def test_an_input_path_that_leads_out_of_the_jobs_folder_is_refused(job, tmp_path, key):
    with pytest.raises(ValueError, match="refused"):
        job.inside(str(tmp_path), key)


def test_a_job_with_an_escaping_input_key_fails_and_writes_nothing_outside(
    job, account, tmp_path, monkeypatch, jobs_service
):
    inputs = {"report.ipynb": notebook("print('never')"), "../escape.py": "print('out')"}
    settings = job_settings(jobs_service, "report.ipynb")

    work = run_job(job, account, tmp_path, monkeypatch, settings, inputs)

    [finished] = jobs_service.reports  # nothing ran: no start to report
    assert finished.body["status"] == "FAILED" and "refused" in finished.body["status_message"]
    assert [p.name for p in work.parent.iterdir()] == ["j1"]
    assert not list(work.rglob("escape.py"))


def test_a_job_of_a_notebook_in_the_users_folder_reads_that_notebook_alone(
    job, account, tmp_path, monkeypatch, jobs_service
):
    inputs = {"report.ipynb": notebook("print('ran alone')"), "big/data.csv": "x\n" * 1000}
    settings = job_settings(jobs_service, "report.ipynb", formats=("ipynb",))
    settings["job"]["input_folder"] = False

    work = run_job(job, account, tmp_path, monkeypatch, settings, inputs)

    assert jobs_service.reports[-1].body["status"] == "COMPLETED"
    assert not list(work.rglob("data.csv")), "only the notebook is downloaded"
    assert "ran alone" in saved(account, "report.ipynb")["Body"].read().decode()

    settings["job"]["input_name"] = "gone.ipynb"
    run_job(job, account, tmp_path / "again", monkeypatch, settings, {})
    message = jobs_service.reports[-1].body["status_message"]
    assert message == f"FileNotFoundError: no notebook at s3://unit-data/{JOB_PREFIX}input/gone.ipynb"


def test_a_report_is_retried_while_the_service_is_away_and_a_refusal_is_final(job, jobs_service, monkeypatch):
    monkeypatch.setattr(job, "REPORT_DELAY", 0.01)
    jobs_service.answers[:] = [503, 502]
    assert job.post_report(jobs_service.url + "/finished", SECRET, {"status": "COMPLETED"}, 5)
    assert len(jobs_service.reports) == 3

    jobs_service.answers[:] = [403]
    assert not job.post_report(jobs_service.url + "/finished", SECRET, {"status": "COMPLETED"}, 5)
    assert len(jobs_service.reports) == 4


def test_a_job_instance_reads_its_settings_from_ssm_and_its_kernel_sees_the_users_data(
    bootstrap, account, tmp_path, monkeypatch, jobs_service
):
    # The local cloud's instance (its own metadata service): no power-off, the service ends it.
    monkeypatch.setattr(bootstrap, "IMDS", "http://127.0.0.1:1")
    monkeypatch.setattr(bootstrap, "mount_data", lambda *args: None)
    environment = {
        "EC2HUB_BUCKET": "unit-data",
        "EC2HUB_USER_PREFIX": "users/alice/",
        "JUPYTERHUB_USER": "alice",
        "EC2HUB_JOB_ID": "j1",
        "EC2HUB_JOB_NAME": "nightly",
    }
    for name in [*environment, "EC2HUB_DATA_URL", "PATH", "HOME"]:  # run_job sets them: put back after
        monkeypatch.setenv(name, os.environ.get(name, ""))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EC2HUB_SERVER_USER", "no-such-account")  # stays as it is, root or not
    monkeypatch.chdir(tmp_path)
    printing = notebook("import os; print(os.environ['EC2HUB_DATA_URL'], os.getcwd())")
    account.s3.put_object(Bucket="unit-data", Key=JOB_PREFIX + "input/report.ipynb", Body=printing)
    settings = {"environment": environment, **job_settings(jobs_service, "report.ipynb")}
    parameter = "/ec2hub/users/alice/jobs/j1/settings"
    account.ssm.put_parameter(Name=parameter, Value=json.dumps(settings), Type="SecureString")
    identity = {"instanceId": "i-0123", "instanceType": "t3.medium"}

    monkeypatch.setattr(sys, "path", list(sys.path))  # run_job puts its own folder first
    bootstrap.run_job(identity, "us-east-1", parameter, token="unused")

    work = tmp_path / "home" / bootstrap.JOBS_DIR / "j1"
    assert jobs_service.reports[-1].body["status"] == "COMPLETED"
    assert f"s3://unit-data/users/alice/ {work / 'input'}" in jobs_service.reports[-1].body["log_tail"]
