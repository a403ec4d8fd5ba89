"""The image's bootstrap, where it decides alone: without FUSE the server still starts, with a note."""

from __future__ import annotations

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
