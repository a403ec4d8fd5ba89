"""The WISDM activity dataset: a generator of its raw format, and the ETL shared by notebooks and bench.

The real dataset ("WISDM Smartphone and Smartwatch Activity and Biometrics Dataset", UCI Machine Learning
Repository, id 507) holds, for 51 subjects (ids 1600-1650) and 18 activities, phone and watch
accelerometer and gyroscope readings at 20 Hz, as text files laid out as

    raw/{phone,watch}/{accel,gyro}/data_<subject>_<sensor>_<device>.txt

with one reading a line: ``subject,activity,timestamp,x,y,z;``. `generate_raw` writes files of exactly
that format and layout (with a few dirty rows, as real captures have), at any scale, deterministically
from a seed. `run_etl` parses, cleans, adds per-window features and writes partitioned Parquet.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

# The activity key of the dataset (activity_key.txt): codes A..S, without N.
ACTIVITIES = {
    "A": "walking",
    "B": "jogging",
    "C": "stairs",
    "D": "sitting",
    "E": "standing",
    "F": "typing",
    "G": "brushing_teeth",
    "H": "eating_soup",
    "I": "eating_chips",
    "J": "eating_pasta",
    "K": "drinking",
    "L": "eating_sandwich",
    "M": "kicking",
    "O": "catch",
    "P": "dribbling",
    "Q": "writing",
    "R": "clapping",
    "S": "folding_clothes",
}
CODES = list(ACTIVITIES)
NAMES = list(ACTIVITIES.values())
DEVICES = ("phone", "watch")
SENSORS = ("accel", "gyro")
FIRST_SUBJECT = 1600
SAMPLE_HZ = 20
NS = 1_000_000_000
# Plausible physical limits: phones and watches report acceleration in m/s^2 (8 g is beyond any of these
# activities) and rotation in rad/s (consumer gyroscopes saturate near 35 rad/s).
LIMITS = {"accel": 80.0, "gyro": 40.0}
RAW_NAME = re.compile(r"data_(\d+)_(accel|gyro)_(phone|watch)\.txt$")
COLUMNS = ["subject", "activity", "timestamp", "x", "y", "z"]
FEATURE_STATS = ("mean", "std", "min", "max")


# ----------------------------------------------------------------------------------------------------
# Generator


@dataclass
class GeneratedFile:
    path: str
    lines: int
    duplicates: int
    out_of_range: int
    malformed: int
    missing_terminator: int


@dataclass
class Generated:
    files: list[GeneratedFile] = field(default_factory=list)

    @property
    def lines(self) -> int:
        return sum(f.lines for f in self.files)

    def total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.files)

    @property
    def clean_rows(self) -> int:
        """Rows a correct cleaning keeps: everything but duplicates, out-of-range and malformed rows."""
        return self.lines - self.total("duplicates") - self.total("out_of_range") - self.total("malformed")


def _signature(device: int, sensor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per activity: mean vector, amplitude and frequency of the movement; the same for every subject."""
    rng = np.random.default_rng([20, 19, device, sensor])
    n = len(CODES)
    if sensor == 0:  # accelerometer: gravity in a direction that depends on the posture
        direction = rng.normal(size=(n, 3))
        mean = 9.81 * direction / np.linalg.norm(direction, axis=1, keepdims=True)
        amplitude = rng.uniform(0.3, 7.0, size=(n, 3))
    else:
        mean = rng.normal(0, 0.05, size=(n, 3))
        amplitude = rng.uniform(0.1, 4.0, size=(n, 3))
    frequency = rng.uniform(0.3, 3.5, size=(n, 1)) * rng.uniform(0.8, 1.25, size=(n, 3))
    return mean, amplitude, frequency


