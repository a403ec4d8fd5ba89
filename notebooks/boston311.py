"""Boston's 311 service requests: where the public data is, its columns, and a generator of a sample.

The City of Boston publishes every 311 request on Analyze Boston (data.boston.gov, dataset
"311 Service Requests", one CSV a year). `generate_sample` writes rows with the real columns and
plausible values, deterministically from a seed, for machines without internet and for tests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# The 2024 file of the dataset, through the portal's stable datastore dump URL.
PUBLIC_CSV_URL = "https://data.boston.gov/datastore/dump/dff4d804-5031-443a-8409-8344efd0e5c8"

COLUMNS = [
    "case_enquiry_id",
    "open_dt",
    "sla_target_dt",
    "closed_dt",
    "on_time",
    "case_status",
    "closure_reason",
    "case_title",
    "subject",
    "reason",
    "type",
    "queue",
    "department",
    "submitted_photo",
    "closed_photo",
    "location",
    "fire_district",
    "pwd_district",
    "city_council_district",
    "police_district",
    "neighborhood",
    "neighborhood_services_district",
    "ward",
    "precinct",
    "location_street_name",
    "location_zipcode",
    "latitude",
    "longitude",
    "geom_4326",
    "source",
]
# Files before 2024 name two of the columns differently.
OLDER_NAMES = {
    "target_dt": "sla_target_dt",
    "ontime": "on_time",
    "submittedphoto": "submitted_photo",
    "closedphoto": "closed_photo",
}

# (department, subject, reason, type, queue, target days)
REQUEST_TYPES = [
    (
        "PWDx",
        "Public Works Department",
        "Street Cleaning",
        "Requests for Street Cleaning",
        "PWDx_District 1C: Downtown",
        3,
    ),
    (
        "PWDx",
        "Public Works Department",
        "Highway Maintenance",
        "Request for Pothole Repair",
        "PWDx_Highway Maintenance",
        5,
    ),
    (
        "PWDx",
        "Public Works Department",
        "Street Lights",
        "Street Light Outages",
        "PWDx_Street Light Outages",
        10,
    ),
    (
        "PWDx",
        "Public Works Department",
        "Sanitation",
        "Missed Trash/Recycling/Yard Waste/Bulk Item",
        "PWDx_Missed Trash\\Recycling\\Yard Waste\\Bulk Item",
        2,
    ),
    (
        "BTDT",
        "Transportation - Traffic Division",
        "Enforcement & Abandoned Vehicles",
        "Parking Enforcement",
        "BTDT_Parking Enforcement",
        1,
    ),
    (
        "BTDT",
        "Transportation - Traffic Division",
        "Signs & Signals",
        "Traffic Signal Inspection",
        "BTDT_Traffic Signal Repair",
        7,
    ),
    (
        "ISD",
        "Inspectional Services",
        "Housing",
        "Unsatisfactory Living Conditions",
        "ISD_Housing (INTERNAL)",
        30,
    ),
    (
        "ISD",
        "Inspectional Services",
        "Environmental Services",
        "Rodent Activity",
        "ISD_Environmental Services (INTERNAL)",
        14,
    ),
    (
        "PARK",
        "Parks & Recreation Department",
        "Trees",
        "Tree Maintenance Request",
        "PARK_Maintenance_Tree",
        60,
    ),
    ("PROP", "Property Management", "Graffiti", "Graffiti Removal", "PROP_GRAF_GraffitiRemoval", 21),
    ("GEN_", "Mayor's 24 Hour Hotline", "Noise Disturbance", "Loud Parties/Music/People", "INFO_Mass DOT", 1),
    ("INFO", "Mayor's 24 Hour Hotline", "Needle Program", "Needle Pickup", "INFO_Needle Program", 1),
]
# (neighborhood, zipcode, latitude, longitude)
NEIGHBORHOODS = [
    ("Dorchester", "02124", 42.2856, -71.0647),
    ("Roxbury", "02119", 42.3152, -71.0914),
    ("South Boston / South Boston Waterfront", "02127", 42.3381, -71.0476),
    ("Boston", "02108", 42.3588, -71.0578),
    ("Jamaica Plain", "02130", 42.3097, -71.1151),
    ("East Boston", "02128", 42.3702, -71.0389),
    ("Back Bay", "02116", 42.3503, -71.0810),
    ("Allston / Brighton", "02135", 42.3484, -71.1530),
    ("South End", "02118", 42.3388, -71.0765),
    ("Charlestown", "02129", 42.3782, -71.0602),
    ("Roslindale", "02131", 42.2832, -71.1270),
    ("Hyde Park", "02136", 42.2565, -71.1241),
    ("West Roxbury", "02132", 42.2798, -71.1627),
    ("Mattapan", "02126", 42.2771, -71.0914),
]
SOURCES = [
    "Citizens Connect App",
    "Constituent Call",
    "City Worker App",
    "Self Service",
    "Employee Generated",
]
STREETS = [
    "Washington St",
    "Dorchester Ave",
    "Blue Hill Ave",
    "Centre St",
    "Massachusetts Ave",
    "Tremont St",
    "Commonwealth Ave",
    "Columbia Rd",
    "Hyde Park Ave",
    "Bennington St",
]
CLOSURE = "Case Resolved. Case Closed"


def generate_sample(rows: int = 5000, seed: int = 311, year: int = 2024) -> pd.DataFrame:
    """Requests of one year with the public file's columns, as text the way the CSV has it."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, len(REQUEST_TYPES), rows)
    place = rng.choice(len(NEIGHBORHOODS), rows, p=_weights(len(NEIGHBORHOODS), rng))
    start = pd.Timestamp(f"{year}-01-01")
    opened = start + pd.to_timedelta(rng.uniform(0, 365 * 24 * 3600, rows), unit="s")
    opened = opened.floor("s")
    target_days = np.array([t[5] for t in REQUEST_TYPES])[kind]
    target = opened + pd.to_timedelta(target_days, unit="D")
    # Some departments are quicker than others; some neighbourhoods wait longer.
    speed = rng.uniform(0.2, 1.6, len(REQUEST_TYPES))[kind] * rng.uniform(0.8, 1.3, len(NEIGHBORHOODS))[place]
    hours = rng.exponential(target_days * 24 * speed * 0.7)
    closed = opened + pd.to_timedelta(hours, unit="h")
    still_open = rng.random(rows) < 0.06
    closed = closed.where(~still_open)
    end_of_data = start + pd.DateOffset(years=1)
    on_time = np.where(np.asarray(closed.fillna(end_of_data) <= target), "ONTIME", "OVERDUE")
    frame = pd.DataFrame(
        {
            "case_enquiry_id": 101005000000 + np.arange(rows) * 7 + rng.integers(0, 7, rows),
            "open_dt": opened.strftime("%Y-%m-%d %H:%M:%S"),
            "sla_target_dt": target.strftime("%Y-%m-%d %H:%M:%S"),
            "closed_dt": closed.strftime("%Y-%m-%d %H:%M:%S"),
            "on_time": on_time,
            "case_status": np.where(still_open, "Open", "Closed"),
            "closure_reason": np.where(still_open, "", CLOSURE),
        }
    )
    for i, name in enumerate(("department", "subject", "reason", "type", "queue")):
        frame[name] = np.array([t[(0, 1, 2, 3, 4)[i]] for t in REQUEST_TYPES], dtype=object)[kind]
    frame["case_title"] = frame["type"]
    frame["submitted_photo"] = np.where(
        rng.random(rows) < 0.3, "https://spot-boston-res.cloudinary.com/x.jpg", ""
    )
    frame["closed_photo"] = ""
    hood = np.array(NEIGHBORHOODS, dtype=object)
    street = np.array(STREETS, dtype=object)[rng.integers(0, len(STREETS), rows)]
    number = rng.integers(1, 1500, rows)
    zipcode = hood[place, 1]
    frame["location"] = [
        f"{n} {s}  {h}  MA  {z}" for n, s, h, z in zip(number, street, hood[place, 0], zipcode, strict=True)
    ]
    frame["fire_district"] = rng.integers(1, 13, rows).astype(str)
    frame["pwd_district"] = [f"{d:02d}" for d in rng.integers(1, 11, rows)]
    frame["city_council_district"] = rng.integers(1, 10, rows).astype(str)
    frame["police_district"] = np.array(
        ["A1", "A7", "B2", "B3", "C6", "C11", "D4", "D14", "E5", "E13", "E18"]
    )[rng.integers(0, 11, rows)]
    frame["neighborhood"] = hood[place, 0]
    frame["neighborhood_services_district"] = rng.integers(1, 16, rows).astype(str)
    ward = rng.integers(1, 23, rows)
    frame["ward"] = [f"Ward {w}" for w in ward]
    frame["precinct"] = [f"{w:02d}{p:02d}" for w, p in zip(ward, rng.integers(1, 20, rows), strict=True)]
    frame["location_street_name"] = street
    frame["location_zipcode"] = zipcode
    frame["latitude"] = (hood[place, 2].astype(float) + rng.normal(0, 0.006, rows)).round(6)
    frame["longitude"] = (hood[place, 3].astype(float) + rng.normal(0, 0.006, rows)).round(6)
    frame["geom_4326"] = ""
    frame["source"] = np.array(SOURCES)[rng.choice(len(SOURCES), rows, p=[0.35, 0.3, 0.2, 0.1, 0.05])]
    frame.loc[still_open, "closed_dt"] = ""
    return frame[COLUMNS]


def _weights(n: int, rng: np.random.Generator) -> np.ndarray:
    weights = rng.uniform(0.5, 2.0, n)
    return weights / weights.sum()


def load(url: str, nrows: int | None = None, storage_options: dict | None = None) -> pd.DataFrame:
    """Read a 311 CSV (the public file or a sample) with typed dates, whatever year's column names."""
    frame = pd.read_csv(url, nrows=nrows, dtype=str, keep_default_na=False, storage_options=storage_options)
    frame = frame.rename(columns=OLDER_NAMES)
    for column in ("open_dt", "sla_target_dt", "closed_dt"):
        frame[column] = pd.to_datetime(frame[column].replace("", None), errors="coerce", format="mixed")
    for column in ("latitude", "longitude"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame
