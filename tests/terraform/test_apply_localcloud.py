"""Terraform applied to the local cloud, then a spawn end to end with what it created, then destroy.

Applied (the root module with create_hub_instance = false, three of the hub's secrets, a monthly
budget and an alarm e-mail address, 77 resources): network (VPC, private and public subnets in two
zones, internet gateway, NAT gateway and its address, route tables, the S3 gateway endpoint, flow
logs with their log group and role), storage (the bucket with versioning, SSE-KMS, public access
block, ownership, lifecycle, TLS-only policy), iam (the hub role with the repository's policy
document, its log, Session Manager and secrets policies, the ECR managed policy, instance profile,
the user boundary), the hub module's security groups (load balancer, hub, users, Dask clusters) and
rules, and the secrets' SSM parameters, monitoring (log group, alarm topic and its e-mail
subscription, spawn-failure metric filter and alarm, running-vCPU alarm), costs (the monthly AWS
Budgets budget on the hub tag with its two e-mail notifications; localcloud/motofixes.py gives moto
the Budgets calls the provider reads a budget with).

Not applied: the cost allocation tags (moto 5.2.5 has no Cost Explorer cost allocation tag calls,
and on AWS a key can be activated only after billing has seen it; test_costs_plan.py checks them by
plan); the hub instance, whose user-data the local runtime would run as a process on this machine
(it installs Docker); with it its database volume, the DLM snapshot policy (moto 5.2.5 has no DLM),
the load balancer, target group and HTTPS listener with an ACM certificate, and the hub-down alarm
that watches them. The hub of this test runs as a process instead, with Terraform's outputs as its
settings and Terraform's role as its identity.
"""

from __future__ import annotations

import ipaddress
import json
import textwrap
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from localcloud.provision import read_profile
from localcloud.up import Stack
from tests.e2e.stack import admin_client, approved_user, aws_client, instances_of, stack_env
from tests.terraform.tooling import Terraform, cli_config, working_copy

pytestmark = pytest.mark.e2e

NAME = "ec2tf"
HUB_ID = "ec2hub-terraform"
BUCKET = "ec2hub-terraform-test"
BOUNDARY = "ec2hub-tf-user-boundary"
BUDGET_USD = 100
ALARM_EMAIL = "ops@example.com"
SUBNET_BASE = 250  # Terraform's private subnets: 127.0.250.0/24 and 127.0.251.0/24, where instances run
SPARE_BASE = 246  # nothing binds an address here
# Terraform's gateway and jobs ports are the hub machine's (8183, 8184, 8187); the stack keeps free
# ports of its own.
STACK_PORTS = ("EC2HUB_GATEWAY_PORT", "EC2HUB_GATEWAY_TCP_PORT", "EC2HUB_JOBS_PORT")
ENDPOINT_SERVICES = (
    "acm budgets ce cloudwatch dlm ec2 elbv2 iam kms logs s3 sns ssm sts"  # every service the modules call
).split()


# The hub's secrets, as an operator passes them (TF_VAR_*): each must reach its SSM parameter, and the
# hub, and nothing an operator or an instance's reader sees. Odd characters on purpose: user-data's
# shell must write them nowhere, and expand nothing.
SECRETS = {
    "oauth_client_secret": "oauth-S3cret-`touch /tmp/ec2hub-pwned`-$HOME",
    "ldap_search_password": "ldap-Passw0rd-$(id)",
    "proxy_auth_token": "proxy-T0ken-0123456789abcdef",
}


class TerraformStack(Stack):
    """The local stack whose hub runs with Terraform's outputs and as Terraform's hub role."""

    overrides: dict[str, str] = {}
    # What Terraform showed and kept: the plan (JSON), the state, the outputs, the hub's user-data.
    seen: dict[str, str] = {}

    @property
    def hub_env(self) -> dict[str, str]:
        return {**super().hub_env, **self.overrides}