def _generate(
    subject: int, device: str, sensor: str, seconds: float, seed: int, dirty: float
) -> tuple[bytes, GeneratedFile]:
    d, k = DEVICES.index(device), SENSORS.index(sensor)
    rng = np.random.default_rng([seed, subject, d, k])
    mean, amplitude, frequency = _signature(d, k)
    per_activity = int(seconds * SAMPLE_HZ)
    n = per_activity * len(CODES)
    activity = np.repeat(np.arange(len(CODES)), per_activity)
    # Device clocks count nanoseconds since boot; readings come every 50 ms with a little jitter, and
    # activities are recorded one after the other with a pause between them.
    step = NS // SAMPLE_HZ + rng.integers(-2_000_000, 2_000_001, size=n)
    step[::per_activity] = rng.integers(30, 120, size=len(CODES)) * NS
    timestamp = int(rng.integers(10**13, 4 * 10**14)) + np.cumsum(step)
    t = (timestamp - timestamp[0]) / NS
    gain = rng.uniform(0.85, 1.15, size=3)
    tempo = rng.uniform(0.9, 1.1)
    phase = rng.uniform(0, 2 * np.pi, size=(len(CODES), 3))
    values = (
        mean[activity]
        + gain
        * amplitude[activity]
        * np.sin(2 * np.pi * tempo * frequency[activity] * t[:, None] + phase[activity])
        + rng.normal(0, 0.25, size=(n, 3))
    ).astype(np.float32)

    # Dirty rows, on disjoint sets of readings: out-of-range values, a field left empty, a missing `;`,
    # and readings written twice.
    count = int(round(dirty * n))
    chosen = rng.choice(n, size=min(4 * count, n), replace=False)
    out_of_range, malformed, unterminated, duplicated = np.array_split(chosen, 4)
    axis = rng.integers(0, 3, size=len(out_of_range))
    values[out_of_range, axis] = (
        rng.uniform(500, 5000, size=len(out_of_range)) * rng.choice([-1, 1])
    ).astype(np.float32)

    def text(array: np.ndarray) -> pa.Array:
        return pc.cast(pa.array(array), pa.string())

    z = text(values[:, 2]).to_numpy(zero_copy_only=False).astype(object)
    z[malformed] = ""
    terminator = np.full(n, ";\n", dtype=object)
    terminator[unterminated] = "\n"
    z = pc.binary_join_element_wise(pa.array(z, pa.string()), pa.array(terminator, pa.string()), "")
    lines = pc.binary_join_element_wise(
        text(np.full(n, subject, dtype=np.int32)),
        pa.array(np.array(CODES)[activity]),
        text(timestamp),
        text(values[:, 0]),
        text(values[:, 1]),
        z,
        ",",
    )
    order = np.sort(np.concatenate([np.arange(n), duplicated]), kind="stable")
    lines = lines.take(pa.array(order))
    if len(lines):
        lines = pa.concat_arrays([lines])  # one contiguous buffer, in order
        offsets = np.frombuffer(
            lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4
        )
        body = lines.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]]
    else:
        body = b""
    info = GeneratedFile(
        path="",
        lines=len(order),
        duplicates=len(duplicated),
        out_of_range=len(out_of_range),
        malformed=len(malformed),
        missing_terminator=len(unterminated) + int(np.isin(duplicated, unterminated).sum()),
    )
    return body, info


def raw_path(subject: int, device: str, sensor: str) -> str:
    return f"{device}/{sensor}/data_{subject}_{sensor}_{device}.txt"


# The dataset's own archive (UCI's zip holds the dataset's zip, which holds raw/...).
ARCHIVE_URL = (
    "https://archive.ics.uci.edu/static/public/507/"
    "wisdm+smartphone+and+smartwatch+activity+and+biometrics+dataset.zip"
)
_ARCHIVE_MEMBER = re.compile(r"(?:^|/)raw/(phone|watch)/(accel|gyro)/data_(\d+)_\2_\1\.txt$")


def fetch_raw(archive_url: str, dest: str, storage_options: dict | None = None, timeout: float = 60.0) -> int:
    """The real dataset's raw files from its archive (a zip, zips inside it unpacked too) into `dest`,
    in the raw layout; how many files. OSError when the archive cannot be fetched or read."""
    import zipfile

    import fsspec

    try:
        if archive_url.startswith(("http://", "https://")):
            import requests

            response = requests.get(archive_url, timeout=timeout)
            response.raise_for_status()
            data = response.content
        else:
            with fsspec.open(archive_url, "rb") as f:
                data = f.read()
        fs, root = fsspec.core.url_to_fs(dest, **(storage_options or {}))
        return _unpack(zipfile.ZipFile(io.BytesIO(data)), fs, root)
    except zipfile.BadZipFile as e:
        raise OSError(f"{archive_url} is not a zip archive: {e}") from e
    except Exception as e:  # no network, a refusal, a timeout, no such file
        raise OSError(f"{archive_url}: {type(e).__name__}: {e}") from e


