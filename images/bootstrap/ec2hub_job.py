"""A notebook job on its instance (the bootstrap's `job` purpose, after the settings are read and root
is dropped): its inputs from the owner's S3 folder, the notebook run with papermill, the results back
to S3 under the job's output prefix, and the start and the outcome reported to the hub's jobs service."""

import ast
import contextlib
import json
import logging
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

# The hub may be restarting when a job ends: its reports are retried for a while.
JOB_LOG = "job.log"
LOG_TAIL_LINES = 40
LOG_TAIL_CHARS = 4000
STARTED_REPORT_DEADLINE = 120.0
FINISHED_REPORT_DEADLINE = 900.0
REPORT_DELAY = 1.0
REPORT_MAX_DELAY = 15.0
CONTENT_TYPES = {
    ".ipynb": "application/x-ipynb+json",
    ".html": "text/html",
    ".log": "text/plain",
    ".json": "application/json",
}


def log(message):
    print(f"ec2hub-bootstrap (job): {message}", flush=True)


def run_notebook_job(settings, work, s3=None):
    """One attempt of a job in the fresh folder `work`: its inputs from S3, the notebook run, the
    results back to S3, the outcome to the jobs service (which is told when the run starts, too)."""
    import boto3

    s3 = s3 or boto3.client("s3")
    job = settings["job"]
    bucket = os.environ["EC2HUB_BUCKET"]
    report_url, secret = settings["report_url"], settings["report_token"]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    log_path = os.path.join(work, JOB_LOG)
    with job_log(log_path) as logger:
        start_time = now_ms()
        started = {"attempt_started": start_time}
        status, message = attempt(
            job,
            work,
            s3,
            bucket,
            logger,
            lambda: post_report(f"{report_url}/started", secret, started, STARTED_REPORT_DEADLINE),
        )
        end_time = now_ms()
        logger.info(f"job {status}" + (f": {message}" if message else ""))
        outcome = {"status": status, "status_message": message, "start_time": start_time}
        outcome |= {"end_time": end_time, **notebook_times(os.path.join(work, f"{job['output_stem']}.ipynb"))}
        outputs = publish(s3, bucket, job, work, outcome)
    finished = {**outcome, "log_tail": log_tail(log_path), "outputs": outputs}
    post_report(f"{report_url}/finished", secret, finished, FINISHED_REPORT_DEADLINE)


def attempt(job, work, s3, bucket, logger, report_started):
    """Download the inputs, report the start, run the notebook: its status and status message."""
    import papermill

    inputs = os.path.join(work, "input")
    try:
        only = None if job.get("input_folder", True) else job["input_name"]
        download_inputs(s3, bucket, job["input_prefix"], inputs, only)
        notebook = inside(inputs, job["input_name"])
        report_started()
        papermill.execute_notebook(
            notebook,
            os.path.join(work, f"{job['output_stem']}.ipynb"),
            parameters=job_parameters(job.get("parameters") or {}),
            cwd=os.path.dirname(notebook),
            log_output=True,
            progress_bar=False,
        )
        return "COMPLETED", ""
    except papermill.PapermillExecutionError as e:
        logger.error(str(e))
        return "FAILED", f"{e.ename}: {e.evalue} (in cell [{e.exec_count}])"
    except Exception as e:
        logger.exception("the job could not run")
        return "FAILED", f"{type(e).__name__}: {e}"


@contextlib.contextmanager
def job_log(path):
    """The job's log, in `path` and on the console: papermill's lines, with the cells' outputs."""
    logger = logging.getLogger("papermill")
    handlers = [logging.FileHandler(path), logging.StreamHandler(sys.stdout)]
    level = logger.level
    logger.setLevel(logging.INFO)
    for handler in handlers:
        handler.addFilter(without_final_newline)
        logger.addHandler(handler)
    try:
        yield logger
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(level)


def without_final_newline(record):
    """A cell's output usually ends with a newline, and the log adds its own."""
    if isinstance(record.msg, str):
        record.msg = record.msg.rstrip("\n")
    return True


def now_ms():
    return int(time.time() * 1000)


def job_parameters(texts):
    """The notebook's parameters from their texts: Python literals (`3`, `'x'`, `True`), as
    jupyter-scheduler writes them, and any other text (a bare word) taken as the string it is."""
    values = {}
    for name, text in texts.items():
        try:
            values[name] = ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            values[name] = text
    return values