def test_root_module(outputs, stack):
    assert outputs["hub_id"] == HUB_ID
    assert outputs["bucket"] == BUCKET
    assert outputs["user_boundary_arn"].endswith(f":policy/{BOUNDARY}")
    env = outputs["hub_environment"]
    assert env["EC2HUB_SUBNET_IDS"].split(",") == outputs["subnet_ids"]
    assert env["EC2HUB_SECURITY_GROUP_IDS"].split(",") == outputs["security_group_ids"]
    assert env["EC2HUB_CLUSTER_SECURITY_GROUP_IDS"] == outputs["cluster_security_group_id"]
    assert (env["EC2HUB_GATEWAY_PORT"], env["EC2HUB_GATEWAY_TCP_PORT"]) == ("8183", "8184")
    assert env["EC2HUB_JOBS_PORT"] == "8187"
    # Sign-in throttling believes the client address only the load balancer's subnets forward.
    proxies = [ipaddress.ip_network(n.strip()) for n in env["EC2HUB_TRUSTED_PROXIES"].split(",")]
    assert proxies and not any(
        n.overlaps(ipaddress.ip_network("0.0.0.0/0")) and n.prefixlen == 0 for n in proxies
    )

    ec2 = aws_client(stack, "ec2")
    subnets = ec2.describe_subnets(SubnetIds=outputs["subnet_ids"])["Subnets"]
    assert sorted(s["CidrBlock"] for s in subnets) == [
        f"127.0.{SUBNET_BASE}.0/24",
        f"127.0.{SUBNET_BASE + 1}.0/24",
    ]
    assert len({s["AvailabilityZone"] for s in subnets}) == 2
    [users_group], cluster_group = outputs["security_group_ids"], outputs["cluster_security_group_id"]
    groups = {
        g["GroupId"]: g
        for g in ec2.describe_security_groups(GroupIds=[users_group, cluster_group])["SecurityGroups"]
    }
    [rule] = groups[users_group]["IpPermissions"]
    assert (rule["FromPort"], rule["ToPort"]) == (8888, 8888)
    assert not rule.get("IpRanges"), "user servers accept the hub's group only, no address range"
    assert_cluster_group(ec2, groups[cluster_group], users_group)
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [outputs["vpc_id"]]}])
    assert [e["ServiceName"] for e in endpoints["VpcEndpoints"]] == ["com.amazonaws.us-east-1.s3"]

    s3 = aws_client(stack, "s3")
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    policy = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}

    nat_routes = [
        route
        for table in ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [outputs["vpc_id"]]}])[
            "RouteTables"
        ]
        for route in table["Routes"]
        if route.get("NatGatewayId")
    ]
    assert len(nat_routes) == 2, "both private subnets reach the internet through the NAT gateway"
    assert ec2.describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [outputs["vpc_id"]]}])[
        "FlowLogs"
    ]

    logs = aws_client(stack, "logs")
    groups = {
        g["logGroupName"]: g
        for g in logs.describe_log_groups(logGroupNamePrefix=f"/ec2hub/{NAME}/")["logGroups"]
    }
    assert set(groups) == {f"/ec2hub/{NAME}/hub", f"/ec2hub/{NAME}/vpc-flow-logs"}
    assert all(g["retentionInDays"] == 365 for g in groups.values())
    [spawn_filter] = logs.describe_metric_filters(logGroupName=f"/ec2hub/{NAME}/hub")["metricFilters"]
    assert "failed to start" in spawn_filter["filterPattern"]
    alarms = aws_client(stack, "cloudwatch").describe_alarms(AlarmNamePrefix=f"{NAME}-")["MetricAlarms"]
    assert {a["AlarmName"] for a in alarms} == {
        f"{NAME}-spawn-failures",
        f"{NAME}-job-failures",
        f"{NAME}-running-vcpus",
    }
    assert all(a["AlarmActions"] == [outputs["alarm_topic_arn"]] for a in alarms)
    # What the jobs service publishes for each failed run (hub/jobs), any one of them within 5 minutes.
    [jobs] = [a for a in alarms if a["AlarmName"] == outputs["job_failures_alarm_name"]]
    assert (jobs["Namespace"], jobs["MetricName"], jobs["Dimensions"]) == (
        "ec2hub/jobs",
        "FailedRuns",
        [{"Name": "HubId", "Value": HUB_ID}],
    )
    assert (jobs["Statistic"], jobs["Period"], jobs["EvaluationPeriods"]) == ("Sum", 300, 1)
    assert (jobs["ComparisonOperator"], jobs["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1.0)
    assert jobs["TreatMissingData"] == "notBreaching"

    iam = aws_client(stack, "iam")
    role = iam.get_role(RoleName=f"{NAME}-hub")["Role"]
    assert role["Path"] == "/ec2hub/"
    assert "ec2hub-hub" in iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]
    document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName="ec2hub-hub")["PolicyDocument"]
    assert any(s.get("Sid") == "CreateAndChangeUserRolesOnlyWithTheBoundary" for s in document["Statement"])
    [subnets_statement] = [s for s in document["Statement"] if s["Sid"] == "LaunchOnlyIntoTheHubsSubnets"]
    assert sorted(arn.rsplit("/", 1)[1] for arn in subnets_statement["Resource"]) == sorted(
        outputs["subnet_ids"]
    )
    attached = iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"]
    assert "AmazonSSMManagedInstanceCore" not in {p["PolicyName"] for p in attached}


