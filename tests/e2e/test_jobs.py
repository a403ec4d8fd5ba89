"""Notebook jobs end to end: JupyterLab's jobs API in the user's server, the hub's jobs service, one
instance per run on the local cloud (moto over HTTP with IAM enforcement), results in the owner's
S3 folder; as users (and an attacker among them) would use them."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
import requests
from playwright.sync_api import expect

from hub.settings import REPO_ROOT
from tests.browser.conftest import browser, new_page, screenshot  # noqa: F401 (fixtures)
from tests.browser.test_spawn_in_browser import sign_in
from tests.e2e.kernel import Kernel
from tests.e2e.stack import USER_PASSWORD, admin_client, approved_user, aws_client, running_stack, wait_for
from tests.e2e.test_instances_service import InstancesTable, instances_page

pytestmark = pytest.mark.e2e

ENDED = ("COMPLETED", "FAILED", "STOPPED")
# Long enough for a job instance to boot and run a small notebook on a busy 2-core machine.
JOB_DEADLINE = 240


def notebook(*cells: str, parameters: str = "") -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if parameters:
        nb.cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    return nbformat.writes(nb)


PROBE = notebook(
    "import os, json, boto3\n"
    "s3 = boto3.client('s3')\n"
    "bucket = os.environ['EC2HUB_BUCKET']\n"
    "own_key = os.environ['EC2HUB_USER_PREFIX'] + 'numbers.csv'\n"
    "own = s3.get_object(Bucket=bucket, Key=own_key)['Body'].read()\n"
    "try:\n"
    "    s3.get_object(Bucket=bucket, Key='users/bob/secret.csv')\n"
    "    bobs = 'READ'\n"
    "except Exception as e:\n"
    "    bobs = type(e).__name__ + ': ' + str(e)[:60]\n"
    "import pandas as pd\n"
    "total = int(pd.read_csv(os.environ['EC2HUB_DATA_URL'] + 'numbers.csv')['x'].sum())\n"
    "print('PROBE', json.dumps({'own': own.decode(), 'bobs': bobs, 'total': total, 'greeting': greeting,"
    " 'times': times, 'user': os.environ['JUPYTERHUB_USER']}))",
    parameters="greeting = 'hi'\ntimes = 1",
)
RAISES = notebook("rows = 3", "raise ValueError(f'bad row {rows}')")
SLEEPS = notebook("import time\ntime.sleep(seconds)\nprint('slept', seconds)", parameters="seconds = 1")
QUICK = notebook("print('scheduled run')")


class Lab:
    """A user's JupyterLab server, through the hub's proxy with the user's token: its contents and its
    notebook jobs API (what JupyterLab's jobs UI calls)."""

    def __init__(self, stack, user: str) -> None:
        self.stack = stack
        self.user = user
        self.client = approved_user(stack, user)
        self.token = self.client.token(user)
        self.base = f"{stack.settings.url}/user/{user}"
        self.headers = {"Authorization": f"token {self.token}"}

    def ensure_running(self) -> Lab:
        if not (self.client.server(self.user) or {}).get("ready"):
            self.client.start(self.user)
            self.client.wait_ready(self.user, timeout=180)
        return self

    def put(self, path: str, text: str) -> None:
        folder = path.rsplit("/", 1)[0] if "/" in path else ""
        if folder:
            requests.put(
                f"{self.base}/api/contents/{folder}",
                headers=self.headers,
                json={"type": "directory"},
                timeout=30,
            )
        kind = (
            {"type": "notebook", "format": "json", "content": json.loads(text)}
            if path.endswith(".ipynb")
            else {
                "type": "file",
                "format": "text",
                "content": text,
            }
        )
        response = requests.put(
            f"{self.base}/api/contents/{path}", headers=self.headers, json=kind, timeout=30
        )
        assert response.status_code in (200, 201), response.text

    def scheduler(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(
            method, f"{self.base}/scheduler/{path}", headers=self.headers, timeout=60, **kwargs
        )

    def service(self, method: str, path: str, **kwargs) -> requests.Response:
        """The jobs service itself, with the user's token (what works while their server is stopped)."""
        return requests.request(
            method,
            f"{self.stack.settings.url}/services/jobs/api/{path}",
            headers=self.headers,
            timeout=60,
            **kwargs,
        )

    def compute_type(self, slug: str) -> str:
        response = self.scheduler("GET", "runtime_environments")
        assert response.status_code == 200, response.text
        [environment] = response.json()
        return next(t for t in environment["compute_types"] if t.startswith(f"{slug} "))

    def create_job(self, input_uri: str, **fields) -> requests.Response:
        body = {
            "name": fields.pop("name", Path(input_uri).stem),
            "input_uri": input_uri,
            "runtime_environment_name": "ec2hub",
            "output_formats": ["ipynb", "html"],
            **fields,
        }
        return self.scheduler("POST", "jobs", json=body)

    def submit(self, input_uri: str, **fields) -> str:
        response = self.create_job(input_uri, **fields)
        assert response.status_code == 200, response.text
        return response.json()["job_id"]

    def job(self, job_id: str) -> dict:
        response = self.service("GET", f"jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_ended(self, job_id: str, timeout: float = JOB_DEADLINE) -> dict:
        return wait_for(
            lambda: (j := self.job(job_id))["status"] in ENDED and j, timeout, f"job {job_id} to end"
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    settings = {
        "EC2HUB_JOBS_PERIOD": "1",
        "EC2HUB_COSTS_PERIOD": "1",
        # Only the groups frugal (dave's) and watched (bob's) have a budget: frugal's, a few seconds
        # of a server; watched's, a warning after a few seconds and no hard limit in reach.
        "EC2HUB_BUDGETS": json.dumps(
            {
                "groups": {
                    "frugal": {"soft": 0.00005, "hard": 0.0001},
                    "watched": {"soft": 0.0001, "hard": 1000},
                },
                "contact": "the platform team",
            }
        ),
        "EC2HUB_JOBS_LIMITS": json.dumps({"max_concurrent": 3, "max_timeout": 3600}),
    }
    with running_stack(tmp_path_factory, subnet_base=178, **settings) as stack:
        s3 = aws_client(stack, "s3")
        bucket = stack.outputs["bucket"]
        s3.put_object(Bucket=bucket, Key="users/alice/numbers.csv", Body=b"x\n1\n2\n3\n")
        s3.put_object(Bucket=bucket, Key="users/bob/secret.csv", Body=b"x\n42\n")
        yield stack


@pytest.fixture(scope="module")
def alice(stack):
    lab = Lab(stack, "alice").ensure_running()
    lab.put("jobs-demo/probe.ipynb", PROBE)
    lab.put("jobs-demo/raises.ipynb", RAISES)
    lab.put("jobs-demo/sleeps.ipynb", SLEEPS)
    etl = (REPO_ROOT / "notebooks" / "02-wisdm-etl.ipynb").read_text()
    lab.put("etl/02-wisdm-etl.ipynb", etl)
    lab.put("etl/wisdm.py", (REPO_ROOT / "notebooks" / "wisdm.py").read_text())
    return lab


@pytest.fixture(scope="module")
def bob(stack):
    return Lab(stack, "bob").ensure_running()


@pytest.fixture(scope="module")
def carol_schedule(stack):
    """carol's definition that runs every minute, made from her server, which she then stops: it
    runs on while the test module goes on."""
    carol = Lab(stack, "carol").ensure_running()
    carol.put("nightly/quick.ipynb", QUICK)
    response = carol.scheduler(
        "POST",
        "job_definitions",
        json={
            "name": "every minute",
            "input_uri": "nightly/quick.ipynb",
            "runtime_environment_name": "ec2hub",
            "output_formats": ["ipynb"],
            "schedule": "* * * * *",
            "timezone": "Europe/Paris",
        },
    )
    assert response.status_code == 200, response.text
    definition_id = response.json()["job_definition_id"]
    carol.client.stop("carol")
    return carol, definition_id


def job_instances(stack, *, job_id: str | None = None, user: str | None = None) -> list[dict]:
    ec2 = aws_client(stack, "ec2")
    filters = [
        {"Name": "tag:ec2hub:purpose", "Values": ["job"]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
    ]
    if job_id:
        filters.append({"Name": "tag:ec2hub:job", "Values": [job_id]})
    if user:
        filters.append({"Name": "tag:ec2hub:user", "Values": [user]})
    return [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]


def output(stack, key: str) -> bytes:
    s3 = aws_client(stack, "s3")
    return s3.get_object(Bucket=stack.outputs["bucket"], Key=key)["Body"].read()


def printed(executed: bytes, marker: str) -> dict:
    nb = nbformat.reads(executed.decode(), as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for line in out.get("text", "").splitlines():
                if line.startswith(marker + " "):
                    return json.loads(line[len(marker) + 1 :])
    raise AssertionError(f"no {marker} line in the executed notebook")


@pytest.fixture(autouse=True)
def no_job_instance_left(stack, request):
    yield
    # carol's schedule runs on its own through the module; alice's and bob's jobs end with each test.
    for user in ("alice", "bob"):
        wait_for(lambda u=user: not job_instances(stack, user=u), 60, f"{user}'s job instances to end")


def test_a_schedule_starts_while_its_owners_server_is_stopped(carol_schedule):
    carol, definition_id = carol_schedule
    assert carol.client.server("carol") is None
    response = carol.service("GET", f"job_definitions/{definition_id}")
    assert response.status_code == 200, response.text
    assert response.json()["active"] is True
    assert response.json()["schedule"] == "* * * * *"


def test_the_etl_notebook_runs_with_parameters_on_an_instance_of_alices_own(stack, alice):
    started = time.time()
    job_id = alice.submit(
        "etl/02-wisdm-etl.ipynb",
        compute_type=alice.compute_type("small"),
        parameters={"sample_subjects": "2", "sample_seconds_per_activity": "4"},
        package_input_folder=True,
    )
    [instance] = wait_for(lambda: job_instances(stack, job_id=job_id), 60, "the job's instance")
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert (tags["ec2hub:user"], tags["ec2hub:purpose"]) == ("alice", "job")
    assert instance["IamInstanceProfile"]["Arn"].endswith("/ec2hub-alice")
    sizes = {s["slug"]: s for s in alice.service("GET", "sizes").json()["sizes"]}
    assert instance["InstanceType"] == sizes["small"]["instance_type"]

    job = alice.wait_ended(job_id)
    assert job["status"] == "COMPLETED", job
    assert job["duration"] and 0 < job["duration"] < time.time() - started + 1
    assert job["cost"] is not None
    prefix = f"users/alice/jobs/{job_id}/"
    executed = output(stack, prefix + "02-wisdm-etl.ipynb")
    nb = nbformat.reads(executed.decode(), as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "sample_subjects = 2" in injected.source
    assert b"<html" in output(stack, prefix + "02-wisdm-etl.html")
    texts = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert f"bucket: {stack.outputs['bucket']}" in texts
    assert "rows/s" in texts
    # The ETL wrote into alice's own folder, from the job's instance.
    assert json.loads(output(stack, "users/alice/wisdm/parquet/quality.json"))
    assert not job_instances(stack, job_id=job_id)

    # What JupyterLab's job list shows: status, the outputs through ~/s3, duration and cost.
    listed = alice.scheduler("GET", "jobs").json()["jobs"]
    row = next(j for j in listed if j["job_id"] == job_id)
    assert row["status"] == "COMPLETED"
    files = {f["file_format"]: f for f in row["job_files"]}
    assert files["ipynb"]["file_path"] == f"s3/jobs/{job_id}/02-wisdm-etl.ipynb"
    assert "$" in files["ipynb"]["display_name"]


def test_a_job_sees_what_alices_server_sees_and_not_bobs_data(stack, alice):
    job_id = alice.submit(
        "jobs-demo/probe.ipynb",
        compute_type=alice.compute_type("small"),
        parameters={"greeting": "'hello'", "times": "3"},
    )
    job = alice.wait_ended(job_id)
    assert job["status"] == "COMPLETED", job
    seen = printed(output(stack, f"users/alice/jobs/{job_id}/probe.ipynb"), "PROBE")
    assert seen["own"] == "x\n1\n2\n3\n"
    assert seen["total"] == 6  # pandas on s3:// with no keys
    assert seen["bobs"] != "READ" and "AccessDenied" in seen["bobs"]
    assert (seen["greeting"], seen["times"], seen["user"]) == ("hello", 3, "alice")


def test_a_notebook_that_raises_ends_failed_with_its_error(stack, alice):
    job_id = alice.submit("jobs-demo/raises.ipynb")
    job = alice.wait_ended(job_id)
    assert job["status"] == "FAILED"
    assert "ValueError: bad row 3" in job["status_message"]
    # The executed notebook up to the error is there to open.
    assert b"bad row 3" in output(stack, f"users/alice/jobs/{job_id}/raises.ipynb")


def test_a_job_over_its_timeout_is_terminated_and_says_so(stack, alice):
    job_id = alice.submit("jobs-demo/sleeps.ipynb", parameters={"seconds": "900"}, tags=["timeout=30"])
    job = alice.wait_ended(job_id)
    assert job["status"] == "FAILED"
    assert "timeout of 30 s" in job["status_message"]
    assert not job_instances(stack, job_id=job_id)


def test_alice_stops_a_running_job(stack, alice):
    job_id = alice.submit("jobs-demo/sleeps.ipynb", parameters={"seconds": "900"})
    [instance] = wait_for(lambda: job_instances(stack, job_id=job_id), 60, "the job's instance")
    # The admins' Instances page shows it under alice, as her notebook job, with its cost so far.
    page = instances_page(admin_client(stack))
    assert page.status_code == 200, page.text
    row = InstancesTable(page.text).rows[instance["InstanceId"]]
    assert (row["user"], row["server"]) == ("alice", f"Notebook job {job_id[:8]}")
    assert "orphan" not in row["classes"] and row["cost"].startswith("$")
    response = alice.scheduler("PATCH", f"jobs/{job_id}", json={"status": "STOPPED"})
    assert response.status_code == 204, response.text
    assert alice.wait_ended(job_id)["status"] == "STOPPED"
    assert not job_instances(stack, job_id=job_id)


def test_a_size_outside_alices_groups_is_refused_with_a_clear_message(stack, alice):
    response = alice.create_job("jobs-demo/probe.ipynb", compute_type="gpu")
    assert response.status_code == 500
    assert "not open to your groups" in response.json()["message"]
    assert "small" in response.json()["message"]
    listed = alice.service("GET", "jobs").json()["jobs"]
    assert all(j["status"] != "CREATED" for j in listed)


def test_a_run_survives_a_hub_restart_and_is_recorded(stack, alice):
    job_id = alice.submit("jobs-demo/sleeps.ipynb", parameters={"seconds": "20"})
    wait_for(
        lambda: alice.job(job_id)["status"] == "IN_PROGRESS" and job_instances(stack, job_id=job_id),
        60,
        "the run",
    )
    stack.stop_hub()
    stack.start_hub()
    job = alice.wait_ended(job_id)
    assert job["status"] == "COMPLETED", job
    assert b"slept 20" in output(stack, f"users/alice/jobs/{job_id}/sleeps.ipynb")


def test_bob_cannot_see_stop_or_read_alices_jobs(stack, alice, bob):
    job_id = alice.submit("jobs-demo/sleeps.ipynb", parameters={"seconds": "900"})
    try:
        assert all(j["job_id"] != job_id for j in bob.scheduler("GET", "jobs").json()["jobs"])
        for method, path in (("GET", ""), ("POST", "/stop"), ("DELETE", ""), ("PATCH", "")):
            response = bob.service(method, f"jobs/{job_id}{path}", json={} if method != "GET" else None)
            assert response.status_code == 404, (method, path, response.text)
        # Nor through alice's server: the hub lets only alice's own token in.
        assert bob.scheduler("GET", "jobs").status_code == 200
        response = requests.get(f"{alice.base}/scheduler/jobs/{job_id}", headers=bob.headers, timeout=30)
        assert response.status_code in (403, 404)
        # A forged report for alice's run is refused.
        forged = requests.post(
            f"{stack.settings.url}/services/jobs/api/runs/{job_id}/finished",
            headers={"Authorization": f"Bearer {bob.token}"},
            json={"status": "COMPLETED"},
            timeout=30,
        )
        assert forged.status_code == 403
        assert alice.job(job_id)["status"] in ("QUEUED", "IN_PROGRESS")
        # Nor her outputs, from bob's own server.
        kernel = Kernel(stack.settings.url, "bob", bob.token, timeout=120)
        # In a thread: the browser test's Playwright keeps an event loop in this one.
        result = (
            ThreadPoolExecutor(max_workers=1)
            .submit(
                kernel.run,
                "import boto3, os\n"
                "try:\n"
                "    s3 = boto3.client('s3')\n"
                "    s3.get_object(Bucket=os.environ['EC2HUB_BUCKET'], Key='users/alice/numbers.csv')\n"
                "    print('READ')\n"
                "except Exception as e:\n"
                "    print(type(e).__name__, e)\n",
            )
            .result()
        )
        assert "AccessDenied" in result.stdout and "READ" not in result.stdout
    finally:
        alice.service("POST", f"jobs/{job_id}/stop")
    assert alice.wait_ended(job_id)["status"] == "STOPPED"


def test_the_schedule_ran_twice_while_carols_server_was_stopped(stack, carol_schedule):
    carol, definition_id = carol_schedule

    def completed_runs():
        runs = carol.service("GET", f"jobs?job_definition_id={definition_id}").json()["jobs"]
        return [r for r in runs if r["status"] == "COMPLETED"]

    runs = wait_for(lambda: len(completed_runs()) >= 2 and completed_runs(), 200, "two scheduled runs")
    assert carol.client.server("carol") is None
    for run in runs:
        assert b"scheduled run" in output(stack, f"users/carol/jobs/{run['job_id']}/quick.ipynb")
    response = carol.service("DELETE", f"job_definitions/{definition_id}")
    assert response.status_code == 204
    wait_for(
        lambda: all(r["status"] in ENDED for r in carol.service("GET", "jobs").json()["jobs"]),
        120,
        "carol's runs",
    )
    wait_for(lambda: not job_instances(stack), 60, "every job instance to end")


def test_the_service_reports_prometheus_metrics_to_admins_only(stack, alice):
    url = f"{stack.settings.url}/services/jobs/metrics"
    assert requests.get(url, headers=alice.headers, timeout=30).status_code == 403
    admin = admin_client(stack)
    headers = {"Authorization": f"token {admin.token(stack.settings.admin_user)}"}

    def metrics() -> dict[str, float]:
        response = requests.get(url, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        return {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in response.text.splitlines()
            if line and not line.startswith("#")
        }

    before = metrics()
    job_id = alice.submit("jobs-demo/raises.ipynb")
    assert alice.wait_ended(job_id)["status"] == "FAILED"
    after = metrics()
    failed = 'ec2hub_job_runs_total{outcome="FAILED"}'
    assert after[failed] == before[failed] + 1
    launched = 'ec2hub_launches_total{outcome="launched",purpose="job"}'
    assert after[launched] == before.get(launched, 0) + 1
    # And in CloudWatch, where Terraform's alarm on failed runs watches.
    cloudwatch = aws_client(stack, "cloudwatch")
    [metric] = cloudwatch.list_metrics(Namespace="ec2hub/jobs", MetricName="FailedRuns")["Metrics"]
    assert metric["Dimensions"] == [{"Name": "HubId", "Value": stack.settings.hub_id}]
    assert (
        after['ec2hub_job_runs_total{outcome="COMPLETED"}']
        >= before['ec2hub_job_runs_total{outcome="COMPLETED"}']
    )
    assert {"ec2hub_jobs_queued", "ec2hub_job_instances_running"} <= set(after)


def test_alice_creates_a_job_in_jupyterlab_watches_it_complete_and_opens_its_output(
    stack,
    alice,
    new_page,  # noqa: F811 (the browser tests' fixture)
):
    """The README's tour: notebook 02 as a job on a medium instance, from JupyterLab's form."""
    page = new_page()
    sign_in(page, stack, "alice", USER_PASSWORD)
    page.wait_for_url("**/user/alice/**")
    page.goto(f"{alice.base}/lab/tree/etl")
    listing = page.locator(".jp-DirListing-content")
    listing.get_by_text("02-wisdm-etl.ipynb", exact=True).click(button="right")
    page.get_by_role("menuitem", name="Create Job").click()

    name = "WISDM ETL from the browser"
    # The form names the job after the notebook once it has loaded, and writes its model again when
    # the compute types arrive: the name is typed over the form's once both are there.
    job_name = page.locator("#jp-create-job-jobName")
    expect(job_name).to_have_value("02-wisdm-etl")
    expect(page.get_by_role("button", name=alice.compute_type("small"))).to_be_visible()
    job_name.fill(name)
    expect(job_name).to_have_value(name)
    expect(page.locator("#jp-create-job-inputFile")).to_have_value("etl/02-wisdm-etl.ipynb")
    # The compute types are the sizes of her groups with their price, the cheapest first chosen.
    page.get_by_role("button", name=alice.compute_type("small")).click()
    assert "gpu" not in " ".join(page.get_by_role("option").all_inner_texts())
    page.get_by_role("option", name=alice.compute_type("medium")).click()
    for index, (parameter, value) in enumerate(
        {"sample_subjects": "2", "sample_seconds_per_activity": "4"}.items()
    ):
        page.get_by_title("Add new parameter").click()
        page.locator(f"input[name=parameter-{index}-name]").press_sequentially(parameter)
        page.locator(f"input[name=parameter-{index}-value]").press_sequentially(value)
        page.locator(f"input[name=parameter-{index}-value]").press("Tab")
    folder = page.locator("input[name=packageInputFolder]")
    folder.check()  # wisdm.py goes with it
    expect(folder).to_be_checked()
    page.get_by_role("button", name="Create", exact=True).click()

    # The job ends on its instance (the service says when); the job list, reloaded, then shows it
    # completed, its outputs linked in its row.
    def ended() -> dict | None:
        jobs = alice.service("GET", "jobs").json()["jobs"]
        return next((j for j in jobs if j["name"] == name and j["status"] in ENDED), None)

    job = wait_for(ended, JOB_DEADLINE, "the job to end")
    assert job["status"] == "COMPLETED", job
    row = page.locator("tr").filter(has_text=name)

    def shown() -> bool:
        # Each reload gets time to show the list (a click during the last one's fetch starts over).
        page.get_by_role("button", name="Reload").click()
        try:
            expect(row.get_by_text("Completed", exact=True)).to_be_visible(timeout=10_000)
        except AssertionError:
            return False
        return True

    wait_for(shown, 90, "JupyterLab's job list to show the job completed")
    assert job["package_input_folder"] and job["size"] == "medium"
    notebook_link = row.get_by_title('Open output file "02-wisdm-etl.ipynb"')
    expect(notebook_link).to_contain_text(re.compile(r"Notebook · \d+s · "))
    screenshot(page, "jobs-list")
    [instance] = aws_client(stack, "ec2").describe_instances(
        Filters=[{"Name": "tag:ec2hub:job", "Values": [job["job_id"]]}]
    )["Reservations"][0]["Instances"]
    assert instance["State"]["Name"] in ("shutting-down", "terminated")
    sizes = {s["slug"]: s for s in alice.service("GET", "sizes").json()["sizes"]}
    assert instance["InstanceType"] == sizes["medium"]["instance_type"]

    # The executed notebook opens from her S3 folder, with the parameters she gave in the form.
    notebook_link.click()
    tab = page.locator(".lm-TabBar-tab.jp-mod-current")
    expect(tab).to_have_attribute("title", re.compile(f"s3/jobs/{job['job_id']}/02-wisdm-etl.ipynb"))
    expect(page.locator(".jp-Cell").filter(has_text="# Parameters").last).to_contain_text(
        "sample_subjects = 2"
    )
    expect(page.locator(".jp-OutputArea-output").filter(has_text="bucket:").first).to_contain_text(
        stack.outputs["bucket"]
    )
    screenshot(page, "job-output")


def month_spend(client) -> dict[tuple[str, str], float]:
    """The Costs page's CSV as `client` gets it: USD by (user, purpose) this month."""
    response = client.session.get(f"{client.base_url}/services/instances/costs.csv", timeout=30)
    assert response.status_code == 200, response.text
    spend: dict[tuple[str, str], float] = {}
    for row in csv.DictReader(io.StringIO(response.text)):
        key = (row["user"], row["purpose"])
        spend[key] = spend.get(key, 0.0) + float(row["usd"])
    return spend


def test_the_costs_page_shows_alices_spend_by_purpose_to_admins_only(
    stack,
    alice,
    bob,
    new_page,  # noqa: F811 (the browser tests' fixture)
):
    job_id = alice.submit("jobs-demo/probe.ipynb")
    assert alice.wait_ended(job_id)["status"] == "COMPLETED"
    admin = admin_client(stack)
    token = admin.token(stack.settings.admin_user)  # before the service sets a cookie of its own
    spend = wait_for(
        lambda: (s := month_spend(admin)).get(("alice", "job")) and s, 60, "alice's job in the ledger"
    )
    # Her server and her jobs, each at its price, and no one else's under her name.
    assert spend[("alice", "server")] > 0 and spend[("alice", "job")] > 0
    assert ("bob", "job") not in spend
    for path in ("costs", "costs.csv", "metrics"):
        response = bob.client.session.get(f"{stack.settings.url}/services/instances/{path}", timeout=30)
        assert response.status_code == 403, (path, response.text[:200])

    # Prometheus, with an admin's token: instances by purpose, state and size; spend by purpose.
    response = requests.get(
        f"{stack.settings.url}/services/instances/metrics",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    metrics = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in response.text.splitlines()
        if line and not line.startswith("#")
    }
    assert metrics['ec2hub_instances{purpose="server",size="medium",state="running"}'] >= 2  # alice's, bob's
    assert metrics['ec2hub_spend_month_usd{purpose="job"}'] > 0

    page = new_page()
    sign_in(page, stack, stack.settings.admin_user, stack.settings.admin_password)
    page.wait_for_url("**/hub/**")
    page.goto(f"{stack.settings.url}/services/instances/costs")
    row = page.locator('#costs-users tr[data-user="alice"]')
    expect(row.locator(".job")).to_have_text(re.compile(r"^\$0\.\d{4}$"))
    assert float(row.locator(".server").inner_text().lstrip("$")) > 0
    expect(page.locator('#costs-purposes tr[data-purpose="job"]')).to_be_visible()
    # Chart.js drew the month's days on the canvas.
    page.wait_for_function("() => Chart.getChart('costs-chart')?.data.labels.length > 0")
    screenshot(page, "costs")


def test_over_his_groups_soft_limit_bob_sees_a_banner_and_his_jupyterlab_what_it_costs(
    stack,
    bob,
    new_page,  # noqa: F811 (the browser tests' fixture)
):
    admin = admin_client(stack)
    assert admin.api("POST", "/groups/watched").status_code in (201, 409)
    response = admin.api("POST", "/groups/watched/users", json={"users": ["bob"]})
    assert response.status_code == 200, response.text
    wait_for(lambda: month_spend(admin).get(("bob", "server"), 0) >= 0.0001, 60, "bob's spend")

    # What his JupyterLab asks the jobs service: his medium server's rate, his month, the warning.
    costs = bob.service("GET", "costs").json()
    assert costs["server"] == {"size": "m6i.xlarge", "hourly": 0.192, "spot": False}, costs
    assert costs["month_to_date"] > 0 and costs["refusal"] is None
    assert costs["warning"].startswith("Nearing this month's budget: group watched has spent $0.0")
    assert costs["warning"].endswith("of its $0.0001 soft limit.")

    page = new_page()
    sign_in(page, stack, "bob", USER_PASSWORD)
    page.wait_for_url("**/user/bob/lab**")
    status = page.locator("#ec2hub-costs-status")
    expect(status).to_have_text(re.compile(r"^\$0\.192/h · \$\d+\.\d\d this month$"), timeout=60_000)
    expect(status).to_have_class(re.compile("ec2hub-costs-warning"))
    expect(page.get_by_text("Nearing this month's budget: group watched").first).to_be_visible()
    screenshot(page, "costs-in-jupyterlab")
    # Every hub page has the banner; alice, in no group with a budget, has none.
    page.goto(f"{stack.settings.url}/hub/home")
    expect(page.locator("#ec2hub-budget-banner")).to_contain_text(
        "Nearing this month's budget: group watched has spent $0.0"
    )
    home = approved_user(stack, "alice").session.get(f"{stack.settings.url}/hub/home", timeout=30)
    assert home.status_code == 200 and "ec2hub-budget-banner" not in home.text


def test_over_his_groups_budget_dave_cannot_start_a_job_until_an_admin_lifts_his_limits(stack):
    dave = Lab(stack, "dave")
    hub_admin = admin_client(stack)
    assert hub_admin.api("POST", "/groups/frugal").status_code in (201, 409)
    response = hub_admin.api("POST", "/groups/frugal/users", json={"users": ["dave"]})
    assert response.status_code == 200, response.text
    dave.ensure_running()
    dave.put("work/quick.ipynb", QUICK)
    costs_admin = admin_client(stack)
    admin_token = costs_admin.token(stack.settings.admin_user)  # before the service sets a cookie of its own
    wait_for(lambda: month_spend(costs_admin).get(("dave", "server"), 0) >= 0.0001, 60, "dave's spend")

    refused = dave.create_job("work/quick.ipynb")
    assert refused.status_code == 500, refused.text
    message = refused.json()["message"]
    assert message.startswith("Over budget this month: group frugal has spent $0.0")
    assert "of its $0.0001 budget. A new job cannot start; what runs goes on." in message
    assert message.endswith("Ask the platform team to raise the budget or lift the limit for you.")
    assert not [j for j in dave.service("GET", "jobs").json()["jobs"] if j["status"] != "FAILED"]
    # Every hub page says so.
    wait_for(
        lambda: (
            "Over budget this month: group frugal"
            in dave.client.session.get(f"{stack.settings.url}/hub/home", timeout=30).text
        ),
        60,
        "the budget banner on dave's hub page",
    )

    # Nor a new Dask cluster.
    kernel = Kernel(stack.settings.url, "dave", dave.token, timeout=240)
    # In a thread of its own: the browser tests' driver keeps an event loop on this one.
    run = (
        ThreadPoolExecutor(1)
        .submit(
            kernel.run,
            "from dask_gateway import Gateway\n"
            "try:\n"
            "    Gateway().new_cluster()\n"
            "except Exception as e:\n"
            "    print('REFUSED', e)\n",
        )
        .result()
    )
    assert "REFUSED" in run.stdout, run
    assert "Over budget this month: group frugal has spent $0.0" in run.stdout, run
    assert "A new cluster cannot start; what runs goes on." in run.stdout

    # Nor a large server; the smallest size still starts (his data stays in reach).
    dave.client.stop("dave")
    large = dave.client.api("POST", "/users/dave/server", json={"size": "large"})
    assert large.status_code == 403, large.text
    assert "A Large server ($0.768/hour) cannot start" in large.json()["message"]
    assert "Sizes up to $0.042/hour still start." in large.json()["message"]
    small = dave.client.api("POST", "/users/dave/server", json={"size": "small"})
    assert small.status_code in (201, 202), small.text
    dave.client.wait_ready("dave", timeout=180)

    # Prometheus counts each refusal, whichever part refused it.
    response = requests.get(
        f"{stack.settings.url}/services/instances/metrics",
        headers={"Authorization": f"token {admin_token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    for what in ("job", "cluster", "server"):
        assert re.search(rf'^ec2hub_budget_refusals_total{{what="{what}"}} [1-9]', response.text, re.M), what

    # The Costs page marks him over budget; an admin lifts his limits for a day from there.
    page = costs_admin.session.get(f"{stack.settings.url}/services/instances/costs", timeout=30)
    assert page.status_code == 200
    assert "over its hard limit" in page.text
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    lifted = costs_admin.session.post(
        f"{stack.settings.url}/services/instances/costs/lift",
        data={"_xsrf": xsrf, "user": "dave", "days": "1"},
        timeout=30,
    )
    assert lifted.status_code == 200 and "Limits of dave lifted" in lifted.text
    # Without the page's token, nothing is lifted (a cross-site form cannot do it).
    forged = costs_admin.session.post(
        f"{stack.settings.url}/services/instances/costs/lift",
        data={"user": "mallory", "days": "31"},
        timeout=30,
    )
    assert forged.status_code == 403

    job_id = dave.submit("work/quick.ipynb")
    assert dave.wait_ended(job_id)["status"] == "COMPLETED"