def _unpack(archive, fs, root: str) -> int:
    import zipfile

    count = 0
    for name in archive.namelist():
        if name.endswith(".zip"):
            count += _unpack(zipfile.ZipFile(io.BytesIO(archive.read(name))), fs, root)
            continue
        found = _ARCHIVE_MEMBER.search(name)
        if found is None:
            continue
        device, sensor, subject = found.group(1), found.group(2), int(found.group(3))
        path = posixpath.join(root, raw_path(subject, device, sensor))
        _make_folder(fs, posixpath.dirname(path))
        with fs.open(path, "wb") as f:
            f.write(archive.read(name))
        count += 1
    return count


def generate_raw(
    dest: str,
    subjects: int = 51,
    seconds_per_activity: float = 180,
    seed: int = 0,
    dirty: float = 0.001,
    storage_options: dict | None = None,
    processes: int = 1,
) -> Generated:
    """Write raw files in the dataset's layout under `dest` (a folder or an fsspec URL such as s3://...).

    Full scale is 51 subjects and 180 s per activity: 13.2 million readings, about 0.73 GB of text.
    `dirty` is the share of readings of each kind of fault (out of range, malformed, unterminated,
    duplicated).
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(dest, **(storage_options or {}))
    jobs = [
        (FIRST_SUBJECT + s, device, sensor, seconds_per_activity, seed, dirty)
        for device in DEVICES
        for sensor in SENSORS
        for s in range(subjects)
    ]
    for device in DEVICES:
        for sensor in SENSORS:
            _make_folder(fs, posixpath.join(root, device, sensor))
    generated = Generated()

    def store(job, result):
        body, info = result
        path = posixpath.join(root, raw_path(job[0], job[1], job[2]))
        fs.pipe_file(path, body)
        info.path = path
        generated.files.append(info)

    if processes > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(processes) as pool:
            for job, result in zip(jobs, pool.map(_generate_job, jobs), strict=True):
                store(job, result)
    else:
        for job in jobs:
            store(job, _generate(*job))
    return generated


def _generate_job(job):
    return _generate(*job)


# ----------------------------------------------------------------------------------------------------
# ETL


_ACTIVITY_TYPE = pa.dictionary(pa.int32(), pa.string())
_READ_TYPES = {
    "subject": pa.int32(),
    "activity": _ACTIVITY_TYPE,
    "timestamp": pa.int64(),
    "x": pa.float32(),
    "y": pa.float32(),
    "z": pa.float32(),
}
OUTPUT_SCHEMA = pa.schema(
    [
        ("subject", pa.int32()),
        ("timestamp", pa.int64()),
        ("x", pa.float32()),
        ("y", pa.float32()),
        ("z", pa.float32()),
    ]
)


@dataclass
class FileQuality:
    """What the cleaning of one raw file found: rows in = rows out + every dropped row."""

    rows_in: int = 0
    rows_out: int = 0
    malformed: int = 0  # wrong number of fields, an empty or unreadable value, an unknown activity
    duplicates: int = 0
    out_of_range: int = 0
    missing_terminator: int = 0  # repaired, kept

    def add(self, other: FileQuality) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def parse_raw(data: bytes) -> tuple[pa.Table, FileQuality]:
    """Parse one raw file's text into typed columns.

    The trailing `;` of each reading is removed from the bytes in one pass, so that the last field
    parses as a number directly (no string column, no per-row work).
    """
    quality = FileQuality()
    stripped = data.replace(b";", b"")
    semicolons = len(data) - len(stripped)
    data = stripped
    rejected = 0

    def reject(_row) -> str:
        nonlocal rejected
        rejected += 1
        return "skip"

    read = pacsv.ReadOptions(column_names=COLUMNS, use_threads=False, block_size=1 << 26)
    parse = pacsv.ParseOptions(invalid_row_handler=reject)
    try:
        table = pacsv.read_csv(io.BytesIO(data), read, parse, pacsv.ConvertOptions(column_types=_READ_TYPES))
    except pa.ArrowInvalid:
        # An unreadable value somewhere: read the numbers as text and turn what does not parse to null.
        rejected = 0
        types = {**_READ_TYPES, "x": pa.string(), "y": pa.string(), "z": pa.string()}
        table = pacsv.read_csv(io.BytesIO(data), read, parse, pacsv.ConvertOptions(column_types=types))
        import pandas as pd

        for name in ("x", "y", "z"):
            numbers = pd.to_numeric(table[name].to_pandas(), errors="coerce").astype("float32")
            table = table.set_column(table.schema.get_field_index(name), name, pa.array(numbers))
    quality.rows_in = table.num_rows + rejected
    quality.malformed = rejected
    quality.missing_terminator = max(quality.rows_in - semicolons, 0)
    return table, quality


def clean(table: pa.Table, sensor: str, quality: FileQuality) -> tuple[pa.Table, np.ndarray]:
    """Drop malformed rows, exact duplicates and out-of-range readings; order by activity and time.

    Returns the clean readings (without the activity column) and their activity index (into NAMES).
    """
    activity = table["activity"].combine_chunks()
    if not isinstance(activity, pa.DictionaryArray):
        activity = activity.dictionary_encode()
    # The code of each dictionary entry as an index into CODES; -1 for an unknown or missing code.
    lookup = np.array(
        [CODES.index(c) if c in ACTIVITIES else -1 for c in activity.dictionary.to_pylist()] + [-1]
    )
    act = lookup[activity.indices.fill_null(len(lookup) - 1).to_numpy(zero_copy_only=False)].astype(np.int16)
    subject = table["subject"].to_numpy(zero_copy_only=False)
    timestamp = table["timestamp"].to_numpy(zero_copy_only=False)
    x, y, z = (table[c].to_numpy(zero_copy_only=False) for c in ("x", "y", "z"))
    valid = act >= 0
    for column in ("subject", "timestamp", "x", "y", "z"):
        if table[column].null_count:
            valid &= ~table[column].is_null().to_numpy(zero_copy_only=False)
    quality.malformed += int((~valid).sum())
    keep = np.flatnonzero(valid)
    subject, timestamp, act, x, y, z = (a[keep] for a in (subject, timestamp, act, x, y, z))

    # Order by activity and time (raw files are nearly always in that order already), so that
    # identical readings sit next to each other.
    key = (act.astype(np.int64) << 50) + timestamp - (timestamp.min() if len(timestamp) else 0)
    if len(key) > 1 and not (key[1:] >= key[:-1]).all():
        order = np.argsort(key, kind="stable")
        subject, timestamp, act, x, y, z, key = (a[order] for a in (subject, timestamp, act, x, y, z, key))
    same_key = key[1:] == key[:-1]
    if (same_key[1:] & same_key[:-1]).any():
        # Three or more readings at one instant: sort those by value too, so duplicates are adjacent.
        order = np.lexsort((z, y, x, subject, key))
        subject, timestamp, act, x, y, z, key = (a[order] for a in (subject, timestamp, act, x, y, z, key))
        same_key = key[1:] == key[:-1]
    repeat = np.zeros(len(key), dtype=bool)
    repeat[1:] = (
        same_key & (subject[1:] == subject[:-1]) & (x[1:] == x[:-1]) & (y[1:] == y[:-1]) & (z[1:] == z[:-1])
    )
    quality.duplicates += int(repeat.sum())
    limit = LIMITS[sensor]
    in_range = (np.abs(x) <= limit) & (np.abs(y) <= limit) & (np.abs(z) <= limit)
    quality.out_of_range += int((~repeat & ~in_range).sum())
    keep = np.flatnonzero(~repeat & in_range)
    quality.rows_out += len(keep)
    subject, timestamp, act, x, y, z = (a[keep] for a in (subject, timestamp, act, x, y, z))
    out = pa.table(
        [pa.array(subject), pa.array(timestamp), pa.array(x), pa.array(y), pa.array(z)], schema=OUTPUT_SCHEMA
    )
    return out, act


def window_features(table: pa.Table, act: np.ndarray, window_seconds: float) -> dict[str, np.ndarray]:
    """Per window of `window_seconds` from the start of each activity: mean, std, min and max of each
    axis and of the magnitude, and the number of readings. `table` is ordered by activity and time."""
    if table.num_rows == 0:
        return {}
    timestamp = table["timestamp"].to_numpy()
    subject = table["subject"].to_numpy()
    values = np.column_stack([table[c].to_numpy().astype(np.float64) for c in ("x", "y", "z")])
    values = np.column_stack([values, np.sqrt((values**2).sum(axis=1))])
    segment = np.flatnonzero(np.diff(act, prepend=-1) != 0)
    start = np.repeat(timestamp[segment], np.diff(np.append(segment, len(act))))
    window = ((timestamp - start) // int(window_seconds * NS)).astype(np.int64)
    key = act.astype(np.int64) * 10**9 + window
    first = np.flatnonzero(np.diff(key, prepend=-1) != 0)
    count = np.diff(np.append(first, len(key)))
    total = np.add.reduceat(values, first, axis=0)
    squares = np.add.reduceat(values**2, first, axis=0)
    mean = total / count[:, None]
    std = np.sqrt(np.maximum(squares / count[:, None] - mean**2, 0))
    features = {
        "subject": subject[first],
        "activity": np.asarray(NAMES, dtype=object)[act[first]],
        "window": window[first],
        "n": count,
    }
    for i, axis in enumerate(("x", "y", "z", "mag")):
        features[f"{axis}_mean"] = mean[:, i]
        features[f"{axis}_std"] = std[:, i]
        features[f"{axis}_min"] = np.minimum.reduceat(values[:, i], first)
        features[f"{axis}_max"] = np.maximum.reduceat(values[:, i], first)
    return features


def _read_bytes(fs, path: str) -> bytes:
    with fs.open(path, "rb") as f:
        return f.read()


def process_group(
    paths: Sequence[str],
    device: str,
    sensor: str,
    output: str,
    part: int,
    window_seconds: float = 10.0,
    storage_options: dict | None = None,
) -> dict:
    """Clean a group of raw files of one device and sensor, and write one Parquet file per activity.

    Writes `readings/device=D/sensor=S/activity=A/part-<part>.parquet` and
    `features/device=D/sensor=S/part-<part>.parquet` under `output`. Returns the group's quality
    counters and what it wrote.
    """
    import fsspec

    fs, _ = fsspec.core.url_to_fs(paths[0] if paths else output, **(storage_options or {}))
    out_fs, out_root = fsspec.core.url_to_fs(output, **(storage_options or {}))
    quality = FileQuality()
    tables, activities, features = [], [], []
    for path in paths:
        raw, file_quality = parse_raw(_read_bytes(fs, path))
        table, act = clean(raw, sensor, file_quality)
        quality.add(file_quality)
        tables.append(table)
        activities.append(act)
        features.append(window_features(table, act, window_seconds))
    written = []
    if tables:
        # Each file is ordered by activity: gather each activity's rows from every file (no copy).
        bounds = [np.searchsorted(act, np.arange(len(NAMES) + 1)) for act in activities]
        for index, name in enumerate(NAMES):
            pieces = [t.slice(b[index], b[index + 1] - b[index]) for t, b in zip(tables, bounds, strict=True)]
            pieces = [p for p in pieces if p.num_rows]
            if not pieces:
                continue
            piece = pa.concat_tables(pieces)
            folder = posixpath.join(
                out_root, "readings", f"device={device}", f"sensor={sensor}", f"activity={name}"
            )
            written.append(_write(out_fs, folder, f"part-{part}.parquet", piece))
        merged = (
            {k: np.concatenate([f[k] for f in features if f]) for k in (features[0] or {})}
            if features
            else {}
        )
        if merged:
            folder = posixpath.join(out_root, "features", f"device={device}", f"sensor={sensor}")
            written.append(_write(out_fs, folder, f"part-{part}.parquet", pa.table(merged)))
    return {"device": device, "sensor": sensor, "quality": quality.__dict__, "files": written}


def _make_folder(fs, folder: str) -> None:
    """Create a folder on a local disk; object stores have none (and a role may not create buckets)."""
    if "file" in fs.protocol or "local" in fs.protocol:
        fs.makedirs(folder, exist_ok=True)


def _write(fs, folder: str, name: str, table: pa.Table) -> dict:
    _make_folder(fs, folder)
    path = posixpath.join(folder, name)
    with fs.open(path, "wb") as f:
        pq.write_table(table, f, compression="snappy", **_encodings(table.schema))
    return {"path": path, "rows": table.num_rows}


def _encodings(schema: pa.Schema) -> dict:
    """Parquet encodings for sensor data: dictionaries only for the few repeated values (subject,
    activity); delta encoding for the clock; byte-stream split for the readings. Dictionary encoding
    of every column (pyarrow's default) costs five times the write time on readings that rarely repeat.
    """
    dictionary = [f.name for f in schema if f.name in ("subject", "activity")]
    encoding = {}
    for f in schema:
        if f.name in dictionary:
            continue
        if pa.types.is_integer(f.type):
            encoding[f.name] = "DELTA_BINARY_PACKED"
        elif pa.types.is_floating(f.type):
            encoding[f.name] = "BYTE_STREAM_SPLIT"
    return {"use_dictionary": dictionary, "column_encoding": encoding}


def list_raw(input_url: str, storage_options: dict | None = None) -> dict[tuple[str, str], list[str]]:
    """The raw files under `input_url`, by (device, sensor), in subject order."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(input_url, **(storage_options or {}))
    found: dict[tuple[str, str], list[str]] = {}
    for device in DEVICES:
        for sensor in SENSORS:
            pattern = posixpath.join(root, device, sensor, "data_*.txt")
            paths = sorted(p for p in fs.glob(pattern) if RAW_NAME.search(p))
            if paths:
                found[(device, sensor)] = [fs.unstrip_protocol(p) for p in paths]
    return found


def _chunks(items: Sequence[str], parts: int) -> Iterable[list[str]]:
    parts = max(1, min(parts, len(items)))
    for i in range(parts):
        yield list(items[i * len(items) // parts : (i + 1) * len(items) // parts])


@dataclass
class Report:
    """The data-quality report of one ETL run."""

    quality: FileQuality
    files: list[dict]
    output: str

    @property
    def balanced(self) -> bool:
        q = self.quality
        return q.rows_in == q.rows_out + q.malformed + q.duplicates + q.out_of_range

    def as_dict(self) -> dict:
        return {"quality": self.quality.__dict__, "balanced": self.balanced, "files": self.files}

    def __str__(self) -> str:
        q = self.quality
        rows = [
            ("rows in", q.rows_in),
            ("rows out", q.rows_out),
            ("dropped: malformed", q.malformed),
            ("dropped: duplicates", q.duplicates),
            ("dropped: out of range", q.out_of_range),
            ("repaired: missing ';'", q.missing_terminator),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name:<{width}}  {value:>12,}" for name, value in rows]
        lines.append(f"{'in = out + dropped':<{width}}  {'yes' if self.balanced else 'NO':>12}")
        lines.append(f"{'Parquet files written':<{width}}  {len(self.files):>12,}")
        return "\n".join(lines)


def run_etl(
    input_url: str,
    output_url: str,
    partitions_per_sensor: int = 1,
    window_seconds: float = 10.0,
    storage_options: dict | None = None,
    scheduler: str | None = None,
) -> Report:
    """The ETL with Dask: one task per group of raw files of a device and sensor, writing as it goes.

    Each task parses its files with pyarrow's CSV reader, cleans them with vectorised numpy, and writes
    one Parquet file per activity, so the output has `partitions_per_sensor` files per (device, sensor,
    activity), whatever the number of raw files, and no data moves between workers. With a
    distributed Client active, the tasks run on its workers; otherwise on `scheduler`
    ("threads", "processes", "sync").
    """
    import dask

    groups = list_raw(input_url, storage_options)
    if not groups:
        raise FileNotFoundError(f"no raw WISDM files (device/sensor/data_*.txt) under {input_url}")
    tasks = [
        dask.delayed(process_group, pure=False)(
            chunk, device, sensor, output_url, part, window_seconds, storage_options
        )
        for (device, sensor), paths in groups.items()
        for part, chunk in enumerate(_chunks(paths, partitions_per_sensor))
    ]
    results = dask.compute(*tasks, scheduler=scheduler)
    quality = FileQuality()
    files = []
    for result in results:
        quality.add(FileQuality(**result["quality"]))
        files.extend(result["files"])
    return Report(quality=quality, files=files, output=output_url)


def save_report(report: Report, url: str, storage_options: dict | None = None) -> None:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    _make_folder(fs, posixpath.dirname(path))
    with fs.open(path, "w") as f:
        json.dump(report.as_dict(), f, indent=2)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
