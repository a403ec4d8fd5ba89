"""The example notebooks, executed top to bottom in a user's server on the local cloud.

A user signs up and is approved, starts a server (an instance booted from the image), and finds the
notebooks uploaded to their home as JupyterLab would; the raw WISDM files (generated, small) are in
their S3 folder. Each notebook runs in its own kernel on the instance, against the moto S3 with the
user's role, and the tests check what a data scientist would look at: the row counts, the quality
report, the model's accuracy, what each library of the scientific stack computed, and that everything
was written in the user's folder and nowhere else.
"""

from __future__ import annotations

import http.server
import json
import math
import sys
import threading
from functools import partial
from pathlib import Path

import nbformat
import pytest
import requests

from tests.e2e.stack import approved_user, aws_client, running_stack, wait_for
from tests.notebooks.runner import ServerNotebooks, images, inject_parameters, line_starting, stdout

pytestmark = pytest.mark.e2e

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))
import wisdm  # noqa: E402

USER = "nora"
FOLDER = "examples"
SUBJECTS, SECONDS = 4, 30  # 4 subjects x 18 activities x 30 s x 4 sensors at 20 Hz: 173k readings
CLUSTER_PURPOSES = ("dask-scheduler", "dask-worker")
STACK_ROWS = 1500
REQUIREMENTS = Path(__file__).resolve().parents[2] / "images" / "user" / "requirements.txt"
STATIONS = "station,lat,lon\nBack Bay,42.347,-71.075\nSouth Station,42.352,-71.055\nAirport,42.374,-71.030\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory, subnet_base=150) as stack:
        yield stack


@pytest.fixture(scope="module")
def web_csv(tmp_path_factory):
    """A CSV on a web server, for the notebook's "bring data in from a URL"."""
    folder = tmp_path_factory.mktemp("web")
    (folder / "stations.csv").write_text(STATIONS)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/stations.csv"
    server.shutdown()


@pytest.fixture(scope="module")
def bucket(stack):
    return stack.outputs["bucket"]


@pytest.fixture(scope="module")
def generated(bucket, stack, tmp_path_factory):
    """Raw WISDM files in the user's S3 folder, and a CSV in shared/, put there by the admin."""
    local = tmp_path_factory.mktemp("wisdm") / "raw"
    made = wisdm.generate_raw(
        str(local), subjects=SUBJECTS, seconds_per_activity=SECONDS, seed=9, dirty=0.002
    )
    s3 = aws_client(stack, "s3")
    for path in local.rglob("*.txt"):
        s3.upload_file(str(path), bucket, f"users/{USER}/wisdm/raw/{path.relative_to(local).as_posix()}")
    s3.put_object(Bucket=bucket, Key="shared/examples/stations.csv", Body=STATIONS.encode())
    return made


@pytest.fixture(scope="module")
def keys_before(bucket, stack, generated):
    return set(all_keys(aws_client(stack, "s3"), bucket))


@pytest.fixture(scope="module")
def server(stack, keys_before):
    client = approved_user(stack, USER)
    client.start(USER)
    client.wait_ready(USER, timeout=120)
    server = ServerNotebooks(stack.settings.url, USER, client.token(USER))
    server.make_folder(FOLDER)
    for path in sorted(NOTEBOOKS.iterdir()):
        if path.suffix == ".ipynb":
            server.put_file(f"{FOLDER}/{path.name}", path.read_text(), kind="notebook")
        elif path.suffix == ".py":
            server.put_file(f"{FOLDER}/{path.name}", path.read_text())
    server.put_file(f"{FOLDER}/uploaded.csv", "city,requests\nBoston,12\nCambridge,5\n")
    return server


@pytest.fixture(scope="module")
def dashboard(server, stack):
    """What the dashboard link of notebook 5 shows, fetched through the hub while its cluster runs."""
    seen = {}

    def look(notebook):
        link = line_starting(stdout(notebook), "DASHBOARD")
        response = requests.get(stack.settings.url + link, headers=server.headers, timeout=30)
        seen.update(link=link, status=response.status_code, body=response.text)

    return seen, look


