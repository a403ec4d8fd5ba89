"""Reading a Parquet dataset from the user's S3 prefix, four ways, from inside a user server.

    .venv/bin/python bench/s3_read.py [--size-mb 1024] [--files 8] [--repeat 2]

Starts the platform on the local cloud, writes a Parquet dataset of about `--size-mb` to a user's
prefix, starts that user's server, and from their kernel (their role, their mount, the settings the
image gives every server) reads it, each way as bytes (the transport alone), into an Arrow table
(what analysis needs: transport and Parquet decoding, which on two cores costs as much as the
transport) and, for pandas, into a DataFrame:

- boto3:   raw GetObject of every file in parallel (the ceiling); table: pyarrow decodes each body;
           DataFrame: that table converted to pandas
- pyarrow: pyarrow's own S3 client from the s3:// URL (pyarrow.dataset), what the notebooks use
- s3fs:    python s3fs (fsspec), fetching every file at once; table: pyarrow.dataset over s3fs
- mount:   the files under ~/s3 (s3fs-fuse); table: pyarrow.dataset over the folder
- pandas:  pandas.read_parquet("s3://..."), the notebooks' other path, into a DataFrame

MB/s is the dataset's size on S3 over the wall time of the read (the best of `--repeat` reads, taken
in rounds through every way, so that the machine's load weighs on all ways alike); each way's ratio
is to boto3's in the same kind of read. The notebooks' path is pyarrow (table) and pandas
(DataFrame). Writes bench/results/s3_read.json, with the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from localcloud.up import Stack  # noqa: E402
from spawner.identity import UserNames  # noqa: E402
from tests.e2e.kernel import Kernel  # noqa: E402
from tests.e2e.stack import approved_user, aws_client, stack_env  # noqa: E402

RESULTS = REPO / "bench" / "results"
USER = "reader"
DATASET = "bench/s3-read"

# Runs in the user's kernel: each way reads the whole dataset; prints one JSON line.
READER = r"""
import io, json, os, time
from concurrent.futures import ThreadPoolExecutor
import boto3, pandas as pd, pyarrow as pa, pyarrow.dataset as ds, pyarrow.fs as pafs, pyarrow.parquet as pq
import s3fs

bucket, prefix = os.environ["EC2HUB_BUCKET"], os.environ["EC2HUB_USER_PREFIX"] + "DATASET/"
url = f"s3://{bucket}/{prefix}"
folder = os.path.expanduser("~/s3/DATASET")
s3 = boto3.client("s3")
listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
keys = [o["Key"] for o in listing]
size = sum(o["Size"] for o in listing)
pool = ThreadPoolExecutor(len(keys))

def boto3_bytes():
    return sum(pool.map(lambda k: len(s3.get_object(Bucket=bucket, Key=k)["Body"].read()), keys))

def boto3_arrow():
    def get(key):
        return pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    return pa.concat_tables(pool.map(get, keys))

def boto3_table():
    return boto3_arrow().num_rows

def boto3_dataframe():
    return len(boto3_arrow().to_pandas())

arrow_fs, arrow_root = pafs.FileSystem.from_uri(url)

def pyarrow_bytes():
    def get(key):
        with arrow_fs.open_input_file(f"{bucket}/{key}") as f:
            return len(f.read())
    return sum(pool.map(get, keys))

def pyarrow_table():
    return ds.dataset(url, format="parquet").to_table().num_rows

# Each file in one request, then decoded from memory (pyarrow's read coalescing, without its limits).
WHOLE_FILES = ds.ParquetFragmentScanOptions(
    pre_buffer=True,
    cache_options=pa.CacheOptions(hole_size_limit=1 << 26, range_size_limit=1 << 34, lazy=False),
)

def pyarrow_whole_files_table():
    return ds.dataset(url, format="parquet").to_table(fragment_scan_options=WHOLE_FILES).num_rows

python_fs = s3fs.S3FileSystem()

def s3fs_bytes():
    return sum(len(b) for b in python_fs.cat([f"{bucket}/{k}" for k in keys]).values())

