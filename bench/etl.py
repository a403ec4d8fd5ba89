"""ETL benchmark: the WISDM ETL of notebook 2 at full scale, four ways, on the same cores.

    .venv/bin/python bench/etl.py                      # generate (once) and run every engine
    .venv/bin/python bench/etl.py --engines dask,duckdb --subjects 10

Each engine runs in a child process of its own, one after the other, on the same raw files, limited to
the same cores (`--cores`, default 2). For each: wall time of the ETL, rows per second, peak memory of
the whole process tree (the JVM of Spark, the workers of Dask: sampled with psutil), and the Parquet
files written. Results go to bench/results/etl.json.

Every engine does the same work: parse `subject,activity,timestamp,x,y,z;` lines, strip the `;`, type
the columns, drop malformed rows, exact duplicates and out-of-range readings, name the activities,
compute per-window features (10 s windows from the start of each activity), and write the readings as
Parquet partitioned by device, sensor and activity, and the features as Parquet.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "notebooks"))

import wisdm  # noqa: E402

ENGINES = ("dask", "dask-localcluster", "pandas", "pyspark", "duckdb")
WINDOW_S = 10


# ----------------------------------------------------------------------------------------------------
# Engines (each runs in a child process)


def run_dask(raw: Path, out: Path, cores: int) -> None:
    import dask

    with dask.config.set(num_workers=cores):
        wisdm.run_etl(str(raw), str(out), window_seconds=WINDOW_S, scheduler="threads")


def run_dask_localcluster(raw: Path, out: Path, cores: int) -> None:
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=cores, threads_per_worker=1, dashboard_address=None) as cluster:
        with Client(cluster):
            wisdm.run_etl(str(raw), str(out), window_seconds=WINDOW_S)


def run_pandas(raw: Path, out: Path, cores: int) -> None:
    """Plain pandas: read each file with the pyarrow CSV engine, clean with DataFrame methods."""
    import numpy as np
    import pandas as pd

    frames, features = [], []
    names = pd.Series(wisdm.ACTIVITIES)
    for (device, sensor), paths in wisdm.list_raw(str(raw)).items():
        for path in paths:
            df = pd.read_csv(
                path.removeprefix("file://"),
                names=wisdm.COLUMNS,
                engine="pyarrow",
                dtype={
                    "subject": "Int32",
                    "activity": "string",
                    "timestamp": "Int64",
                    "x": "float32",
                    "y": "float32",
                },
                dtype_backend="numpy_nullable",
                on_bad_lines="skip",
            )
            df["z"] = pd.to_numeric(df["z"].astype("string").str.rstrip(";"), errors="coerce").astype(
                "float32"
            )
            df = df.dropna()
            df = df[df["activity"].isin(names.index)]
            df = df.drop_duplicates()
            limit = wisdm.LIMITS[sensor]
            df = df[(df[["x", "y", "z"]].abs() <= limit).all(axis=1)]
            df["activity"] = df["activity"].map(names).astype("category")
            df = df.sort_values(["activity", "timestamp"], kind="stable")
            start = df.groupby("activity", observed=True)["timestamp"].transform("min")
            df["window"] = (df["timestamp"] - start) // (WINDOW_S * wisdm.NS)
            df["mag"] = np.sqrt(df["x"].astype("float64") ** 2 + df["y"] ** 2 + df["z"] ** 2)
            agg = df.groupby(["subject", "activity", "window"], observed=True)[["x", "y", "z", "mag"]].agg(
                ["mean", "std", "min", "max"]
            )
            agg.columns = [f"{a}_{s}" for a, s in agg.columns]
            agg = agg.reset_index().assign(device=device, sensor=sensor)
            features.append(agg)
            frames.append(df.drop(columns=["window", "mag"]).assign(device=device, sensor=sensor))
    readings = pd.concat(frames, ignore_index=True)
    readings = readings.astype({"subject": "int32", "timestamp": "int64"})
    readings.to_parquet(out / "readings", partition_cols=["device", "sensor", "activity"], index=False)
    (out / "features").mkdir(parents=True, exist_ok=True)
    pd.concat(features, ignore_index=True).to_parquet(out / "features" / "part-0.parquet", index=False)


def run_pyspark(raw: Path, out: Path, cores: int) -> None:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = (
        SparkSession.builder.master(f"local[{cores}]")
        .config("spark.driver.memory", "6g")
        .config("spark.sql.shuffle.partitions", str(cores * 4))
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    schema = "subject INT, activity STRING, timestamp BIGINT, x FLOAT, y FLOAT, z STRING"
    df = spark.read.csv(f"{raw}/*/*/data_*.txt", schema=schema, mode="DROPMALFORMED")
    path = F.input_file_name()
    df = df.withColumn("device", F.regexp_extract(path, r"_(phone|watch)\.txt$", 1))
    df = df.withColumn("sensor", F.regexp_extract(path, r"_(accel|gyro)_", 1))
    df = df.withColumn("z", F.expr("try_cast(regexp_replace(z, ';', '') AS FLOAT)"))
    codes = F.create_map(*[F.lit(x) for kv in wisdm.ACTIVITIES.items() for x in kv])
    df = df.withColumn("activity", codes[F.col("activity")]).dropna()
    df = df.dropDuplicates(["device", "sensor", "subject", "activity", "timestamp", "x", "y", "z"])
    limit = F.when(F.col("sensor") == "accel", wisdm.LIMITS["accel"]).otherwise(wisdm.LIMITS["gyro"])
    df = df.where((F.abs("x") <= limit) & (F.abs("y") <= limit) & (F.abs("z") <= limit)).cache()
    df.write.partitionBy("device", "sensor", "activity").parquet(str(out / "readings"))
    from pyspark.sql.window import Window

    start = F.min("timestamp").over(Window.partitionBy("device", "sensor", "subject", "activity"))
    windows = df.withColumn("window", F.floor((F.col("timestamp") - start) / (WINDOW_S * wisdm.NS)))
    windows = windows.withColumn("mag", F.sqrt(F.col("x") ** 2 + F.col("y") ** 2 + F.col("z") ** 2))
    aggregates = [
        fn(c).alias(f"{c}_{name}")
        for c in ("x", "y", "z", "mag")
        for name, fn in (("mean", F.mean), ("std", F.stddev_pop), ("min", F.min), ("max", F.max))
    ]
    windows.groupBy("device", "sensor", "subject", "activity", "window").agg(*aggregates).write.parquet(
        str(out / "features")
    )
    spark.stop()


def run_duckdb(raw: Path, out: Path, cores: int) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {cores}")
    codes = ", ".join(f"('{code}', '{name}')" for code, name in wisdm.ACTIVITIES.items())
    # The statements are built from this file's constants and paths only.
    con.execute(f"CREATE TEMP TABLE names(code VARCHAR, activity VARCHAR); INSERT INTO names VALUES {codes}")  # noqa: S608
    con.execute(
        f"""
        CREATE TEMP TABLE clean AS
        WITH raw AS (
            SELECT regexp_extract(filename, '_(phone|watch)\\.txt$', 1) AS device,
                   regexp_extract(filename, '_(accel|gyro)_', 1) AS sensor,
                   subject, activity AS code, timestamp, x, y, TRY_CAST(rtrim(z, ';') AS FLOAT) AS z
            FROM read_csv('{raw}/*/*/data_*.txt', header = false, filename = true, ignore_errors = true,
                 columns = {{'subject': 'INTEGER', 'activity': 'VARCHAR', 'timestamp': 'BIGINT',
                            'x': 'FLOAT', 'y': 'FLOAT', 'z': 'VARCHAR'}})
        )
        SELECT DISTINCT device, sensor, subject, n.activity, timestamp, x, y, z
        FROM raw JOIN names n ON raw.code = n.code
        WHERE subject IS NOT NULL AND timestamp IS NOT NULL AND x IS NOT NULL AND y IS NOT NULL
          AND z IS NOT NULL
          AND greatest(abs(x), abs(y), abs(z)) <= CASE sensor WHEN 'accel' THEN {wisdm.LIMITS["accel"]}
                                                              ELSE {wisdm.LIMITS["gyro"]} END
        """  # noqa: S608
    )
    con.execute(f"COPY clean TO '{out}/readings' (FORMAT parquet, PARTITION_BY (device, sensor, activity))")
    aggregates = ", ".join(
        f"{fn}({c}) AS {c}_{name}"
        for c in ("x", "y", "z", "mag")
        for name, fn in (("mean", "avg"), ("std", "stddev_pop"), ("min", "min"), ("max", "max"))
    )
    (out / "features").mkdir(parents=True, exist_ok=True)
    con.execute(
        f"""
        COPY (
            SELECT device, sensor, subject, activity, "window", count(*) AS n, {aggregates}
            FROM (
                SELECT *, sqrt(x * x + y * y + z * z) AS mag,
                       (timestamp - min(timestamp) OVER (PARTITION BY device, sensor, subject, activity))
                         // {WINDOW_S * wisdm.NS} AS "window"
                FROM clean
            )
            GROUP BY ALL
        ) TO '{out}/features/part-0.parquet' (FORMAT parquet)
        """  # noqa: S608
    )


RUNNERS = {
    "dask": run_dask,
    "dask-localcluster": run_dask_localcluster,
    "pandas": run_pandas,
    "pyspark": run_pyspark,
    "duckdb": run_duckdb,
}


def child(engine: str, raw: Path, out: Path, cores: int) -> None:
    started = time.perf_counter()
    RUNNERS[engine](raw, out, cores)
    print(json.dumps({"etl_s": time.perf_counter() - started}), flush=True)


# ----------------------------------------------------------------------------------------------------
# Orchestration


def tree_rss(process) -> int:
    import psutil

    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def measure(engine: str, raw: Path, out: Path, cores: int) -> dict:
    import psutil

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cpus = sorted(os.sched_getaffinity(0))[:cores]
    command = [sys.executable, __file__, "--child", engine, "--raw", str(raw), "--out", str(out)]
    command += ["--cores", str(cores)]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "OMP_NUM_THREADS": str(cores)}
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watched = psutil.Process(process.pid)
    watched.cpu_affinity(cpus)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, tree_rss(watched))
            except Exception:  # noqa: S110 - the child may end between two samples
                pass
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    done.set()
    sampler.join()
    process_s = time.perf_counter() - started
    if process.returncode != 0:
        return {"engine": engine, "error": stderr.strip().splitlines()[-20:]}
    etl_s = json.loads(stdout.strip().splitlines()[-1])["etl_s"]
    return {
        "engine": engine,
        "etl_s": etl_s,
        "process_s": process_s,
        "peak_rss_mb": peak / 2**20,
        **outputs(out),
    }


def outputs(out: Path) -> dict:
    import pyarrow.parquet as pq

    files = [p for p in (out / "readings").rglob("*") if p.is_file() and not p.name.startswith(("_", "."))]
    sizes = [p.stat().st_size for p in files]
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
    feature_files = [p for p in (out / "features").rglob("*.parquet")]
    features = sum(pq.ParquetFile(p).metadata.num_rows for p in feature_files)
    return {
        "rows_out": rows,
        "feature_rows": features,
        "files": len(files),
        "output_mb": sum(sizes) / 2**20,
        "mean_file_mb": (sum(sizes) / len(sizes) / 2**20) if sizes else 0,
        "smallest_file_kb": min(sizes) / 1024 if sizes else 0,
    }


def machine() -> dict:
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    total_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gb": round(total_kb / 2**20, 1),
        "python": sys.version.split()[0],
    }


def versions() -> dict:
    found = {}
    for name in ("dask", "pandas", "pyarrow", "pyspark", "duckdb"):
        try:
            found[name] = __import__(name).__version__
        except ImportError:
            found[name] = None
    return found


def ensure_raw(raw: Path, subjects: int, seconds: float, seed: int, cores: int) -> dict:
    manifest = raw / "manifest.json"
    wanted = {"subjects": subjects, "seconds_per_activity": seconds, "seed": seed}
    if manifest.exists():
        known = json.loads(manifest.read_text())
        if {k: known.get(k) for k in wanted} == wanted:
            return known
    shutil.rmtree(raw, ignore_errors=True)
    generated = wisdm.generate_raw(str(raw), subjects, seconds, seed=seed, processes=cores)
    info = {
        **wanted,
        "files": len(generated.files),
        "lines": generated.lines,
        "clean_rows": generated.clean_rows,
        "bytes": sum(p.stat().st_size for p in raw.rglob("*.txt")),
    }
    manifest.write_text(json.dumps(info, indent=2))
    return info


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--subjects", type=int, default=51)
    parser.add_argument("--seconds", type=float, default=180, help="seconds per activity (full scale: 180)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=REPO / "state" / "bench" / "wisdm")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results" / "etl.json")
    parser.add_argument(
        "--keep-others", action="store_true", help="keep the last figures of engines not run this time"
    )
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--raw", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.raw, args.out, args.cores)
        return

    load_at_start = os.getloadavg()
    raw = args.work / "raw"
    data = ensure_raw(raw, args.subjects, args.seconds, args.seed, args.cores)
    print(
        f"raw: {data['lines']:,} lines, {data['bytes'] / 2**20:,.0f} MiB in {data['files']} files", flush=True
    )
    results = []
    for engine in args.engines.split(","):
        load = os.getloadavg()[0]
        result = measure(engine, raw, args.work / f"out-{engine}", args.cores)
        result.update(when=time.strftime("%Y-%m-%dT%H:%M:%S%z"), load_average_1min_at_start=load)
        if "etl_s" in result:
            result["rows_per_s"] = data["lines"] / result["etl_s"]
            result["output_matches_expected"] = result["rows_out"] == data["clean_rows"]
            print(
                f"{engine:>18}: {result['etl_s']:6.1f} s  {result['rows_per_s'] / 1e6:5.2f} M rows/s  "
                f"peak {result['peak_rss_mb']:6.0f} MiB  {result['files']:6} files "
                f"(mean {result['mean_file_mb']:.2f} MiB)  rows out {result['rows_out']:,}",
                flush=True,
            )
        else:
            print(f"{engine:>18}: failed\n  " + "\n  ".join(result["error"]), flush=True)
        results.append(result)
        shutil.rmtree(args.work / f"out-{engine}", ignore_errors=True)

    if args.keep_others and args.results.exists():
        # Engines not run this time keep their last figures (each result carries its own time and load).
        ran = {r["engine"] for r in results}
        earlier = json.loads(args.results.read_text()).get("results", [])
        results = [r for r in earlier if r["engine"] not in ran and r["engine"] in ENGINES] + results
        results.sort(key=lambda r: ENGINES.index(r["engine"]))
    by = {r["engine"]: r for r in results if "etl_s" in r}
    targets = {}
    if "dask" in by and "pyspark" in by:
        speedup = by["pyspark"]["etl_s"] / by["dask"]["etl_s"]
        targets["dask_at_least_2x_faster_than_pyspark"] = {"ratio": speedup, "met": speedup >= 2}
    if "dask" in by and "duckdb" in by:
        ratio = by["dask"]["etl_s"] / by["duckdb"]["etl_s"]
        targets["dask_within_2x_of_duckdb"] = {"ratio": ratio, "met": ratio <= 2}
    if "dask" in by:
        targets["dask_reasonable_files"] = {
            "files": by["dask"]["files"],
            "mean_file_mb": by["dask"]["mean_file_mb"],
            "met": by["dask"]["files"] <= 4 * len(wisdm.NAMES) * 4 and by["dask"]["mean_file_mb"] >= 1,
        }
    report = {
        "benchmark": "WISDM ETL (notebook 2) at full scale",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "load_average_at_start": load_at_start,
        "cores": args.cores,
        "versions": versions(),
        "data": data,
        "results": results,
        "targets": targets,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2))
    print(json.dumps(targets, indent=2))
    print(f"written {args.results}")


if __name__ == "__main__":
    main()
