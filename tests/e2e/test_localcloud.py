"""The local cloud on its own: instances boot from their user-data, with IMDSv2 and role credentials."""

from __future__ import annotations

import json

import pytest

from localcloud.up import Stack
from tests.e2e.stack import aws_client, stack_env, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    stack = Stack(stack_env(tmp_path_factory.mktemp("state"), subnet_base=218))
    stack.start_cloud()
    yield stack
    stack.stop_cloud()


def launch(cloud: Stack, user_data: str, **extra) -> str:
    ec2 = aws_client(cloud, "ec2")
    response = ec2.run_instances(
        ImageId=cloud.outputs["ami_id"],
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=cloud.outputs["subnet_ids"][1],
        UserData=user_data,
        MetadataOptions={"HttpTokens": "required"},
        **extra,
    )
    return response["Instances"][0]["InstanceId"]


def console(cloud: Stack, instance_id: str) -> str:
    return aws_client(cloud, "ec2").get_console_output(InstanceId=instance_id).get("Output", "")


def test_a_failed_boot_is_visible_in_the_console_output(cloud):
    instance_id = launch(cloud, "#!/bin/sh\necho 'cannot mount the data volume' >&2\nexit 3\n")
    output = wait_for(
        lambda: (text := console(cloud, instance_id)) and "exited with status 3" in text and text,
        60,
        "the boot failure to show in the console output",
    )
    assert "cannot mount the data volume" in output
    state = aws_client(cloud, "ec2").describe_instances(InstanceIds=[instance_id])
    # As on EC2, a failed boot script leaves the instance running: the console tells why.
    assert state["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"


PROBE = """#!/usr/bin/env python3
import json, os, urllib.error, urllib.request
import boto3
base = os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"].rstrip("/")
try:
    urllib.request.urlopen(base + "/latest/meta-data/instance-id", timeout=5)
    print("without token: allowed", flush=True)
except urllib.error.HTTPError as e:
    print(f"without token: {e.code}", flush=True)
put = urllib.request.Request(
    base + "/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}
)
token = urllib.request.urlopen(put, timeout=5).read().decode()
get = urllib.request.Request(
    base + "/latest/meta-data/placement/region", headers={"X-aws-ec2-metadata-token": token}
)
session = boto3.session.Session(region_name=urllib.request.urlopen(get, timeout=5).read().decode())
identity = session.client("sts").get_caller_identity()
listing = session.client("s3").list_objects_v2(Bucket=os.environ["BUCKET"])
print("probe: " + json.dumps({"arn": identity["Arn"], "listed": listing["KeyCount"]}), flush=True)
"""


def test_an_instance_gets_imdsv2_and_its_profile_role_credentials(cloud):
    iam = aws_client(cloud, "iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    iam.create_role(RoleName="probe", AssumeRolePolicyDocument=json.dumps(trust))
    bucket = cloud.outputs["bucket"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"}],
    }
    iam.put_role_policy(RoleName="probe", PolicyName="list", PolicyDocument=json.dumps(policy))
    iam.create_instance_profile(InstanceProfileName="probe")
    iam.add_role_to_instance_profile(InstanceProfileName="probe", RoleName="probe")

    script = PROBE.replace('os.environ["BUCKET"]', repr(bucket))
    instance_id = launch(cloud, script, IamInstanceProfile={"Name": "probe"})
    output = wait_for(
        lambda: (text := console(cloud, instance_id)) and "exited with status" in text and text,
        60,
        "the probe to finish",
    )
    assert "without token: 401" in output
    line = next(line for line in output.splitlines() if line.startswith("probe: "))
    result = json.loads(line.removeprefix("probe: "))
    assert result["arn"].endswith(f":assumed-role/probe/{instance_id}")
    assert result["listed"] == 0
