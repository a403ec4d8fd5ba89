"""The local cloud run as root: from a user's kernel, nothing of the platform's state nor of another
instance is in reach, and only the instance's own metadata service answers it."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.kernel import Kernel
from tests.e2e.stack import approved_user, aws_client, instances_of, running_stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="the local cloud isolates its instances when run as root"),
]

READS = """
import json, os

def outcome(path):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
        return "read"
    except OSError as e:
        return type(e).__name__

print(json.dumps({name: outcome(path) for name, path in PATHS.items()}))
"""

METADATA = """
import json, os, urllib.request

def credentials(base):
    try:
        token = urllib.request.urlopen(urllib.request.Request(
            base + "latest/api/token", method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}), timeout=10).read().decode()
        def get(path):
            request = urllib.request.Request(base + path, headers={"X-aws-ec2-metadata-token": token})
            return urllib.request.urlopen(request, timeout=10).read().decode()
        role = get("latest/meta-data/iam/security-credentials/").split()[0]
        keys = json.loads(get("latest/meta-data/iam/security-credentials/" + role))
        return "credentials" if keys.get("AccessKeyId") else "no credentials"
    except OSError as e:
        return str(getattr(e, "code", type(e).__name__))

own = os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"]
port = own.rstrip("/").rsplit(":", 1)[1]
print(json.dumps({"own": credentials(own), "bob's": credentials(f"http://{BOB_IP}:{port}/")}))
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory, subnet_base=174) as stack:
        yield stack


@pytest.fixture(scope="module")
def kernels(stack):
    def start(user: str) -> Kernel:
        client = approved_user(stack, user)
        client.start(user)
        client.wait_ready(user)
        return Kernel(stack.settings.url, user, client.token(user))

    with ThreadPoolExecutor(2) as pool:
        alice, bob = pool.map(start, ["alice", "bob"])
    yield {"alice": alice, "bob": bob}


def last_json(kernel: Kernel, code: str) -> dict:
    result = kernel.run(code)
    assert result.ok, result.errors
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_each_kernel_runs_as_an_account_of_its_own_with_a_home_only_it_reads(kernels):
    seen = {
        user: last_json(
            kernel,
            "import json, os, stat\n"
            "home = os.stat(os.path.expanduser('~'))\n"
            "print(json.dumps([os.getuid(), home.st_uid, stat.S_IMODE(home.st_mode)]))\n",
        )
        for user, kernel in kernels.items()
    }
    for uid, home_owner, mode in seen.values():
        assert uid != 0 and home_owner == uid
        assert mode & 0o077 == 0, f"home mode {mode:o}"
    assert seen["alice"][0] != seen["bob"][0]


def test_alices_kernel_reads_nothing_of_the_state_folder_nor_of_bobs_disk(stack, kernels):
    ec2 = aws_client(stack, "ec2")
    [bobs] = instances_of(ec2, "bob")
    paths = {
        "hub database": stack.settings.state_dir / "hub" / "jupyterhub.sqlite",
        "admin password": stack.settings.state_dir / "secrets" / "admin-password",
        "local account's keys": stack.outputs["credentials_file"],
        "bob's home": stack.cloud_dir / "instances" / bobs["InstanceId"] / "home",
        "bob's console": stack.cloud_dir / "instances" / bobs["InstanceId"] / "console.log",
    }
    for name, path in paths.items():
        assert os.path.exists(path), f"{name} is at {path}"
    code = READS.replace("PATHS", repr({name: str(path) for name, path in paths.items()}))
    outcome = last_json(kernels["alice"], code)
    assert outcome.keys() == paths.keys()
    assert "read" not in outcome.values(), outcome


def test_an_instances_metadata_service_answers_only_that_instance(stack, kernels):
    [bobs] = instances_of(aws_client(stack, "ec2"), "bob")
    outcome = last_json(kernels["alice"], METADATA.replace("BOB_IP", repr(bobs["PrivateIpAddress"])))
    assert outcome["own"] == "credentials"
    assert outcome["bob's"] == "403"