def inside(folder, relative):
    """`folder`/`relative`, refused when the relative path (an S3 key's tail) would lead out of it."""
    parts = relative.split("/")
    if not relative or relative.startswith("/") or ".." in parts:
        raise ValueError(f"refused {relative!r}: it would lead out of the job's folder")
    return os.path.join(folder, *parts)


def download_inputs(s3, bucket, prefix, folder, only=None):
    """Every object under the job's input prefix (the notebook, and its folder when packaged with
    it), at the same relative path in `folder`; with `only`, that one file of it."""
    if only is not None:
        from botocore.exceptions import ClientError

        path = inside(folder, only)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            s3.download_file(bucket, prefix + only, path)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey"):
                raise
            raise FileNotFoundError(f"no notebook at s3://{bucket}/{prefix}{only}") from None
        return
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix) :]
            if not relative or relative.endswith("/"):
                continue  # a folder's marker
            path = inside(folder, relative)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            s3.download_file(bucket, item["Key"], path)


def epoch_ms(moment):
    """An ISO 8601 time (papermill's, in UTC) in milliseconds since the epoch; None if there is none."""
    if not moment:
        return None
    parsed = datetime.fromisoformat(moment)
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)


def notebook_times(path):
    """When the executed notebook's first code cell started and when its run ended (papermill's marks)."""
    import nbformat

    try:
        notebook = nbformat.read(path, as_version=4)
    except (OSError, ValueError):
        return {"first_cell_start": None, "last_cell_end": None}
    starts = (cell.metadata.get("papermill", {}).get("start_time") for cell in notebook.cells)
    return {
        "first_cell_start": epoch_ms(next(filter(None, starts), None)),
        "last_cell_end": epoch_ms(notebook.metadata.get("papermill", {}).get("end_time")),
    }


def export_html(executed, html):
    """The executed notebook as a page; a notebook that cannot be exported costs only its page."""
    from nbconvert import HTMLExporter

    try:
        body, _ = HTMLExporter().from_filename(executed)
    except Exception as e:
        log(f"no HTML page of the notebook: {type(e).__name__}: {e}")
        return
    with open(html, "w", encoding="utf-8") as f:
        f.write(body)


def publish(s3, bucket, job, work, outcome):
    """The job's results under its output prefix: the executed notebook (what ran of it, even when it
    failed) in the formats asked for, the log and the status. Their names, by kind, as uploaded."""
    stem, formats = job["output_stem"], job.get("output_formats") or []
    executed = os.path.join(work, f"{stem}.ipynb")
    if "html" in formats and os.path.exists(executed):
        export_html(executed, os.path.join(work, f"{stem}.html"))
    with open(os.path.join(work, "status.json"), "w") as f:
        json.dump(outcome, f)
    results = {kind: f"{stem}.{kind}" for kind in ("ipynb", "html") if kind in formats}
    results |= {"log": JOB_LOG, "status": "status.json"}
    outputs = {}
    for kind, name in results.items():
        path = os.path.join(work, name)
        if not os.path.exists(path):
            continue
        content_type = CONTENT_TYPES[os.path.splitext(name)[1]]
        try:
            s3.upload_file(path, bucket, job["output_prefix"] + name, ExtraArgs={"ContentType": content_type})
        except Exception as e:
            log(f"{name} not saved in S3: {type(e).__name__}: {e}")
            continue
        outputs[kind] = name
    return outputs


def log_tail(path):
    """The end of the job's log, for the job list: its last lines, within a bound."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-LOG_TAIL_LINES:])[-LOG_TAIL_CHARS:]


def post_report(url, secret, body, deadline):
    """POST a report to the jobs service. While the service is away (a restart) it is tried again,
    until `deadline` seconds have passed; a refusal (4xx) is final. A report never fails the job."""
    what = url.rsplit("/", 1)[-1]
    give_up = time.monotonic() + deadline
    delay = REPORT_DELAY
    while True:
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {secret}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10):
                return True
        except urllib.error.HTTPError as e:
            if e.code < 500:
                log(f"the jobs service refused the report {what}: HTTP {e.code}")
                return False
            failure = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            failure = str(e)
        if time.monotonic() + delay > give_up:
            log(f"the report {what} was not delivered: {failure}")
            return False
        log(f"the report {what} was not delivered ({failure}); trying again in {delay:g} s")
        time.sleep(delay)
        delay = min(delay * 2, REPORT_MAX_DELAY)
