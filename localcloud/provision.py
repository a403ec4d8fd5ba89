"""Provisions the local account, idempotently: network, bucket, image, and the hub's principal."""

from __future__ import annotations

import configparser
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from moto.backends import get_backend

from hub.policies import default_instance_types, hub_policy, render_policy

ACCOUNT_ID = "123456789012"
ADMIN_USER = "localcloud-admin"
HUB_USER = "ec2hub-hub"
HUB_POLICY = "ec2hub-hub"
BOUNDARY_POLICY = "ec2hub-user-boundary"
IMAGE_NAME = "ec2hub-user"
ADMIN_POLICY = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


@dataclass(frozen=True)
class LocalAccount:
    region: str
    endpoint_url: str
    subnet_cidrs: tuple[str, ...]
    bucket: str
    hub_id: str
    state_dir: Path

    @property
    def credentials_file(self) -> Path:
        return self.state_dir / "aws" / "credentials"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "aws" / "config"

    @property
    def outputs_file(self) -> Path:
        return self.state_dir / "outputs.json"

    def session(self, profile: str) -> boto3.session.Session:
        keys = read_profile(self.credentials_file, profile)
        return boto3.session.Session(
            aws_access_key_id=keys["aws_access_key_id"],
            aws_secret_access_key=keys["aws_secret_access_key"],
            region_name=self.region,
        )


def read_profile(path: Path, profile: str) -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(path)
    return dict(parser[profile]) if parser.has_section(profile) else {}


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def create_admin(account: LocalAccount) -> None:
    """The account's administrator, created inside moto: with enforcement on from the first
    request, nobody could create it over the API."""
    iam = get_backend("iam")[ACCOUNT_ID]["global"]
    if ADMIN_USER not in iam.users:
        iam.create_user(region_name=account.region, user_name=ADMIN_USER)
        iam.put_user_policy(ADMIN_USER, "administrator", ADMIN_POLICY)
    existing = read_profile(account.credentials_file, "admin")
    if existing.get("aws_access_key_id") in iam.access_keys:
        return
    key = iam.create_access_key(ADMIN_USER)
    write_profiles(account, admin=(key.access_key_id, key.secret_access_key))


def write_profiles(account: LocalAccount, **profiles: tuple[str, str]) -> None:
    """Write (or update) the shared-credentials and config files for the given profiles."""
    credentials = configparser.ConfigParser()
    credentials.read(account.credentials_file)
    config = configparser.ConfigParser()
    config.read(account.config_file)
    for name, (key_id, secret) in profiles.items():
        credentials[name] = {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
    for name in credentials.sections():
        config[f"profile {name}"] = {"region": account.region, "endpoint_url": account.endpoint_url}
    for path, parser in ((account.credentials_file, credentials), (account.config_file, config)):
        lines = []
        for section in parser.sections():
            lines.append(f"[{section}]")
            lines.extend(f"{k} = {v}" for k, v in parser[section].items())
            lines.append("")
        _write_private(path, "\n".join(lines))


def _tag(name: str) -> list[dict[str, Any]]:
    return [{"Key": "Name", "Value": name}, {"Key": "ec2hub:local", "Value": "true"}]


def _by_name(items: list[dict], name: str) -> dict | None:
    for item in items:
        if {"Key": "Name", "Value": name} in item.get("Tags", []):
            return item
    return None


def provision(account: LocalAccount) -> dict[str, Any]:
    """Create what is missing, leave what exists, and write outputs.json; returns the outputs."""
    admin = account.session("admin")
    ec2 = admin.client("ec2", endpoint_url=account.endpoint_url)
    s3 = admin.client("s3", endpoint_url=account.endpoint_url)
    iam = admin.client("iam", endpoint_url=account.endpoint_url)

    vpc = _by_name(ec2.describe_vpcs()["Vpcs"], "ec2hub-local")
    if vpc is None:
        vpc = ec2.create_vpc(
            CidrBlock="127.0.0.0/16",
            TagSpecifications=[{"ResourceType": "vpc", "Tags": _tag("ec2hub-local")}],
        )["Vpc"]
    vpc_id = vpc["VpcId"]

    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    subnet_ids = []
    zones = [f"{account.region}{letter}" for letter in "abcdef"]
    for index, cidr in enumerate(account.subnet_cidrs):
        found = next((s for s in subnets if s["CidrBlock"] == cidr), None)
        if found is None:
            found = ec2.create_subnet(
                VpcId=vpc_id,
                CidrBlock=cidr,
                AvailabilityZone=zones[index % len(zones)],
                TagSpecifications=[{"ResourceType": "subnet", "Tags": _tag(f"ec2hub-local-users-{index}")}],
            )["Subnet"]
        subnet_ids.append(found["SubnetId"])

    groups = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": ["ec2hub-users"]}]
    )["SecurityGroups"]
    if groups:
        group_id = groups[0]["GroupId"]
    else:
        group_id = ec2.create_security_group(
            GroupName="ec2hub-users",
            Description="ec2hub user instances: the server port, from the hub only",
            VpcId=vpc_id,
        )["GroupId"]
        ec2.authorize_security_group_ingress(
            GroupId=group_id,
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": 8888,
                    "ToPort": 8888,
                    "IpRanges": [{"CidrIp": "127.0.0.1/32", "Description": "the hub"}],
                }
            ],
        )

    existing_buckets = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if account.bucket not in existing_buckets:
        s3.create_bucket(Bucket=account.bucket)

    images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [IMAGE_NAME]}])
    if images["Images"]:
        image_id = images["Images"][0]["ImageId"]
    else:
        image_id = ec2.register_image(
            Name=IMAGE_NAME,
            Description="ec2hub user environment (JupyterLab, the single-user server, bootstrap)",
            Architecture="x86_64",
            RootDeviceName="/dev/xvda",
            VirtualizationType="hvm",
        )["ImageId"]

    boundary_arn = _provision_boundary(iam, account)
    _provision_hub_principal(iam, account, subnet_ids=subnet_ids, group_ids=[group_id], image_id=image_id)

    outputs = {
        "aws_region": account.region,
        "aws_endpoint_url": account.endpoint_url,
        "account_id": ACCOUNT_ID,
        "vpc_id": vpc_id,
        "subnet_ids": subnet_ids,
        "security_group_ids": [group_id],
        "bucket": account.bucket,
        "ami_id": image_id,
        "user_boundary_arn": boundary_arn,
        "hub_id": account.hub_id,
        "credentials_file": str(account.credentials_file),
        "config_file": str(account.config_file),
    }
    _write_private(account.outputs_file, json.dumps(outputs, indent=2) + "\n")
    return outputs