def s3fs_table():
    return ds.dataset(f"{bucket}/{prefix}", filesystem=python_fs, format="parquet").to_table().num_rows

def mount_bytes():
    def get(name):
        with open(os.path.join(folder, name), "rb") as f:
            return len(f.read())
    return sum(pool.map(get, os.listdir(folder)))

def mount_table():
    return ds.dataset(folder, format="parquet").to_table().num_rows

def pandas_dataframe():
    return len(pd.read_parquet(url))

ways = {
    "boto3": {"bytes": boto3_bytes, "table": boto3_table, "dataframe": boto3_dataframe},
    "pyarrow": {"bytes": pyarrow_bytes, "table": pyarrow_table},
    "pyarrow_whole_files": {"table": pyarrow_whole_files_table},
    "s3fs": {"bytes": s3fs_bytes, "table": s3fs_table},
    "mount": {"bytes": mount_bytes, "table": mount_table},
    "pandas": {"dataframe": pandas_dataframe},
}
best, errors = {}, {}
for _ in range(REPEAT):
    for name, reads in ways.items():
        for kind, read in reads.items():
            if (name, kind) in errors:
                continue
            try:
                started = time.perf_counter()
                read()
                seconds = time.perf_counter() - started
            except Exception as e:
                errors[name, kind] = f"{type(e).__name__}: {e}"
                continue
            best[name, kind] = min(best.get((name, kind), seconds), seconds)
results = {name: {} for name in ways}
for (name, kind), seconds in best.items():
    results[name][kind] = {"seconds": round(seconds, 3), "mb_per_s": round(size / seconds / 1e6, 1)}
for (name, kind), error in errors.items():
    results[name][kind] = {"error": error}
settings = {
    "ARROW_IO_THREADS": os.environ.get("ARROW_IO_THREADS"),
    "pyarrow_io_threads": pa.io_thread_count(),
    "pyarrow_cpu_threads": pa.cpu_count(),
}
print(json.dumps({"bytes": size, "files": len(keys), "ways": results, "kernel": settings}))
"""


def write_dataset(s3, bucket: str, prefix: str, size_mb: int, files: int) -> None:
    """Parquet files of numeric columns (little compression, like sensor data) to `prefix`."""
    rng = np.random.default_rng(7)
    rows = max(1, size_mb * 1_000_000 // files // 30)  # about 30 bytes a row once written
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
    parser.add_argument("--repeat", type=int, default=2, help="reads of each kind, the best kept")
    parser.add_argument("--output", type=Path, default=RESULTS / "s3_read.json")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
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
                run = kernel.run(READER.replace("DATASET", DATASET).replace("REPEAT", str(args.repeat)))
                kernel.shutdown()
                if not run.ok:
                    raise RuntimeError("\n".join(run.errors))
                measured = json.loads(run.stdout.strip().splitlines()[-1])
            finally:
                stack.stop()
    load_after = os.getloadavg()
    for kind in ("bytes", "table", "dataframe"):
        raw = measured["ways"]["boto3"][kind].get("mb_per_s")
        for way in measured["ways"].values():
            if raw and "mb_per_s" in way.get(kind, {}):
                way[kind]["ratio_to_boto3"] = round(way[kind]["mb_per_s"] / raw, 2)
    notebooks = {
        "pyarrow_table": measured["ways"]["pyarrow"]["table"].get("ratio_to_boto3", 0),
        "pandas_dataframe": measured["ways"]["pandas"]["dataframe"].get("ratio_to_boto3", 0),
    }
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            # Other work on the machine (1-, 5- and 15-minute averages) when the run began and ended.
            "load_average": {
                "before": [round(x, 2) for x in load_before],
                "after": [round(x, 2) for x in load_after],
            },
        },
        "dataset_mb": round(measured["bytes"] / 1e6, 1),
        **measured,
        "default_path": {
            "ways": "pyarrow (table), pandas (DataFrame)",
            "ratios_to_boto3": notebooks,
            "target": 0.8,
            "met": min(notebooks.values()) >= 0.8,
        },
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
