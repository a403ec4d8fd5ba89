"""The image's bootstrap, where it decides alone: without FUSE the server still starts, with a note;
the S3 folders are links to hidden mount points, so JupyterLab shows when they were mounted; s3://
reads get requests in flight for the instance's size; a pool instance warms the first cell's libraries."""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime, timedelta
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader

import pytest

from hub.settings import REPO_ROOT


@pytest.fixture
def bootstrap():
    path = REPO_ROOT / "images" / "bootstrap" / "ec2hub-bootstrap"
    loader = SourceFileLoader("ec2hub_bootstrap", str(path))
    module = module_from_spec(spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


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
