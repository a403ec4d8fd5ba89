"""The real WISDM dataset's archive, unpacked into the raw layout the ETL reads (what the pipeline's
land_raw does when the archive is reachable)."""

from __future__ import annotations

import io
import sys
import zipfile

import pytest

from hub.settings import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "notebooks"))

import wisdm  # noqa: E402

LINE = b"1600,A,252207666810782,-0.36476135,8.793503,1.0550842;\n"


def zipped(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_the_archives_raw_files_land_in_the_raw_layout_and_the_etl_reads_them(tmp_path):
    # As UCI serves it: a zip holding the dataset's own zip, with more than the raw files.
    inner = zipped(
        {
            "wisdm-dataset/raw/phone/accel/data_1600_accel_phone.txt": LINE,
            "wisdm-dataset/raw/watch/gyro/data_1601_gyro_watch.txt": LINE.replace(b"1600", b"1601"),
            "wisdm-dataset/arff_files/phone/accel/data_1600_accel_phone.arff": b"@relation x",
            "wisdm-dataset/raw/phone/accel/data_1600_gyro_watch.txt": b"a misplaced file",
        }
    )
    archive = tmp_path / "wisdm.zip"
    archive.write_bytes(zipped({"wisdm-dataset.zip": inner, "WISDM-dataset-description.pdf": b"%PDF"}))

    raw = tmp_path / "raw"
    assert wisdm.fetch_raw(str(archive), str(raw)) == 2
    assert (raw / "phone/accel/data_1600_accel_phone.txt").read_bytes() == LINE
    found = wisdm.list_raw(str(raw))
    assert {key: len(paths) for key, paths in found.items()} == {("phone", "accel"): 1, ("watch", "gyro"): 1}


def test_an_archive_out_of_reach_or_not_a_zip_is_an_os_error_and_writes_nothing(tmp_path):
    raw = tmp_path / "raw"
    with pytest.raises(OSError):
        wisdm.fetch_raw(str(tmp_path / "missing.zip"), str(raw))
    (tmp_path / "page.zip").write_bytes(b"<html>not found</html>")
    with pytest.raises(OSError, match="is not a zip archive"):
        wisdm.fetch_raw(str(tmp_path / "page.zip"), str(raw))
    with pytest.raises(OSError, match="http://127.0.0.1:9/"):
        wisdm.fetch_raw("http://127.0.0.1:9/wisdm.zip", str(raw), timeout=5)
    assert not raw.exists()