@pytest.fixture(scope="module")
def run(server, tmp_path_factory, bucket, web_csv, dashboard):
    """Run a notebook once (later calls return the executed notebook); written out for inspection."""
    parameters = {
        "01-getting-started.ipynb": {
            "http_url": web_csv,
            "source_s3_url": f"s3://{bucket}/shared/examples/stations.csv",
            "uploaded_file": "uploaded.csv",
        },
        "02-wisdm-etl.ipynb": {},
        "03-train-activity-model.ipynb": {"epochs": 40},
        "04-boston-311.ipynb": {"csv_url": "", "sample_rows": 3000},
        "05-dask-cluster.ipynb": {"partitions": [1, 2]},
        "06-dask-gateway-cluster.ipynb": {},
        "07-the-scientific-stack.ipynb": {"rows": STACK_ROWS},
    }
    hooks = {"05-dask-cluster.ipynb": dashboard[1]}
    executed = {}
    out = tmp_path_factory.mktemp("executed")

    def execute(name: str) -> nbformat.NotebookNode:
        if name not in executed:
            notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
            inject_parameters(notebook, parameters[name])
            try:
                server.execute(f"{FOLDER}/{name}", notebook, while_running=hooks.get(name))
            finally:
                nbformat.write(notebook, out / name)
            executed[name] = notebook
        return executed[name]

    return execute


def all_keys(s3, bucket: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def cluster_instances(stack, user: str) -> list[dict]:
    """The Dask scheduler and worker instances of `user`, in every state (terminated ones included)."""
    response = aws_client(stack, "ec2").describe_instances(
        Filters=[{"Name": "tag:ec2hub:purpose", "Values": list(CLUSTER_PURPOSES)}]
    )
    found = [i for r in response["Reservations"] for i in r["Instances"]]
    return [i for i in found if {t["Key"]: t["Value"] for t in i["Tags"]}.get("ec2hub:user") == user]


def test_getting_started_brings_data_from_the_web_s3_and_an_upload(run, bucket):
    text = stdout(run("01-getting-started.ipynb"))
    assert line_starting(text, "your data:") == f"s3://{bucket}/users/{USER}/"
    assert "from http: 3 rows, columns ['station', 'lat', 'lon']" in text
    assert "from s3: 3 rows, columns ['station', 'lat', 'lon']" in text
    assert "from upload: 2 rows, columns ['city', 'requests']" in text
    assert line_starting(text, "parquet round trip:").startswith("8 rows of 8 at s3://")
    assert line_starting(text, "sqlite rows:") == "8"
    assert line_starting(text, "~/shared:").startswith("[") and "examples" in line_starting(text, "~/shared:")


def test_wisdm_etl_reports_quality_and_writes_partitioned_parquet(run, generated):
    text = stdout(run("02-wisdm-etl.ipynb"))
    assert "generating a sample" not in text, "the uploaded raw files were found"
    quality = json.loads(line_starting(text, "QUALITY"))
    assert quality["rows_in"] == generated.lines
    assert quality["rows_out"] == generated.clean_rows
    assert quality["rows_in"] == quality["rows_out"] + quality["dropped"]
    assert quality["dropped"] == (
        generated.total("duplicates") + generated.total("out_of_range") + generated.total("malformed")
    )
    assert quality["rows_written"] == quality["rows_out"]
    assert quality["nulls"] == 0 and quality["in_range"] is True
    # One file per device, sensor and activity, plus one of features per device and sensor.
    assert quality["files"] == 4 * 18 + 4


def test_wisdm_output_is_in_the_users_folder_by_device_sensor_and_activity(run, stack, bucket):
    run("02-wisdm-etl.ipynb")
    keys = all_keys(aws_client(stack, "s3"), bucket)
    readings = [k for k in keys if k.startswith(f"users/{USER}/wisdm/parquet/readings/")]
    assert len(readings) == 72
    assert (
        f"users/{USER}/wisdm/parquet/readings/device=watch/sensor=gyro/activity=eating_soup/part-0.parquet"
        in (readings)
    )
    report = json.loads(
        aws_client(stack, "s3")
        .get_object(Bucket=bucket, Key=f"users/{USER}/wisdm/parquet/quality.json")["Body"]
        .read()
    )
    assert report["balanced"] is True


def test_activity_model_beats_chance_on_held_out_subjects_and_is_saved(run, stack, bucket):
    run("02-wisdm-etl.ipynb")
    notebook = run("03-train-activity-model.ipynb")
    text = stdout(notebook)
    accuracy = float(line_starting(text, "ACCURACY").split()[0])
    assert accuracy > 3 / 18, f"accuracy {accuracy} is not clearly above chance (1/18)"
    assert images(notebook) >= 1, "the confusion matrix is plotted"
    saved = aws_client(stack, "s3").head_object(
        Bucket=bucket, Key=f"users/{USER}/models/wisdm-activity.keras"
    )
    assert saved["ContentLength"] > 10_000


def test_boston_311_uses_a_sample_offline_and_reports_on_time_rates(run, stack, bucket):
    notebook = run("04-boston-311.ipynb")
    text = stdout(notebook)
    assert line_starting(text, "ROWS") == f"3000 from s3://{bucket}/users/{USER}/boston311/sample.csv"
    rate = float(line_starting(text, "ONTIME_RATE"))
    assert 0 < rate < 1
    assert "PWDx" in text.split("on-time rate by department:")[1]
    assert images(notebook) >= 2


def test_dask_cluster_dashboard_is_reached_through_the_hub_and_etl_scales_by_partitions(
    run, dashboard, generated
):
    text = stdout(run("05-dask-cluster.ipynb"))
    assert int(text.split(" workers,")[0].split()[-1]) >= 1
    seen = dashboard[0]
    assert seen["link"].startswith(f"/user/{USER}/proxy/") and seen["link"].endswith("/status")
    assert seen["status"] == 200, seen["body"][:500]
    assert "Dask" in seen["body"]
    # "PARTITIONS <n> files <f> rows <r> in <s> s": more partitions, more files, the same rows.
    runs = [line.split() for line in text.splitlines() if line.startswith("PARTITIONS ")]
    assert {int(r[1]): (int(r[3]), int(r[5])) for r in runs} == {
        1: (76, generated.clean_rows),
        2: (152, generated.clean_rows),
    }


def test_wisdm_etl_on_a_gateway_cluster_writes_the_rows_of_one_instance_and_leaves_no_instance(
    run, stack, bucket, generated
):
    one_instance = json.loads(line_starting(stdout(run("02-wisdm-etl.ipynb")), "QUALITY"))
    text = stdout(run("06-dask-gateway-cluster.ipynb"))
    assert line_starting(text, "DASHBOARD").startswith(f"{stack.settings.url}/services/dask-dashboards/")
    assert "2 workers," in text
    quality = json.loads(line_starting(text, "QUALITY"))
    assert quality == {name: one_instance[name] for name in quality}
    assert quality["rows_written"] == generated.clean_rows
    assert line_starting(text, "SAME AS NOTEBOOK 2") == "True"
    keys = all_keys(aws_client(stack, "s3"), bucket)
    output = f"users/{USER}/wisdm/parquet-cluster/"
    assert len([k for k in keys if k.startswith(output + "readings/")]) == 72
    assert output + "quality.json" in keys
    # The cluster ran on the user's own instances; the notebook's last cell ended it, and none is left.
    assert line_starting(text, "clusters still running:") == "[]"
    purposes = [
        {t["Key"]: t["Value"] for t in i["Tags"]}["ec2hub:purpose"] for i in cluster_instances(stack, USER)
    ]
    assert purposes.count("dask-scheduler") == 1 and purposes.count("dask-worker") >= 2, purposes
    wait_for(
        lambda: all(i["State"]["Name"] == "terminated" for i in cluster_instances(stack, USER)),
        120,
        "every instance of the cluster to be terminated",
    )


def pinned(package: str) -> str:
    """The version of `package` that images/user/requirements.txt pins."""
    for line in REQUIREMENTS.read_text().splitlines():
        if line.startswith(f"{package}=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{package} is not pinned in {REQUIREMENTS}")


def test_scientific_stack_notebook_exercises_every_library_on_the_users_data(run, server, bucket):
    text = stdout(run("07-the-scientific-stack.ipynb"))
    parquet = f"s3://{bucket}/users/{USER}/scientific-stack/measurements.parquet"
    assert line_starting(text, f"{STACK_ROWS} rows written to") == parquet
    results = json.loads(line_starting(text, "STACK OK"))
    made_with = {"Intercept": 1.5, "x1": 2.0, "x2": -3.0}

    # Models and numbers.
    assert results["sklearn_accuracy"] > 0.9
    assert results["scipy"]["success"] is True
    assert results["scipy"]["x"] == pytest.approx([1.0, 1.0], abs=1e-3)
    assert results["ols"] == pytest.approx(made_with, abs=0.1)
    assert results["ols_r2"] > 0.9
    assert results["torch"] == pytest.approx({**made_with, "loss": 0.25}, abs=0.1)
    assert results["tensorflow"]["lstsq"] == pytest.approx(list(results["ols"].values()), abs=2e-3)
    assert results["tensorflow"]["gradient of t**3 at 3"] == 27.0
    assert results["sympy"] == {"roots": [2, 3], "integral": "sqrt(pi)"}
    assert abs(results["numba_pi"] - math.pi) < 0.01
    assert results["numexpr_same_as_numpy"] is True and results["bottleneck_same_as_pandas"] is True
    spots = [coordinate for spot in results["skimage_spots"] for coordinate in spot]  # (row, column)
    assert spots == pytest.approx([40, 40, 80, 90], abs=2), "the two spots found where they were drawn"

    # Plots: the PNG is in the user's home, where JupyterLab's file browser shows it.
    png = results["seaborn_png"]
    assert png["is_png"] is True and png["bytes"] > 10_000
    listed = requests.get(
        f"{server.api}/contents/{png['path']}", params={"content": "0"}, headers=server.headers, timeout=30
    )
    assert listed.status_code == 200, listed.text
    assert listed.json()["size"] == png["bytes"]
    assert results["altair"] == {"mark": "circle", "rows": 500}
    assert results["graphviz_svg"] is True

    # Data: DuckDB and Polars read back from S3, with the user's role, every row pandas wrote there.
    assert results["rows_written"] == results["duckdb_rows"] == results["polars_rows"] == STACK_ROWS
    assert results["sqlalchemy_rows"] == STACK_ROWS
    assert results["h5py"] == {"same": True, "units": "mV"}
    in_group_a, expected = results["pytables_group_a"]
    assert in_group_a == expected > 0
    assert results["openpyxl"] == {"header": ["group", "count", "mean"], "rows": 3}
    assert results["xlrd"]["sheets"] == ["README", "Monthly", "Quarterly"]
    assert results["xlrd"]["from"] == "1947-01-01" and results["xlrd"]["quarters"] > 200
    assert results["bs4"] == {"small": 0.0416, "large": 0.1664}

    # Notebook tools.
    assert results["pickling"]["cloudpickle"] == results["pickling"]["dill"] == 42
    assert results["pickling"]["pickle"] != "pickled", "plain pickle cannot pickle a lambda"
    assert results["widget"] == {"model": "IntSliderModel", "value": 7, "max": 10}
    assert results["ipympl"] == {"version": pinned("ipympl"), "canvas_is_widget": True}
    assert results["tools"] == {
        "papermill": pinned("papermill"),
        "parameters": ["rows", "seed"],
        "jupyter_resource_usage": pinned("jupyter-resource-usage"),
        "jupyterlab_git": pinned("jupyterlab-git"),
    }
    # The server runs jupyter-resource-usage: the memory JupyterLab's status bar shows comes from here.
    metrics = requests.get(f"{server.api}/metrics/v1", headers=server.headers, timeout=30)
    assert metrics.status_code == 200, metrics.text
    assert metrics.json()["rss"] > 0


BROUGHT = Path(__file__).resolve().parent / "brought" / "tutorials.ipynb"


def test_notebooks_people_bring_from_the_libraries_tutorials_run_unchanged(server):
    """Dask's array and delayed tutorials, scikit-learn's digits example, TensorFlow's quickstart and
    ipywidgets' interact, as written for any Jupyter (tests/notebooks/brought), run top to bottom with
    their task graphs, figures and widgets."""
    notebook = nbformat.read(BROUGHT, as_version=4)
    server.make_folder("brought")
    server.put_file("brought/tutorials.ipynb", BROUGHT.read_text(), kind="notebook")
    server.execute("brought/tutorials.ipynb", notebook)
    text = stdout(notebook)
    assert float(line_starting(text, "mean of z:")) == pytest.approx(1.0, abs=0.05)
    assert line_starting(text, "delayed total:") == "5"
    assert "'Alice': 124500" in text
    assert float(line_starting(text, "SVC accuracy:")) > 0.95
    assert float(line_starting(text, "Keras accuracy:")) > 0.85
    assert line_starting(text, "probabilities sum to one:") == "True"
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    shown = [o.get("data", {}) for o in outputs if o.output_type in ("display_data", "execute_result")]
    # The chunked array's table, two task graphs drawn by Graphviz, the digits and the confusion matrix.
    assert any("Chunk" in d.get("text/html", "") for d in shown), "the dask array's HTML summary"
    assert images(notebook) >= 4
    assert any("application/vnd.jupyter.widget-view+json" in d for d in shown), "interact shows a widget"


def test_everything_written_is_in_the_users_folder(run, stack, bucket, keys_before):
    for name in sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")):
        run(name)
    new = set(all_keys(aws_client(stack, "s3"), bucket)) - keys_before
    assert new, "the notebooks wrote their results"
    assert {k for k in new if not k.startswith(f"users/{USER}/")} == set()
    assert {k.split("/")[2] for k in new} == {
        "getting-started",
        "wisdm",
        "models",
        "boston311",
        "scientific-stack",
    }
