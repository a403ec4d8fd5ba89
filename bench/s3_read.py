"""Reading a Parquet dataset from the user's S3 prefix, four ways, from inside a user server.

    .venv/bin/python bench/s3_read.py [--size-mb 1024] [--files 8]

Starts the platform on the local cloud, writes a Parquet dataset of about `--size-mb` to a user's
prefix, starts that user's server, and from their kernel (their role, their mount) reads it:

- mount:   pyarrow reads the files under ~/s3 (s3fs-fuse)
- s3fs:    pandas.read_parquet("s3://...") through python s3fs, what the notebooks do
- s3fs_whole_files: python s3fs fetching every file at once in one request each, then pyarrow
- pyarrow: pyarrow.dataset with pyarrow's own S3 filesystem
- boto3:   raw GetObject of every file, in parallel, bytes only (the ceiling)

MB/s is the dataset's size on S3 over the wall time of the read; each way's ratio is to raw boto3.
Writes bench/results/s3_read.json.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hub.identity import UserNames  # noqa: E402
from localcloud.up import Stack  # noqa: E402
from tests.e2e.kernel import Kernel  # noqa: E402
from tests.e2e.stack import approved_user, aws_client, stack_env  # noqa: E402

RESULTS = REPO / "bench" / "results"
USER = "reader"
DATASET = "bench/s3-read"

# Runs in the user's kernel: each way reads the whole dataset; prints one JSON line.
READER = r"""
import json, os, time
from concurrent.futures import ThreadPoolExecutor
import boto3, pandas as pd, pyarrow.dataset as ds, pyarrow.fs as pafs, pyarrow.parquet as pq

bucket, prefix = os.environ["EC2HUB_BUCKET"], os.environ["EC2HUB_USER_PREFIX"] + "DATASET/"
s3 = boto3.client("s3")
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
size = sum(o["Size"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"])

def raw():
    def get(key):
        return len(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    with ThreadPoolExecutor(len(keys)) as pool:
        return sum(pool.map(get, keys))

def mount():
    return pq.read_table(os.path.expanduser("~/s3/DATASET")).num_rows

def s3fs_pandas():
    return len(pd.read_parquet(f"s3://{bucket}/{prefix}"))

def pyarrow_s3():
    credentials = boto3.Session().get_credentials().get_frozen_credentials()
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    fs = pafs.S3FileSystem(
        access_key=credentials.access_key, secret_key=credentials.secret_key,
        session_token=credentials.token, region=os.environ["AWS_REGION"],
        endpoint_override=endpoint.split("://")[-1] or None,
        scheme=endpoint.split("://")[0] if endpoint else "https",
    )
    return ds.dataset(f"{bucket}/{prefix}", filesystem=fs, format="parquet").to_table().num_rows

def s3fs_whole_files():
    import io, pyarrow as pa, s3fs
    fs = s3fs.S3FileSystem()
    blobs = fs.cat([f"{bucket}/{key}" for key in keys])  # every file at once, each in one request
    return pa.concat_tables(pq.read_table(io.BytesIO(b)) for b in blobs.values()).num_rows

results = {}
ways = [("boto3", raw), ("mount", mount), ("s3fs", s3fs_pandas), ("s3fs_whole_files", s3fs_whole_files),
        ("pyarrow", pyarrow_s3)]
for name, read in ways:
    started = time.perf_counter()
    try:
        read()
        seconds = time.perf_counter() - started
        results[name] = {"seconds": round(seconds, 3), "mb_per_s": round(size / seconds / 1e6, 1)}
    except Exception as e:
        results[name] = {"error": f"{type(e).__name__}: {e}"}
print(json.dumps({"bytes": size, "files": len(keys), "ways": results}))
"""


def write_dataset(s3, bucket: str, prefix: str, size_mb: int, files: int) -> None:
    """Parquet files of numeric columns (little compression, like sensor data) to `prefix`."""
    rng = np.random.default_rng(7)
    rows = max(1, size_mb * 1_000_000 // files // 40)  # about 40 bytes a row once written
    for n in range(files):
        frame = pd.DataFrame(
            {
                "ts": np.arange(rows, dtype="int64") + n * rows,
                "x": rng.standard_normal(rows),
                "y": rng.standard_normal(rows),
                "z": rng.standard_normal(rows),
                "subject": rng.integers(1600, 1651, rows, dtype="int32"),
            }
        )
        buffer = io.BytesIO()
        frame.to_parquet(buffer, compression="snappy", row_group_size=1_000_000)
        s3.put_object(Bucket=bucket, Key=f"{prefix}{DATASET}/part-{n:03d}.parquet", Body=buffer.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=1024, help="dataset size (default 1024)")
    parser.add_argument("--files", type=int, default=8, help="Parquet files in the dataset (default 8)")
    parser.add_argument("--output", type=Path, default=RESULTS / "s3_read.json")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ec2hub-bench-") as tmp:
        with (RESULTS / "s3_read-stack.log").open("w") as log:
            stack = Stack(stack_env(Path(tmp) / "state", subnet_base=104), output=log)
            stack.start()
            try:
                client = approved_user(stack, USER)
                bucket = stack.outputs["bucket"]
                prefix = UserNames.of(USER).prefix
                write_dataset(aws_client(stack, "s3"), bucket, prefix, args.size_mb, args.files)
                client.start(USER)
                client.wait_ready(USER, timeout=180)
                kernel = Kernel(stack.settings.url, USER, client.token(USER), timeout=1800)
                run = kernel.run(READER.replace("DATASET", DATASET))
                kernel.shutdown()
                if not run.ok:
                    raise RuntimeError("\n".join(run.errors))
                measured = json.loads(run.stdout.strip().splitlines()[-1])
            finally:
                stack.stop()
    raw = measured["ways"]["boto3"]["mb_per_s"]
    for way in measured["ways"].values():
        if "mb_per_s" in way:
            way["ratio_to_boto3"] = round(way["mb_per_s"] / raw, 2)
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": len(__import__("os").sched_getaffinity(0))},
        "dataset_mb": round(measured["bytes"] / 1e6, 1),
        **measured,
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