def test_monthly_budget_on_the_hub_tag(outputs, stack):
    """The budget counts what carries the hub's tag, monthly, and mails the alarm address at 80 % of
    the limit spent and at 100 % forecast."""
    account = stack.outputs["account_id"]
    budgets = aws_client(stack, "budgets")
    name = outputs["budget_name"]
    assert name == f"{NAME}-hub-monthly"
    [budget] = budgets.describe_budgets(AccountId=account)["Budgets"]
    assert (budget["BudgetName"], budget["BudgetType"], budget["TimeUnit"]) == (name, "COST", "MONTHLY")
    assert (float(budget["BudgetLimit"]["Amount"]), budget["BudgetLimit"]["Unit"]) == (BUDGET_USD, "USD")
    assert budget["CostFilters"] == {"TagKeyValue": [f"user:ec2hub:hub${HUB_ID}"]}

    notifications = budgets.describe_notifications_for_budget(AccountId=account, BudgetName=name)[
        "Notifications"
    ]
    assert sorted(
        (n["NotificationType"], n["ComparisonOperator"], n["Threshold"], n["ThresholdType"])
        for n in notifications
    ) == [("ACTUAL", "GREATER_THAN", 80, "PERCENTAGE"), ("FORECASTED", "GREATER_THAN", 100, "PERCENTAGE")]
    for notification in notifications:
        subscribers = budgets.describe_subscribers_for_notification(
            AccountId=account, BudgetName=name, Notification=notification
        )["Subscribers"]
        assert subscribers == [{"SubscriptionType": "EMAIL", "Address": ALARM_EMAIL}]
    tags = budgets.list_tags_for_resource(ResourceARN=f"arn:aws:budgets::{account}:budget/{name}")
    assert {"Key": "ec2hub:deployment", "Value": NAME} in tags["ResourceTags"]


def test_hub_secrets_are_in_ssm_only(outputs, stack):
    """Each secret is a SecureString parameter that the hub's role reads (and did, at its start); none
    is in the plan, the state, an output, the hub's environment or its rendered user-data."""
    env = outputs["hub_environment"]
    names = {kind: env[f"EC2HUB_{kind.upper()}_PARAMETER"] for kind in SECRETS}
    assert names == {kind: f"/ec2hub/{NAME}/hub/{kind.replace('_', '-')}" for kind in SECRETS}
    ssm = aws_client(stack, "ssm")
    for kind, name in names.items():
        parameter = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
        assert (parameter["Type"], parameter["Value"]) == ("SecureString", SECRETS[kind])

    iam = aws_client(stack, "iam")
    readable = iam.get_role_policy(RoleName=f"{NAME}-hub", PolicyName="ec2hub-hub-secrets")["PolicyDocument"]
    [statement] = readable["Statement"]
    assert statement["Action"] in ("ssm:GetParameter", ["ssm:GetParameter"])
    assert sorted(statement["Resource"]) == sorted(
        f"arn:aws:ssm:{stack.outputs['aws_region']}:{stack.outputs['account_id']}:parameter{name}"
        for name in names.values()
    )
    # The hub started with the parameters' names only, and read the values as Terraform's role.
    audit = [json.loads(line) for line in (stack.cloud_dir / "audit.jsonl").read_text().splitlines()]
    reads = [
        e
        for e in audit
        if e["action"] == "GetParameter" and e["status"] == 200 and e["key"].startswith("ASIA")
    ]
    assert len(reads) >= len(SECRETS)

    assert set(stack.seen) == {"plan", "state", "outputs", "user-data"}
    assert "EC2HUB_PROXY_AUTH_TOKEN_PARAMETER=" in stack.seen["user-data"]
    for where, text in stack.seen.items():
        leaked = [kind for kind, value in SECRETS.items() if value in text]
        assert leaked == [], f"{', '.join(leaked)} in the {where}"


