"""From inside users' kernels: each user reaches their own prefix, shared/ and their groups, nothing else.

These requests go to the moto server with IAM enforcement on (object-level S3 access by prefix is
what moto enforces; listing conditions are checked by iam-simulate in tests/policy).
"""

from __future__ import annotations

import base64
import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from tests.e2e.kernel import Kernel
from tests.e2e.stack import admin_client, approved_user, aws_client, instances_of, running_stack

pytestmark = pytest.mark.e2e

PROBE = """
import json, os
import boto3
s3 = boto3.client("s3")
bucket = os.environ["EC2HUB_BUCKET"]

def outcome(call):
    try:
        call()
        return "allowed"
    except Exception as e:
        return getattr(e, "response", {}).get("Error", {}).get("Code") or type(e).__name__

checks = {CHECKS}
print(json.dumps({name: outcome(call) for name, call in checks.items()}))
"""


def probe(kernel: Kernel, checks: str) -> dict[str, str]:
    result = kernel.run(PROBE.replace("{CHECKS}", checks))
    assert result.ok, result.errors
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory, subnet_base=222) as stack:
        yield stack


@pytest.fixture(scope="module")
def bucket(stack):
    name = stack.outputs["bucket"]
    s3 = aws_client(stack, "s3")
    s3.put_object(Bucket=name, Key="users/bob/secret.txt", Body=b"bob's")
    s3.put_object(Bucket=name, Key="shared/readme.txt", Body=b"for everyone")
    # What alice's notebook writes in the pandas test, there whichever test runs first.
    table = io.BytesIO()
    pd.DataFrame({"a": [1, 2, 3]}).to_parquet(table)
    s3.put_object(Bucket=name, Key="users/alice/x.parquet", Body=table.getvalue())
    return name


@pytest.fixture(scope="module")
def kernels(stack, bucket):
    clients = {user: approved_user(stack, user) for user in ("alice", "carol")}
    group = admin_client(stack).api("POST", "/groups/physics", json={"users": ["carol"]})
    assert group.status_code == 201, group.text

    def start(user: str) -> Kernel:
        client = clients[user]
        client.start(user)
        client.wait_ready(user)
        return Kernel(stack.settings.url, user, client.token(user))

    with ThreadPoolExecutor(2) as pool:
        alice, carol = pool.map(start, ["alice", "carol"])
    yield {"alice": alice, "carol": carol}


def test_pandas_reads_and_writes_the_users_prefix_with_no_credential_setup(kernels, bucket):
    result = kernels["alice"].run(
        "import os, pandas as pd\n"
        "url = os.environ['EC2HUB_DATA_URL'] + 'x.parquet'\n"
        "pd.DataFrame({'a': [1, 2, 3]}).to_parquet(url)\n"
        "print(url, int(pd.read_parquet(url)['a'].sum()))\n"
    )
    assert result.ok, result.errors
    assert result.stdout.split() == [f"s3://{bucket}/users/alice/x.parquet", "6"]


def test_s3_reads_in_a_kernel_have_requests_in_flight_for_the_instance(kernels):
    """The bootstrap sizes pyarrow's S3 client (pandas and pyarrow.dataset on s3://) to the instance."""
    result = kernels["alice"].run(
        "import json, os, pyarrow as pa\n"
        "print(json.dumps([pa.io_thread_count(), os.environ.get('ARROW_IO_THREADS')]))\n"
    )
    assert result.ok, result.errors
    threads, setting = json.loads(result.stdout.strip().splitlines()[-1])
    assert setting is not None and threads == int(setting)
    assert threads >= 16, "more requests in flight than pyarrow's own 8"


def test_alice_cannot_touch_bobs_prefix_nor_write_shared(kernels):
    outcome = probe(
        kernels["alice"],
        """{
        "get bob": lambda: s3.get_object(Bucket=bucket, Key="users/bob/secret.txt"),
        "put bob": lambda: s3.put_object(Bucket=bucket, Key="users/bob/planted.txt", Body=b"x"),
        "delete bob": lambda: s3.delete_object(Bucket=bucket, Key="users/bob/secret.txt"),
        "put shared": lambda: s3.put_object(Bucket=bucket, Key="shared/planted.txt", Body=b"x"),
        "get shared": lambda: s3.get_object(Bucket=bucket, Key="shared/readme.txt"),
        "put own": lambda: s3.put_object(Bucket=bucket, Key="users/alice/own.txt", Body=b"x"),
        "delete own": lambda: s3.delete_object(Bucket=bucket, Key="users/alice/own.txt"),
    }""",
    )
    assert outcome == {
        "get bob": "AccessDenied",
        "put bob": "AccessDenied",
        "delete bob": "AccessDenied",
        "put shared": "AccessDenied",
        "get shared": "allowed",
        "put own": "allowed",
        "delete own": "allowed",
    }


def test_group_prefix_is_for_members_only(kernels):
    checks = """{
        "put": lambda: s3.put_object(Bucket=bucket, Key="groups/physics/run.csv", Body=b"1,2"),
        "get": lambda: s3.get_object(Bucket=bucket, Key="groups/physics/run.csv"),
    }"""
    assert probe(kernels["carol"], checks) == {"put": "allowed", "get": "allowed"}
    assert probe(kernels["alice"], checks) == {"put": "AccessDenied", "get": "AccessDenied"}