def _provision_boundary(iam, account: LocalAccount) -> str:
    """The permissions boundary of every user role, kept equal to the document in the repo."""
    document = render_policy(
        "user-boundary", region=account.region, account_id=ACCOUNT_ID, bucket=account.bucket
    )
    arn = f"arn:aws:iam::{ACCOUNT_ID}:policy/{BOUNDARY_POLICY}"
    try:
        policy = iam.get_policy(PolicyArn=arn)["Policy"]
    except iam.exceptions.NoSuchEntityException:
        iam.create_policy(
            PolicyName=BOUNDARY_POLICY,
            PolicyDocument=document,
            Description="ec2hub: the most any user role may do",
        )
        return arn
    current = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])
    if json.dumps(current["PolicyVersion"]["Document"], sort_keys=True) != json.dumps(
        json.loads(document), sort_keys=True
    ):
        for version in iam.list_policy_versions(PolicyArn=arn)["Versions"]:
            if not version["IsDefaultVersion"]:
                iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=document, SetAsDefault=True)
    return arn


def _provision_hub_principal(
    iam, account: LocalAccount, *, subnet_ids: list[str], group_ids: list[str], image_id: str
) -> None:
    """The hub's principal: on AWS an IAM role; here a user with the same policy document, which lets
    it launch only into the local subnets and group, from the local image, of the default sizes."""
    users = {u["UserName"] for u in iam.list_users()["Users"]}
    if HUB_USER not in users:
        iam.create_user(UserName=HUB_USER, Path="/ec2hub/")
    document = hub_policy(
        region=account.region,
        account_id=ACCOUNT_ID,
        hub_id=account.hub_id,
        bucket=account.bucket,
        boundary_name=BOUNDARY_POLICY,
        subnet_ids=subnet_ids,
        security_group_ids=group_ids,
        image_ids=[image_id],
        instance_types=default_instance_types(),
    )
    iam.put_user_policy(UserName=HUB_USER, PolicyName=HUB_POLICY, PolicyDocument=document)
    keys = {k["AccessKeyId"] for k in iam.list_access_keys(UserName=HUB_USER)["AccessKeyMetadata"]}
    if read_profile(account.credentials_file, "hub").get("aws_access_key_id") in keys:
        write_profiles(account)  # the endpoint may have moved: refresh the config file
        return
    key = iam.create_access_key(UserName=HUB_USER)["AccessKey"]
    write_profiles(account, hub=(key["AccessKeyId"], key["SecretAccessKey"]))


def hub_environment(outputs: dict[str, Any]) -> dict[str, str]:
    """EC2HUB_* and AWS_* variables that point a hub at the local account (as Terraform outputs would)."""
    return {
        "EC2HUB_AWS_REGION": outputs["aws_region"],
        "EC2HUB_AWS_ENDPOINT_URL": outputs["aws_endpoint_url"],
        "EC2HUB_AMI_ID": outputs["ami_id"],
        "EC2HUB_SUBNET_IDS": ",".join(outputs["subnet_ids"]),
        "EC2HUB_SECURITY_GROUP_IDS": ",".join(outputs["security_group_ids"]),
        "EC2HUB_BUCKET": outputs["bucket"],
        "EC2HUB_USER_BOUNDARY_ARN": outputs["user_boundary_arn"],
        "EC2HUB_HUB_ID": outputs["hub_id"],
        "AWS_SHARED_CREDENTIALS_FILE": outputs["credentials_file"],
        "AWS_CONFIG_FILE": outputs["config_file"],
        "AWS_PROFILE": "hub",
    }