def assert_cluster_group(ec2, group: dict, users_group: str) -> None:
    """Dask among the group's instances on every unprivileged port but the server's 8888 and a
    scheduler's dashboard and API (8787-8788), which only the hub reaches; the hub API, the gateway's
    ports and the jobs service's on the hub, from the user group that every launched instance carries
    (user servers, Dask instances, job instances)."""
    ingress = {
        (rule["FromPort"], rule["ToPort"], pair["GroupId"])
        for rule in group["IpPermissions"]
        for pair in rule["UserIdGroupPairs"]
    }
    assert all(not rule.get("IpRanges") for rule in group["IpPermissions"]), "groups only, no address range"
    [hub_group] = {source for *_, source in ingress} - {group["GroupId"]}
    peers = {(low, high) for low, high, source in ingress if source == group["GroupId"]}
    assert ingress - {(low, high, group["GroupId"]) for low, high in peers} == {(8786, 8788, hub_group)}
    assert peers == {(1024, 8786), (8789, 8887), (8889, 65535)}
    [hub] = ec2.describe_security_groups(GroupIds=[hub_group])["SecurityGroups"]
    from_users = {
        (rule["FromPort"], rule["ToPort"])
        for rule in hub["IpPermissions"]
        for pair in rule["UserIdGroupPairs"]
        if pair["GroupId"] == users_group
    }
    assert from_users == {(8081, 8081), (8183, 8183), (8184, 8184), (8187, 8187)}


