"""MWAA (modules/mwaa) applied to the local cloud: everything but the environment itself.

Applied (26 resources): the DAGs bucket (versioning, SSE-S3, public access block, ownership, lifecycle,
TLS-only policy) with its dags/ folder, requirements.txt and plugins.zip; the execution role with its
trust and inline policy; MWAA's security group and its rules, and the rules on the hub's group that
admit it on the hub API, jobs and Dask gateway ports. Then a second plan finds nothing to change, and
destroy leaves nothing.

Not applied: the aws_mwaa_environment (create_environment = false). moto 5.2.5, the local cloud's
AWS, has no MWAA backend (no moto/mwaa: CreateEnvironment is not implemented), and on AWS an
environment takes 20-30 minutes to create and costs from then on. test_mwaa_plan.py checks the
environment by plan, and the role's policy with an IAM evaluator.

The local cloud alone, without a hub: Terraform runs as its admin, as an operator would. Its moto
fixes matter here: moto applies a bucket policy's Deny to object writes but cannot evaluate the
TLS-only condition (aws:SecureTransport) over its HTTP endpoint, and the local cloud treats such an
unverifiable condition as AWS would over HTTPS. The hub's group is a stand-in with the hub module's
ports (the root apply test, test_apply_localcloud.py, applies the hub module itself).
"""

from __future__ import annotations

import io
import json
import textwrap
import zipfile

import pytest
from botocore.exceptions import ClientError

from localcloud.up import Stack
from tests.e2e.stack import aws_client, stack_env
from tests.terraform.tooling import TERRAFORM_DIR, Terraform, cli_config

pytestmark = pytest.mark.e2e

SUBNET_BASE = 206  # the local cloud's own subnets, 127.0.206.0/24 and 127.0.207.0/24: nothing runs there
NAME = "ec2mw"
ENVIRONMENT = f"{NAME}-airflow"
BUCKET = "ec2hub-airflow-apply-test"
HUB_PORTS = {"hub-api": 8081, "jobs": 8187, "gateway-http": 8183, "gateway-tcp": 8184}
VPN = "10.8.0.0/16"
REQUIREMENTS = [
    "ec2hub-airflow[dask] @ file:///usr/local/airflow/plugins/ec2hub_airflow-0.1.0-py3-none-any.whl"
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    with (state / "stack.log").open("w") as log:
        stack = Stack(stack_env(state, subnet_base=SUBNET_BASE), output=log)
        try:
            stack.start_cloud()
            yield stack
        finally:
            stack.stop()


@pytest.fixture(scope="module")
def plugins_zip(tmp_path_factory) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ec2hub_airflow-0.1.0-py3-none-any.whl", b"a wheel")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def applied(stack, plugins_zip, tmp_path_factory):
    work = tmp_path_factory.mktemp("mwaa-apply")
    (work / "plugins.zip").write_bytes(plugins_zip)
    root = work / "root"
    root.mkdir()
    region = stack.outputs["aws_region"]
    endpoint = stack.outputs["aws_endpoint_url"]
    endpoints = "\n".join(f'    {service} = "{endpoint}"' for service in ("ec2", "iam", "s3", "sts"))
    (root / "main.tf").write_text(
        textwrap.dedent(
            """\
            provider "aws" {{
              region                      = "{region}"
              shared_credentials_files    = ["{credentials}"]
              profile                     = "admin"
              skip_credentials_validation = true
              skip_requesting_account_id  = true
              skip_metadata_api_check     = true
              s3_use_path_style           = true
              endpoints {{
            {endpoints}
              }}
            }}

            resource "aws_vpc" "hub" {{
              cidr_block = "10.60.0.0/16"
            }}

            resource "aws_subnet" "private" {{
              count = 2

              vpc_id            = aws_vpc.hub.id
              cidr_block        = cidrsubnet(aws_vpc.hub.cidr_block, 4, count.index)
              availability_zone = ["{region}a", "{region}b"][count.index]
            }}

            # Stands in for modules/hub's group of the hub instance.
            resource "aws_security_group" "hub" {{
              name_prefix = "hub-"
              description = "the hub instance"
              vpc_id      = aws_vpc.hub.id
            }}

            module "mwaa" {{
              source                  = "{module}"
              name                    = "{name}"
              account_id              = "{account}"
              bucket                  = "{bucket}"
              force_destroy           = true
              vpc_id                  = aws_vpc.hub.id
              subnet_ids              = aws_subnet.private[*].id
              hub_security_group_id   = aws_security_group.hub.id
              hub_ports               = {hub_ports}
              requirements            = {requirements}
              plugins_zip             = "{plugins}"
              webserver_allowed_cidrs = ["{vpn}"]
              # moto 5.2.5 has no MWAA: everything else of the module.
              create_environment = false
            }}

            output "mwaa" {{
              value = module.mwaa
            }}

            output "hub_security_group_id" {{
              value = aws_security_group.hub.id
            }}
            """
        ).format(
            region=region,
            credentials=stack.outputs["credentials_file"],
            endpoints=endpoints,
            module=TERRAFORM_DIR / "modules" / "mwaa",
            name=NAME,
            account=stack.outputs["account_id"],
            bucket=BUCKET,
            hub_ports="{ " + ", ".join(f"{k} = {v}" for k, v in HUB_PORTS.items()) + " }",
            requirements=json.dumps(REQUIREMENTS),
            plugins=work / "plugins.zip",
            vpn=VPN,
        )
    )
    tf = Terraform(root, cli_config(work), env={"TF_DATA_DIR": str(work / "data")})
    tf.check("init", "-input=false")
    try:
        tf.check("apply", "-auto-approve", "-input=false", timeout=400)
        outputs = json.loads(tf.check("output", "-json").stdout)
        yield (
            tf,
            {"hub_security_group_id": outputs["hub_security_group_id"]["value"], **outputs["mwaa"]["value"]},
        )
    finally:
        destroyed = tf.run("destroy", "-auto-approve", "-input=false", timeout=400)
    assert destroyed.returncode == 0, destroyed.stderr[-4000:]
    assert_nothing_left(stack)


def test_a_second_plan_changes_nothing_but_what_moto_reports_differently(applied):
    """Nothing drifts, except two things moto 5.2.5 answers unlike EC2 for security group rules (so
    every rule would be planned again against the local cloud, and the root's apply test would show
    the same): it leaves out their descriptions and prefixes a referenced group with its account."""
    tf, _ = applied
    tf.check("plan", "-input=false", "-out=again")
    plan = json.loads(tf.check("show", "-json", "again").stdout)
    changed = {
        c["address"]: c["change"] for c in plan["resource_changes"] if c["change"]["actions"] != ["no-op"]
    }
    rules = {a: c for a, c in changed.items() if ".aws_vpc_security_group_" in a and "_rule." in a}
    assert set(changed) == set(rules), sorted(set(changed) - set(rules))
    for address, change in rules.items():
        assert change["actions"] == ["update"], address
        differing = {k for k in change["after"] if change["before"].get(k) != change["after"][k]}
        assert differing <= {"description", "referenced_security_group_id"}, (address, differing)
        before, after = (
            change["before"].get("referenced_security_group_id"),
            change["after"].get("referenced_security_group_id"),
        )
        assert before is None or before.split("/")[-1] == after, address


def test_the_dags_bucket_holds_what_mwaa_reads_privately_and_versioned(stack, applied, plugins_zip):
    _, outputs = applied
    assert (outputs["bucket"], outputs["dag_s3_path"]) == (BUCKET, "dags")
    assert (outputs["environment_name"], outputs["environment_arn"], outputs["webserver_url"]) == (
        ENVIRONMENT,
        None,
        None,
    )
    s3 = aws_client(stack, "s3")
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    [rule] = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
    )
    [ownership] = s3.get_bucket_ownership_controls(Bucket=BUCKET)["OwnershipControls"]["Rules"]
    assert ownership["ObjectOwnership"] == "BucketOwnerEnforced"
    [tls] = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"]
    assert (tls["Effect"], tls["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})
    [lifecycle] = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert lifecycle["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {"dags/", "requirements.txt", "plugins.zip"}
    requirements = s3.get_object(Bucket=BUCKET, Key=outputs["requirements_s3_path"])
    assert requirements["VersionId"] not in (None, "null"), "the environment pins this version"
    lines = requirements["Body"].read().decode().splitlines()
    assert [line for line in lines if not line.startswith("#")] == REQUIREMENTS
    plugins = s3.get_object(Bucket=BUCKET, Key=outputs["plugins_s3_path"])
    assert plugins["Body"].read() == plugins_zip
    assert plugins["VersionId"] not in (None, "null")


def test_the_execution_role_trusts_mwaa_and_reads_no_bucket_but_its_own(stack, applied):
    _, outputs = applied
    region, account = stack.outputs["aws_region"], stack.outputs["account_id"]
    iam = aws_client(stack, "iam")
    role_name = outputs["execution_role_arn"].rsplit("/", 1)[1]
    assert outputs["execution_role_arn"] == f"arn:aws:iam::{account}:role/ec2hub/{role_name}"
    role = iam.get_role(RoleName=role_name)["Role"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert sorted(trust["Principal"]["Service"]) == ["airflow-env.amazonaws.com", "airflow.amazonaws.com"]
    assert trust["Condition"]["ArnLike"] == {
        "aws:SourceArn": f"arn:aws:airflow:{region}:{account}:environment/{ENVIRONMENT}"
    }
    [name] = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
    resources = [
        resource
        for statement in document["Statement"]
        for resource in (
            [statement["Resource"]]
            if isinstance(statement.get("Resource"), str)
            else statement.get("Resource", [])
        )
    ]
    buckets = {r for r in resources if r.startswith("arn:aws:s3:::")}
    assert buckets == {f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"}
    assert f"arn:aws:secretsmanager:{region}:{account}:secret:airflow/connections/*" in resources
    assert iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"] == []


def test_mwaa_reaches_the_hub_ports_and_admits_itself_and_the_vpn(stack, applied):
    _, outputs = applied
    ec2 = aws_client(stack, "ec2")
    mwaa, hub = outputs["security_group_id"], outputs["hub_security_group_id"]
    groups = {g["GroupId"]: g for g in ec2.describe_security_groups(GroupIds=[mwaa, hub])["SecurityGroups"]}

    def rules(group: str, direction: str) -> set[tuple[int, int, str]]:
        return {
            (rule["FromPort"], rule["ToPort"], source)
            for rule in groups[group][direction]
            for source in [p["GroupId"] for p in rule.get("UserIdGroupPairs", [])]
            + [r["CidrIp"] for r in rule.get("IpRanges", [])]
        }

    assert all(rule["IpProtocol"] == "tcp" for g in groups.values() for rule in g["IpPermissions"])
    assert rules(hub, "IpPermissions") == {(port, port, mwaa) for port in HUB_PORTS.values()}
    assert rules(mwaa, "IpPermissionsEgress") == {(port, port, hub) for port in HUB_PORTS.values()} | {
        (443, 443, "0.0.0.0/0"),
        (5432, 5432, mwaa),
    }
    assert rules(mwaa, "IpPermissions") == {(443, 443, mwaa), (5432, 5432, mwaa), (443, 443, VPN)}


def assert_nothing_left(stack) -> None:
    s3 = aws_client(stack, "s3")
    assert BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    iam = aws_client(stack, "iam")
    assert [
        r for r in iam.list_roles(PathPrefix="/ec2hub/")["Roles"] if r["RoleName"].startswith(ENVIRONMENT)
    ] == []
    with pytest.raises(ClientError):
        iam.get_role(RoleName=f"{ENVIRONMENT}-execution")
    groups = aws_client(stack, "ec2").describe_security_groups()["SecurityGroups"]
    assert [g["GroupName"] for g in groups if g["GroupName"].startswith(ENVIRONMENT)] == []