def test_no_token_in_user_data_nor_in_the_hub_log(stack, kernels):
    ec2, ssm = aws_client(stack, "ec2"), aws_client(stack, "ssm")
    [instance] = instances_of(ec2, "alice")
    parameter = "/ec2hub/users/alice/servers/default/settings"
    token = json.loads(ssm.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"])["token"]
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    attribute = ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
    user_data = base64.b64decode(attribute["UserData"]["Value"]).decode()
    assert f"EC2HUB_SETTINGS_PARAMETER={parameter}" in user_data
    assert token not in user_data
    assert "TOKEN" not in user_data
    log = (stack.settings.state_dir / "stack.log").read_text()
    assert token not in log
    console = ec2.get_console_output(InstanceId=instance["InstanceId"])["Output"]
    assert token not in console


MOUNT_PROBE = """
import errno, os, pandas as pd
home = os.path.expanduser("~")
pd.DataFrame({"v": [1.5, 2.5]}).to_parquet(os.path.join(home, "s3", "mounted.parquet"))
print("via url", float(pd.read_parquet(os.environ["EC2HUB_DATA_URL"] + "mounted.parquet")["v"].sum()))
print("via mount", int(pd.read_parquet(os.path.join(home, "s3", "x.parquet"))["a"].sum()))
print("shared", sorted(os.listdir(os.path.join(home, "shared"))))
try:
    with open(os.path.join(home, "shared", "planted.txt"), "w") as f:
        f.write("x")
    print("shared writable")
except OSError as e:
    print("shared refuses writes", errno.errorcode[e.errno])
"""


def test_the_users_prefix_is_a_folder_in_the_home_and_shared_is_read_only(stack, kernels, bucket):
    result = kernels["alice"].run(MOUNT_PROBE)
    assert result.ok, result.errors
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "via url 4.0", "written through ~/s3, read through s3://"
    assert lines[1] == "via mount 6", "written through s3://, read through ~/s3"
    assert lines[2] == "shared ['readme.txt']"
    assert lines[3].startswith("shared refuses writes")
    objects = aws_client(stack, "s3").list_objects_v2(Bucket=bucket, Prefix="users/alice/")
    assert "users/alice/mounted.parquet" in {o["Key"] for o in objects["Contents"]}

    client = approved_user(stack, "alice")
    listing = client.user_api("alice", client.token("alice"), "GET", "/contents")
    shown = {item["name"]: item for item in listing.json()["content"]}
    assert {"s3", "shared"} <= set(shown)
    # JupyterLab's file browser shows these times: when the folders were mounted, not 1970.
    for name in ("s3", "shared"):
        assert shown[name]["type"] == "directory"
        modified = datetime.fromisoformat(shown[name]["last_modified"].replace("Z", "+00:00"))
        assert datetime.now(UTC) - modified < timedelta(hours=1), (name, modified)


def test_group_membership_takes_effect_at_the_next_start(stack, kernels):
    # A group of its own: the physics group's members stay as the other tests expect them.
    admin = admin_client(stack)
    created = admin.api("POST", "/groups/chemistry", json={"users": ["alice"]})
    assert created.status_code == 201, created.text
    checks = """{"put": lambda: s3.put_object(Bucket=bucket, Key="groups/chemistry/alice.csv", Body=b"3")}"""
    assert probe(kernels["alice"], checks) == {"put": "AccessDenied"}, "not before her next start"

    alice = approved_user(stack, "alice")
    alice.stop("alice")
    alice.start("alice")
    alice.wait_ready("alice")
    kernels["alice"] = Kernel(stack.settings.url, "alice", alice.token("alice"))
    assert probe(kernels["alice"], checks) == {"put": "allowed"}


def test_deleting_a_user_removes_their_role_and_instance_and_moves_their_data_aside(stack, bucket):
    from botocore.exceptions import ClientError

    ec2, iam, s3 = aws_client(stack, "ec2"), aws_client(stack, "iam"), aws_client(stack, "s3")
    dave = approved_user(stack, "dave")
    dave.start("dave")
    dave.wait_ready("dave")
    kernel = Kernel(stack.settings.url, "dave", dave.token("dave"))
    written = kernel.run(
        "import os, pandas as pd\n"
        "pd.DataFrame({'k': [7]}).to_parquet(os.environ['EC2HUB_DATA_URL'] + 'keep.parquet')\n"
    )
    assert written.ok, written.errors
    [instance] = instances_of(ec2, "dave")
    admin = admin_client(stack)
    deleted = admin.api("DELETE", "/users/dave")
    assert deleted.status_code == 204, deleted.text

    with pytest.raises(ClientError, match="NoSuchEntity"):
        iam.get_role(RoleName="ec2hub-dave")
    with pytest.raises(ClientError, match="NoSuchEntity"):
        iam.get_instance_profile(InstanceProfileName="ec2hub-dave")
    gone = ec2.describe_instances(InstanceIds=[instance["InstanceId"]])["Reservations"][0]["Instances"][0]
    assert gone["State"]["Name"] in ("shutting-down", "terminated")
    # The data stays in the bucket, out of every user's reach: a new "dave" starts empty.
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="users/dave/")
    kept = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="deleted/dave/")["Contents"]]
    assert [key.split("/", 3)[3] for key in kept] == ["keep.parquet"]