def test_spawn_with_terraform_outputs(outputs, stack):
    """Alice's server runs in Terraform's subnet and group, and the hub acts as Terraform's role."""
    alice = approved_user(stack, "alice")
    alice.start("alice")
    alice.wait_ready("alice", timeout=120)
    status = alice.user_api("alice", alice.token("alice"), "GET", "/status")
    assert status.status_code == 200, "alice reaches her server through the hub's proxy"
    ec2 = aws_client(stack, "ec2")
    [instance] = instances_of(ec2, "alice")
    assert instance["SubnetId"] in outputs["subnet_ids"]
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == outputs["security_group_ids"]
    assert {"Key": "ec2hub:hub", "Value": HUB_ID} in instance["Tags"]
    assert instance["PrivateIpAddress"].startswith(f"127.0.{SUBNET_BASE}.") or instance[
        "PrivateIpAddress"
    ].startswith(f"127.0.{SUBNET_BASE + 1}.")

    iam = aws_client(stack, "iam")
    user_roles = iam.list_roles(PathPrefix="/ec2hub/users/")["Roles"]
    [user_role] = [r for r in user_roles if "alice" in r["RoleName"]]
    boundary = iam.get_role(RoleName=user_role["RoleName"])["Role"]["PermissionsBoundary"]
    assert boundary["PermissionsBoundaryArn"] == outputs["user_boundary_arn"]

    # The hub's calls are signed with the temporary keys of Terraform's role (AssumeRole from the
    # admin's keys in the test's AWS config), never with the local cloud's own hub user.
    audit = [json.loads(line) for line in (stack.cloud_dir / "audit.jsonl").read_text().splitlines()]
    local_hub_key = read_profile(Path(stack.outputs["credentials_file"]), "hub")["aws_access_key_id"]
    launch_keys = {e["key"] for e in audit if e["action"] == "RunInstances"}
    assert launch_keys and local_hub_key not in launch_keys
    assert all(key.startswith("ASIA") for key in launch_keys), launch_keys
    assert any(e["action"] == "AssumeRole" and e["status"] == 200 for e in audit)

    alice.stop("alice")
    # Deleting the user removes her instance, role and instance profile, so destroy finds nothing of hers.
    response = admin_client(stack).api("DELETE", "/users/alice")
    assert response.status_code == 204, response.text


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    env = stack_env(tmp_path_factory.mktemp("state"), subnet_base=SUBNET_BASE)
    # The local cloud's own subnets (unused here) and Terraform's public ones share the second base.
    env["EC2HUB_LOCAL_SUBNETS"] = f"127.0.{SPARE_BASE}.0/25,127.0.{SPARE_BASE}.128/25"
    env["EC2HUB_STOP_BEHAVIOUR"] = "terminate"
    # The hub's role gets an AWS managed policy attached (ECR read), as on AWS.
    env["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    stack = TerraformStack(env)
    try:
        stack.start_cloud()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def outputs(stack, tmp_path_factory):
    work = tmp_path_factory.mktemp("terraform")
    module = working_copy(work / "repo")
    root = work / "root"
    root.mkdir()
    endpoint = stack.outputs["aws_endpoint_url"]
    admin_arn = "arn:aws:iam::{}:user/localcloud-admin".format(stack.outputs["account_id"])
    endpoints = "\n".join(f'    {name} = "{endpoint}"' for name in ENDPOINT_SERVICES)
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

            module "ec2hub" {{
              source                 = "{module}"
              name                   = "{name}"
              hub_id                 = "{hub_id}"
              bucket                 = "{bucket}"
              bucket_force_destroy   = true
              boundary_name          = "{boundary}"
              azs                    = ["{region}a", "{region}b"]
              vpc_cidr               = "127.0.0.0/16"
              private_subnet_cidrs   = ["127.0.{p0}.0/24", "127.0.{p1}.0/24"]
              public_subnet_cidrs    = ["127.0.{q}.0/25", "127.0.{q}.128/25"]
              user_ami_id            = "{ami}"
              create_hub_instance    = false
              trusted_principal_arns = ["{admin_arn}"]
              monthly_budget_usd     = {budget}
              alarm_emails           = ["{email}"]
              # Not applied: moto 5.2.5 has no Cost Explorer cost allocation tag calls
              # (UpdateCostAllocationTagsStatus), and on AWS a key activates only after billing has
              # seen it, so a new account's apply would fail too. test_costs_plan.py checks it by plan.
              cost_allocation_tags   = false
              hub_oauth_client_secret  = var.hub_oauth_client_secret
              hub_ldap_search_password = var.hub_ldap_search_password
              hub_proxy_auth_token     = var.hub_proxy_auth_token
              hub_parameter_versions = {{
                oauth_client_secret  = 1
                ldap_search_password = 1
                proxy_auth_token     = 1
              }}
            }}

            variable "hub_oauth_client_secret" {{
              type      = string
              sensitive = true
              ephemeral = true
            }}

            variable "hub_ldap_search_password" {{
              type      = string
              sensitive = true
              ephemeral = true
            }}

            variable "hub_proxy_auth_token" {{
              type      = string
              sensitive = true
              ephemeral = true
            }}

            output "all" {{
              value = module.ec2hub
            }}
            """
        ).format(
            region=stack.outputs["aws_region"],
            credentials=stack.outputs["credentials_file"],
            endpoints=endpoints,
            module=module,
            name=NAME,
            hub_id=HUB_ID,
            bucket=BUCKET,
            boundary=BOUNDARY,
            p0=SUBNET_BASE,
            p1=SUBNET_BASE + 1,
            q=SPARE_BASE + 1,
            ami=stack.outputs["ami_id"],
            admin_arn=admin_arn,
            budget=BUDGET_USD,
            email=ALARM_EMAIL,
        )
    )
    secrets = {f"TF_VAR_hub_{kind}": value for kind, value in SECRETS.items()}
    tf = Terraform(root, cli_config(work), env={"TF_DATA_DIR": str(work / "data"), **secrets})
    tf.check("init", "-input=false")
    try:
        tf.check("plan", "-input=false", "-out=tfplan", timeout=400)
        stack.seen["plan"] = tf.check("show", "-json", "tfplan").stdout
        tf.check("apply", "-input=false", "tfplan", timeout=400)
        stack.seen["state"] = (root / "terraform.tfstate").read_text()
        stack.seen["outputs"] = tf.check("output", "-json").stdout
        result = json.loads(stack.seen["outputs"])["all"]["value"]
        stack.seen["user-data"] = rendered_user_data(tf, work / "repo")
        environment = {k: v for k, v in result["hub_environment"].items() if k not in STACK_PORTS}
        stack.overrides = {**environment, **hub_profile(stack, work, result["hub_role_arn"])}
        stack.start_hub()
        yield result
        stack.stop_hub()
    finally:
        destroyed = tf.run("destroy", "-auto-approve", "-input=false", timeout=400)
    assert destroyed.returncode == 0, destroyed.stderr[-4000:]
    assert_nothing_left(stack)


def rendered_user_data(tf: Terraform, repo: Path) -> str:
    """The hub instance's user-data as the hub module renders it, with the environment Terraform gave
    the hub (the instance itself is not applied here: its user-data would run on this machine)."""
    template = repo / "terraform" / "modules" / "hub" / "templates" / "user-data.sh.tftpl"
    expression = (
        f'templatefile("{template}", {{database_volume_id = "vol-0", environment ='
        " module.ec2hub.hub_environment, hub_api_port = 8081, proxy_port = 8000,"
        " service_ports = [8183, 8184, 8187],"
        ' image = "ec2hub:test", region = "us-east-1", log_group = "/ec2hub/test"})'
    )
    rendered = tf.check("console", stdin=expression + "\n").stdout
    assert "docker run" in rendered, rendered[-2000:]
    return rendered


def hub_profile(stack, work, role_arn: str) -> dict[str, str]:
    """An AWS config in which the hub's profile assumes Terraform's hub role from the admin's keys."""
    config = work / "aws-config"
    endpoint = stack.outputs["aws_endpoint_url"]
    region = stack.outputs["aws_region"]
    config.write_text(
        f"[profile admin]\nregion = {region}\nendpoint_url = {endpoint}\n\n"
        f"[profile terraform-hub]\nrole_arn = {role_arn}\nsource_profile = admin\n"
        f"role_session_name = ec2hub-hub\nregion = {region}\nendpoint_url = {endpoint}\n"
    )
    assert read_profile(Path(stack.outputs["credentials_file"]), "admin"), "the local cloud wrote admin keys"
    return {"AWS_CONFIG_FILE": str(config), "AWS_PROFILE": "terraform-hub"}


def assert_nothing_left(stack) -> None:
    ec2 = aws_client(stack, "ec2")
    tagged = [{"Name": "tag:ec2hub:deployment", "Values": [NAME]}]
    assert ec2.describe_vpcs(Filters=tagged)["Vpcs"] == []
    assert ec2.describe_subnets(Filters=tagged)["Subnets"] == []
    assert ec2.describe_security_groups(Filters=tagged)["SecurityGroups"] == []
    nat_gateways = ec2.describe_nat_gateways(Filters=tagged)["NatGateways"]
    assert [n["NatGatewayId"] for n in nat_gateways if n["State"] != "deleted"] == []
    assert ec2.describe_addresses(Filters=tagged)["Addresses"] == []
    assert instances_of(ec2, "alice") == []
    s3 = aws_client(stack, "s3")
    assert BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert (
        aws_client(stack, "logs").describe_log_groups(logGroupNamePrefix=f"/ec2hub/{NAME}/")["logGroups"]
        == []
    )
    assert aws_client(stack, "cloudwatch").describe_alarms(AlarmNamePrefix=f"{NAME}-")["MetricAlarms"] == []
    topics = aws_client(stack, "sns").list_topics()["Topics"]
    assert [t for t in topics if t["TopicArn"].endswith(f":{NAME}-alarms")] == []
    assert (
        aws_client(stack, "budgets").describe_budgets(AccountId=stack.outputs["account_id"])["Budgets"] == []
    )
    iam = aws_client(stack, "iam")
    with pytest.raises(ClientError):
        iam.get_role(RoleName=f"{NAME}-hub")
    with pytest.raises(ClientError):
        iam.get_instance_profile(InstanceProfileName=f"{NAME}-hub")
    assert [r for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(f"{NAME}-")] == []
    with pytest.raises(ClientError):
        iam.get_policy(PolicyArn=f"arn:aws:iam::{stack.outputs['account_id']}:policy/{BOUNDARY}")
    assert [r for r in iam.list_roles(PathPrefix="/ec2hub/users/")["Roles"] if "alice" in r["RoleName"]] == []
