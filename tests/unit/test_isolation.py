"""The pieces of the local cloud's isolation of instances: their view of the files, their metadata
service's check of who asks, and what `make up` says when it cannot isolate."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest

from localcloud.metadata import MetadataServer, peer_uid
from localcloud.sandbox import Plan, plan_for
from localcloud.up import isolation_note

STATE = Path("/srv/platform/state/localcloud")
HOME = STATE / "instances" / "i-1" / "home"


def test_the_view_hides_the_state_folder_and_shows_the_instances_home_inside_it():
    plan = plan_for(STATE, {HOME: False, Path("/opt/venv"): True}, searchable=lambda _: True)
    assert plan.hide == (str(STATE),)
    assert plan.expose == ((str(HOME), False),), "what nothing hides is seen as it is"


def test_the_view_hides_folders_only_root_may_search_and_shows_the_image_inside_them():
    closed = {Path("/root"), Path("/tmp/private"), Path("/tmp/private/deeper")}
    interpreter = Path("/root/.pyenv/versions/3.11.7")
    state = Path("/tmp/private/deeper/state")
    home = state / "instances" / "i-1" / "home"
    plan = plan_for(state, {interpreter: True, home: False}, searchable=lambda p: p not in closed)
    assert plan.hide == ("/root", "/tmp/private", str(state)), "the topmost closed folder of each path"
    assert plan.expose == ((str(interpreter), True), (str(home), False))
    assert Plan.from_json(plan.to_json()) == plan


def tcp_table(tmp_path: Path, *rows: tuple[str, str, int]) -> Path:
    header = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    )
    lines = [
        f"   {n}: {local} {remote} 01 00000000:00000000 00:00000000 00000000 {uid:>5} 0 {1000 + n} 1\n"
        for n, (local, remote, uid) in enumerate(rows)
    ]
    path = tmp_path / "tcp"
    path.write_text(header + "".join(lines))
    return path


def test_the_peers_uid_is_read_from_the_connection_table(tmp_path):
    # 127.0.174.5:8169 <- 127.0.174.4:40000 as the kernel lists them (x86: address bytes reversed).
    table = tcp_table(
        tmp_path,
        ("04AE007F:9C40", "05AE007F:1FE9", 1001),
        ("05AE007F:1FE9", "04AE007F:9C40", 0),
    )
    assert peer_uid(("127.0.174.4", 40000), ("127.0.174.5", 8169), str(table)) == 1001
    assert peer_uid(("127.0.174.4", 40001), ("127.0.174.5", 8169), str(table)) is None


# Asked as another uid, with an interpreter that uid may run (the tests' own may be out of its reach).
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists(SYSTEM_PYTHON),
    reason="asks as another uid, with the system's python",
)
def test_a_metadata_service_answers_its_uids_and_refuses_any_other():
    instance = types.SimpleNamespace(id="i-1", metadata_options=types.SimpleNamespace(http_tokens="required"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    service = MetadataServer(instance, "127.0.0.1", port, allowed_uids={0})
    service.start()
    ask = (
        "import urllib.request, urllib.error\n"
        f"request = urllib.request.Request('{service.url}latest/api/token', method='PUT',"
        " headers={'X-aws-ec2-metadata-token-ttl-seconds': '60'})\n"
        "try:\n"
        "    print(urllib.request.urlopen(request, timeout=10).status)\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code)\n"
    )
    try:
        own = subprocess.run([sys.executable, "-c", ask], capture_output=True, text=True, timeout=60)
        other = subprocess.run(
            [SYSTEM_PYTHON, "-I", "-c", ask],
            capture_output=True,
            text=True,
            timeout=60,
            user=65534,
            group=65534,
        )
    finally:
        service.stop()
    assert own.stdout.strip() == "200", own.stderr
    assert other.stdout.strip() == "403", other.stderr


def test_make_up_says_when_its_users_are_not_isolated():
    assert isolation_note(0) == []
    [note] = isolation_note(1000)
    assert "not isolated" in note.lower() and "root" in note
