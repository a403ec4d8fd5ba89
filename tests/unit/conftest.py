"""Fixtures for unit tests: an in-process moto account and a spawner wired to it."""

from __future__ import annotations

from types import SimpleNamespace

import boto3
import pytest
from botocore.exceptions import ClientError
from jupyterhub.objects import Hub
from moto import mock_aws

from hub.policies import render_policy
from localcloud import motofixes
from spawner import EC2Spawner, aws
from spawner.launcher import Launcher
from spawner.states import InstanceStates

# The same moto as the local cloud's: AWS's behaviour where moto differs.
motofixes.apply()


@pytest.fixture
def account(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        aws.client.cache_clear()
        InstanceStates._shared.clear()
        ec2 = boto3.client("ec2", region_name="us-east-1")
        vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=zone)["Subnet"][
                "SubnetId"
            ]
            for i, zone in enumerate(["us-east-1a", "us-east-1b"])
        ]
        group = ec2.create_security_group(GroupName="users", Description="users", VpcId=vpc)["GroupId"]
        image = ec2.register_image(Name="ec2hub-user", RootDeviceName="/dev/xvda")["ImageId"]
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="unit-data")
        boundary = boto3.client("iam").create_policy(
            PolicyName="ec2hub-user-boundary",
            PolicyDocument=render_policy(
                "user-boundary", region="us-east-1", account_id="123456789012", bucket="unit-data"
            ),
        )["Policy"]["Arn"]
        yield SimpleNamespace(
            ec2=ec2,
            iam=boto3.client("iam"),
            ssm=boto3.client("ssm", region_name="us-east-1"),
            s3=boto3.client("s3", region_name="us-east-1"),
            subnets=subnets,
            group=group,
            image=image,
            boundary=boundary,
        )
        aws.client.cache_clear()
        InstanceStates._shared.clear()


def spawner_failing(operation: str, code: str) -> type[EC2Spawner]:
    """An EC2Spawner whose launcher gets the error `code` from EC2 at every `operation` call."""

    class FailingLauncher(Launcher):
        async def call(self, name, **kwargs):
            if name == operation:
                raise ClientError({"Error": {"Code": code, "Message": f"{code} (test)"}}, operation)
            return await super().call(name, **kwargs)

    return type(f"Failing{code}", (EC2Spawner,), {"launcher_class": FailingLauncher})


def make_spawner(account, cls=EC2Spawner, user="alice", **config) -> EC2Spawner:
    settings = {
        "image_id": account.image,
        "subnet_ids": account.subnets,
        "security_group_ids": [account.group],
        "hub_id": "unit-hub",
        "bucket": "unit-data",
        "user_boundary_arn": account.boundary,
        "aws_poll_max_interval": 0.01,
        "start_timeout": 10,
        "stop_timeout": 10,
    }
    settings.update(config)
    spawner = cls(
        user=SimpleNamespace(name=user, escaped_name=user, url=f"/user/{user}/", groups=[]),
        hub=Hub(ip="127.0.0.1", port=8081, base_url="/hub/"),
        **settings,
    )
    spawner.api_token = "a" * 32
    return spawner


@pytest.fixture
def spawner(account):
    return make_spawner(account)
