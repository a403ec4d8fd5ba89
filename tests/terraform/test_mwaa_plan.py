"""MWAA (modules/mwaa) as the root module plans it with mwaa_enabled = true: the execution role, the
hub's security group rule, the DAGs bucket and the environment; and nothing of it by default.

Planned, not applied, for the environment: moto 5.2.5 (the local cloud) has no MWAA backend, so
test_mwaa_apply.py applies everything else of the module and this plan is where the environment is
checked. A plan needs one AWS call, the account ID (STS), which a moto server of the test's own
answers. The execution role's policy is decided twice: by its statements as planned, and by an
independent evaluator (@cloud-copilot/iam-simulate, tests/policy/evaluate.mjs) on requests MWAA and a
DAG could make; moto's IAM ignores conditions and exact ARNs, so neither check could be done there.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import textwrap
import zipfile
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from hub.settings import REPO_ROOT
from tests.e2e.stack import listen_port
from tests.terraform.tooling import Terraform, cli_config, working_copy

ACCOUNT = "123456789012"  # moto's account
REGION = "us-east-1"
NAME = "ec2hub"
USERS_BUCKET = "ec2hub-users-data"
DAGS_BUCKET = f"{NAME}-airflow-{ACCOUNT}-{REGION}"
ENVIRONMENT = f"{NAME}-airflow"
MWAA = "module.ec2hub.module.mwaa[0]"
HUB = "module.ec2hub.module.hub"
REQUIREMENTS = [
    "ec2hub-airflow[dask] @ file:///usr/local/airflow/plugins/ec2hub_airflow-0.1.0-py3-none-any.whl"
]
VPN = "10.8.0.0/16"
# What the hub module opens to user servers on the hub (modules/hub: the hub API, the Dask gateway's
# two proxies, the jobs service), which Airflow's tasks use the same way.
HUB_RULES_FROM_USERS = {
    "hub_api_from_users": "hub-api",
    'hub_gateway_from_users["http"]': "gateway-http",
    'hub_gateway_from_users["tcp"]': "gateway-tcp",
    "hub_jobs_from_users": "jobs",
}

EVALUATE = REPO_ROOT / "tests" / "policy" / "evaluate.mjs"
EVALUATOR = REPO_ROOT / "node_modules" / "@cloud-copilot" / "iam-simulate"
ALLOWED, DENIED = "Allowed", "ImplicitlyDenied"


@pytest.fixture(scope="module")
def tf(tmp_path_factory):
    work = tmp_path_factory.mktemp("mwaa")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=listen_port(), verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        module = working_copy(work / "repo")
        plugins = work / "plugins.zip"
        with zipfile.ZipFile(plugins, "w") as archive:
            archive.writestr("ec2hub_airflow-0.1.0-py3-none-any.whl", b"a wheel")
        root = work / "root"
        root.mkdir()
        (root / "main.tf").write_text(
            textwrap.dedent(
                f"""\
                provider "aws" {{
                  region                      = "{REGION}"
                  access_key                  = "testing"
                  secret_key                  = "testing"
                  skip_credentials_validation = true
                  skip_requesting_account_id  = true
                  skip_metadata_api_check     = true
                  endpoints {{
                    sts = "http://{host}:{port}"
                  }}
                }}

                variable "mwaa_enabled" {{
                  type    = bool
                  default = null
                }}

                variable "enable_nat_gateway" {{
                  type    = bool
                  default = true
                }}

                module "ec2hub" {{
                  source              = "{module}"
                  name                = "{NAME}"
                  bucket              = "{USERS_BUCKET}"
                  azs                 = ["{REGION}a", "{REGION}b"]
                  user_ami_id         = "ami-0123456789abcdef0"
                  create_hub_instance = false
                  enable_nat_gateway  = var.enable_nat_gateway
                  mwaa_enabled        = var.mwaa_enabled
                  mwaa = {{
                    requirements            = {json.dumps(REQUIREMENTS)}
                    plugins_zip             = "{plugins}"
                    webserver_allowed_cidrs = ["{VPN}"]
                  }}
                }}

                output "all" {{
                  value = module.ec2hub
                }}
                """
            )
        )
        tf = Terraform(root, cli_config(work), env={"TF_DATA_DIR": str(work / "data")})
        tf.check("init", "-input=false")
        yield tf
    finally:
        server.stop()


def planned(tf: Terraform, *variables: str) -> dict:
    args = [arg for variable in variables for arg in ("-var", variable)]
    tf.check("plan", "-input=false", "-out=tfplan", *args)
    return json.loads(tf.check("show", "-json", "tfplan").stdout)


@pytest.fixture(scope="module")
def plan(tf) -> dict:
    return planned(tf, "mwaa_enabled=true")


@pytest.fixture(scope="module")
def changes(plan) -> dict[str, dict[str, Any]]:
    return {c["address"]: c["change"]["after"] for c in plan["resource_changes"]}


@pytest.fixture(scope="module")
def execution_policy(changes) -> dict:
    return json.loads(changes[f"{MWAA}.aws_iam_role_policy.execution"]["policy"])


def statements(policy: dict) -> list[dict]:
    return [
        {
            **s,
            "Action": [s["Action"]] if isinstance(s.get("Action"), str) else s.get("Action", []),
            "Resource": [s["Resource"]] if isinstance(s.get("Resource"), str) else s.get("Resource", []),
        }
        for s in policy["Statement"]
    ]


def module_config(plan: dict, *path: str) -> dict:
    """The configuration of a module call (`ec2hub`, then `mwaa`...) as the plan records it."""
    config = plan["configuration"]["root_module"]
    for name in path:
        config = config["module_calls"][name]["module"]
    return config


def test_mwaa_is_off_by_default(tf):
    plan = planned(tf)
    mwaa = [c["address"] for c in plan["resource_changes"] if ".module.mwaa" in c["address"]]
    assert mwaa == []
    outputs = plan["output_changes"]["all"]["after"]
    assert {k: v for k, v in outputs.items() if k.startswith("mwaa_")} == {
        "mwaa_bucket": None,
        "mwaa_environment_name": None,
        "mwaa_webserver_url": None,
        "mwaa_execution_role_arn": None,
        "mwaa_security_group_id": None,
        "mwaa_connections_secret_prefix": None,
    }


def test_mwaa_needs_the_nat_gateway(tf):
    result = tf.run("plan", "-input=false", "-var", "mwaa_enabled=true", "-var", "enable_nat_gateway=false")
    assert result.returncode != 0
    assert "mwaa_enabled needs enable_nat_gateway = true" in result.stderr


def test_no_statement_of_the_execution_role_reaches_the_users_bucket(execution_policy):
    """The jobs run as their owner on the hub: Airflow's role names no bucket but its DAGs bucket, and
    no S3 resource pattern of it matches the users' bucket or its objects."""
    assert USERS_BUCKET not in json.dumps(execution_policy)
    dags = {f"arn:aws:s3:::{DAGS_BUCKET}", f"arn:aws:s3:::{DAGS_BUCKET}/*"}
    users = [f"arn:aws:s3:::{USERS_BUCKET}", f"arn:aws:s3:::{USERS_BUCKET}/users/alice/data.parquet"]
    for statement in statements(execution_policy):
        assert statement["Effect"] == "Allow"
        if any(a.startswith("s3:") for a in statement["Action"]) and statement["Resource"] != ["*"]:
            assert set(statement["Resource"]) == dags, statement
        if statement["Resource"] == ["*"]:
            # Only actions that take no resource: account-wide reads and metrics.
            assert set(statement["Action"]) <= {
                "s3:GetAccountPublicAccessBlock",
                "logs:DescribeLogGroups",
                "cloudwatch:PutMetricData",
            }, statement
        elif any(a.startswith("s3:") for a in statement["Action"]):
            assert not [u for u in users for r in statement["Resource"] if fnmatch.fnmatchcase(u, r)]


def test_the_execution_role_has_what_mwaa_needs_and_one_secrets_prefix(execution_policy):
    by_sid = {s["Sid"]: s for s in statements(execution_policy)}
    assert set(by_sid) == {
        "PublishTheEnvironmentsHealth",
        "ReadTheDagsBucket",
        "SeeThatPublicAccessIsBlocked",
        "WriteTheEnvironmentsLogs",
        "FindTheEnvironmentsLogGroups",
        "PublishAirflowMetrics",
        "UseTheCeleryQueue",
        "EncryptTheQueueWithTheAwsOwnedKey",
        "ReadConnectionsUnderThePrefix",
    }
    assert by_sid["PublishTheEnvironmentsHealth"]["Resource"] == [
        f"arn:aws:airflow:{REGION}:{ACCOUNT}:environment/{ENVIRONMENT}"
    ]
    assert by_sid["WriteTheEnvironmentsLogs"]["Resource"] == [
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:airflow-{ENVIRONMENT}-*"
    ]
    # MWAA's queue lives in an account of the service's own: any account, this region, its name only.
    assert by_sid["UseTheCeleryQueue"]["Resource"] == [f"arn:aws:sqs:{REGION}:*:airflow-celery-*"]
    kms = by_sid["EncryptTheQueueWithTheAwsOwnedKey"]
    assert kms["NotResource"] in (f"arn:aws:kms:*:{ACCOUNT}:key/*", [f"arn:aws:kms:*:{ACCOUNT}:key/*"])
    assert kms["Condition"] == {"StringLike": {"kms:ViaService": f"sqs.{REGION}.amazonaws.com"}}
    assert by_sid["PublishAirflowMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "AmazonMWAA"}
    }
    secrets = by_sid["ReadConnectionsUnderThePrefix"]
    assert (secrets["Action"], secrets["Resource"]) == (
        ["secretsmanager:GetSecretValue"],
        [f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:airflow/connections/*"],
    )
    assert [
        s for s in statements(execution_policy) if any(a.startswith("secretsmanager:") for a in s["Action"])
    ] == [secrets]


def test_only_mwaa_for_this_environment_assumes_the_role(changes):
    role = changes[f"{MWAA}.aws_iam_role.execution"]
    assert (role["name"], role["path"]) == (f"{ENVIRONMENT}-execution", "/ec2hub/")
    [statement] = json.loads(role["assume_role_policy"])["Statement"]
    assert statement["Action"] == "sts:AssumeRole"
    assert sorted(statement["Principal"]["Service"]) == ["airflow-env.amazonaws.com", "airflow.amazonaws.com"]
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": f"arn:aws:airflow:{REGION}:{ACCOUNT}:environment/{ENVIRONMENT}"},
    }


def evaluate(policy: dict, cases: dict[str, dict[str, Any]]) -> dict[str, str]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("`node` is not on PATH: the IAM evaluator needs Node.js (Node.js 20 or newer)")
    if not EVALUATOR.is_dir():
        pytest.fail(f"{EVALUATOR} is missing: run `npm ci` in {REPO_ROOT} (as `make test` does)")
    principal = f"arn:aws:sts::{ACCOUNT}:assumed-role/{ENVIRONMENT}-execution/AmazonMWAA-airflow"
    requests = [{"identityPolicies": [policy], "principal": principal, **case} for case in cases.values()]
    proc = subprocess.run(
        [node, str(EVALUATE)],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    results = dict(zip(cases, json.loads(proc.stdout), strict=True))
    # A context key the evaluator drops would make a "denied" case pass vacuously.
    assert {n: r for n, r in results.items() if r["result"] == "Error" or r.get("ignoredContextKeys")} == {}
    return {name: r["result"] for name, r in results.items()}


def test_the_evaluator_agrees_airflow_reads_its_dags_and_connections_and_no_users_data(execution_policy):
    """Decided by @cloud-copilot/iam-simulate on the planned policy (conditions and exact ARNs included)."""
    secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:"
    log_group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:"
    table = {
        "read a DAG": (
            {"action": "s3:GetObject", "resource": f"arn:aws:s3:::{DAGS_BUCKET}/dags/wisdm.py"},
            ALLOWED,
        ),
        "list the DAGs": ({"action": "s3:ListBucket", "resource": f"arn:aws:s3:::{DAGS_BUCKET}"}, ALLOWED),
        "change a DAG": (
            {"action": "s3:PutObject", "resource": f"arn:aws:s3:::{DAGS_BUCKET}/dags/x.py"},
            DENIED,
        ),
        "read alice's data": (
            {"action": "s3:GetObject", "resource": f"arn:aws:s3:::{USERS_BUCKET}/users/alice/data.parquet"},
            DENIED,
        ),
        "write alice's data": (
            {"action": "s3:PutObject", "resource": f"arn:aws:s3:::{USERS_BUCKET}/users/alice/model.keras"},
            DENIED,
        ),
        "list the users' bucket": (
            {"action": "s3:ListBucket", "resource": f"arn:aws:s3:::{USERS_BUCKET}"},
            DENIED,
        ),
        "read the ec2hub connection": (
            {
                "action": "secretsmanager:GetSecretValue",
                "resource": f"{secret}airflow/connections/ec2hub_default-AbCdEf",
            },
            ALLOWED,
        ),
        "read an Airflow variable": (
            {"action": "secretsmanager:GetSecretValue", "resource": f"{secret}airflow/variables/x-AbCdEf"},
            DENIED,
        ),
        "read a secret beside the prefix": (
            {"action": "secretsmanager:GetSecretValue", "resource": f"{secret}airflow/connections-AbCdEf"},
            DENIED,
        ),
        "read the hub's proxy token": (
            {
                "action": "ssm:GetParameter",
                "resource": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/ec2hub/{NAME}/hub/proxy-auth-token",
            },
            DENIED,
        ),
        "write a task log": (
            {
                "action": "logs:PutLogEvents",
                "resource": f"{log_group}airflow-{ENVIRONMENT}-Task:log-stream:x",
            },
            ALLOWED,
        ),
        "write the hub's log": (
            {"action": "logs:PutLogEvents", "resource": f"{log_group}/ec2hub/{NAME}/hub:log-stream:x"},
            DENIED,
        ),
        "publish Airflow's metrics": (
            {
                "action": "cloudwatch:PutMetricData",
                "resource": "*",
                "context": {"cloudwatch:namespace": "AmazonMWAA"},
            },
            ALLOWED,
        ),
        "publish a failed job run": (
            {
                "action": "cloudwatch:PutMetricData",
                "resource": "*",
                "context": {"cloudwatch:namespace": "ec2hub/jobs"},
            },
            DENIED,
        ),
        "use the Celery queue": (
            {
                "action": "sqs:SendMessage",
                "resource": f"arn:aws:sqs:{REGION}:{ACCOUNT}:airflow-celery-0a1b2c",
            },
            ALLOWED,
        ),
        "use another queue": (
            {"action": "sqs:SendMessage", "resource": f"arn:aws:sqs:{REGION}:{ACCOUNT}:jobs"},
            DENIED,
        ),
        "launch an instance": (
            {"action": "ec2:RunInstances", "resource": f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/*"},
            DENIED,
        ),
        "become alice": (
            {
                "action": "sts:AssumeRole",
                "resource": f"arn:aws:iam::{ACCOUNT}:role/ec2hub/users/ec2hub-alice",
            },
            DENIED,
        ),
    }
    decided = evaluate(execution_policy, {name: case for name, (case, _) in table.items()})
    assert decided == {name: expected for name, (_, expected) in table.items()}


def test_mwaa_reaches_the_hub_on_the_ports_user_servers_do(plan, changes):
    """The hub's group admits MWAA's group on the hub API, jobs and gateway ports, which are those the
    hub module opens to user servers (so the root's copy of the hub API port agrees with the hub's)."""
    user_ports = {
        name: changes[f"{HUB}.aws_vpc_security_group_ingress_rule.{rule}"]["from_port"]
        for rule, name in HUB_RULES_FROM_USERS.items()
    }
    assert user_ports == {"hub-api": 8081, "gateway-http": 8183, "gateway-tcp": 8184, "jobs": 8187}
    for kind in ("ingress_rule.hub_from_mwaa", "egress_rule.mwaa_to_hub"):
        rules = {
            address.split('["')[1].rstrip('"]'): after
            for address, after in changes.items()
            if address.startswith(f"{MWAA}.aws_vpc_security_group_{kind}[")
        }
        assert {name: (r["from_port"], r["to_port"], r["ip_protocol"]) for name, r in rules.items()} == {
            name: (port, port, "tcp") for name, port in user_ports.items()
        }
        assert all(r.get("cidr_ipv4") is None for r in rules.values()), "group to group, no address range"

    # The ingress rules sit on the hub's group and name MWAA's; the egress rules the other way round.
    call = module_config(plan, "ec2hub")["module_calls"]["mwaa"]
    assert "module.hub.hub_security_group_id" in call["expressions"]["hub_security_group_id"]["references"]
    resources = {
        r["address"]: r.get("expressions", {}) for r in module_config(plan, "ec2hub", "mwaa")["resources"]
    }
    ingress = resources["aws_vpc_security_group_ingress_rule.hub_from_mwaa"]
    assert "var.hub_security_group_id" in ingress["security_group_id"]["references"]
    assert "aws_security_group.mwaa.id" in ingress["referenced_security_group_id"]["references"]
    egress = resources["aws_vpc_security_group_egress_rule.mwaa_to_hub"]
    assert "aws_security_group.mwaa.id" in egress["security_group_id"]["references"]
    assert "var.hub_security_group_id" in egress["referenced_security_group_id"]["references"]


def test_mwaa_group_admits_only_itself_and_the_ui_from_the_vpn(changes):
    rules = {
        address.removeprefix(f"{MWAA}."): after
        for address, after in changes.items()
        if address.startswith(f"{MWAA}.aws_vpc_security_group_")
    }
    ingress = {
        a: (r["from_port"], r.get("cidr_ipv4"))
        for a, r in rules.items()
        if "_ingress_rule.mwaa_from_itself" in a
    }
    assert sorted(ingress.values()) == [(443, None), (5432, None)]
    [webserver] = [r for a, r in rules.items() if "_ingress_rule.webserver" in a]
    assert (webserver["from_port"], webserver["to_port"], webserver["cidr_ipv4"]) == (443, 443, VPN)
    egress = {
        (r["from_port"], r.get("cidr_ipv4"))
        for a, r in rules.items()
        if "_egress_rule." in a and "mwaa_to_hub" not in a
    }
    assert egress == {(443, "0.0.0.0/0"), (5432, None)}


def test_dags_bucket_is_private_versioned_encrypted_and_tls_only(changes):
    bucket = changes[f"{MWAA}.aws_s3_bucket.dags"]
    assert bucket["bucket"] == DAGS_BUCKET
    assert bucket["force_destroy"] is True, "every object in it is a copy (DAGs, requirements, plugins)"
    versioning = changes[f"{MWAA}.aws_s3_bucket_versioning.dags"]["versioning_configuration"]
    assert versioning[0]["status"] == "Enabled"
    [rule] = changes[f"{MWAA}.aws_s3_bucket_server_side_encryption_configuration.dags"]["rule"]
    assert rule["apply_server_side_encryption_by_default"][0]["sse_algorithm"] == "AES256"
    block = changes[f"{MWAA}.aws_s3_bucket_public_access_block.dags"]
    assert all(
        block[k]
        for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
    )
    ownership = changes[f"{MWAA}.aws_s3_bucket_ownership_controls.dags"]["rule"]
    assert ownership[0]["object_ownership"] == "BucketOwnerEnforced"
    [tls] = json.loads(changes[f"{MWAA}.aws_s3_bucket_policy.dags"]["policy"])["Statement"]
    assert (tls["Effect"], tls["Action"], tls["Condition"]) == (
        "Deny",
        "s3:*",
        {"Bool": {"aws:SecureTransport": "false"}},
    )
    assert sorted(tls["Resource"]) == [f"arn:aws:s3:::{DAGS_BUCKET}", f"arn:aws:s3:::{DAGS_BUCKET}/*"]
    [lifecycle] = changes[f"{MWAA}.aws_s3_bucket_lifecycle_configuration.dags"]["rule"]
    assert lifecycle["noncurrent_version_expiration"][0]["noncurrent_days"] == 30

    assert changes[f"{MWAA}.aws_s3_object.dag_folder"]["key"] == "dags/"
    requirements = changes[f"{MWAA}.aws_s3_object.requirements"]
    assert requirements["key"] == "requirements.txt"
    assert [line for line in requirements["content"].splitlines() if not line.startswith("#")] == REQUIREMENTS
    plugins = changes[f"{MWAA}.aws_s3_object.plugins[0]"]
    assert (plugins["key"], plugins["content_type"]) == ("plugins.zip", "application/zip")


def test_the_environment_is_airflow_3_private_logged_and_reads_connections_from_one_prefix(plan, changes):
    environment = changes[f"{MWAA}.aws_mwaa_environment.this[0]"]
    assert environment["name"] == ENVIRONMENT
    assert environment["airflow_version"].startswith("3.")
    assert environment["environment_class"] == "mw1.small"
    assert environment["webserver_access_mode"] == "PRIVATE_ONLY"
    assert (environment["min_workers"], environment["max_workers"]) == (1, 2)
    assert (
        environment["dag_s3_path"],
        environment["requirements_s3_path"],
        environment["plugins_s3_path"],
    ) == (
        "dags",
        "requirements.txt",
        "plugins.zip",
    )
    [logging] = environment["logging_configuration"]
    assert logging.keys() == {
        "dag_processing_logs",
        "scheduler_logs",
        "task_logs",
        "webserver_logs",
        "worker_logs",
    }
    assert all(log[0]["enabled"] and log[0]["log_level"] == "INFO" for log in logging.values())
    options = environment["airflow_configuration_options"]
    assert (
        options["secrets.backend"]
        == "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend"
    )
    assert json.loads(options["secrets.backend_kwargs"]) == {
        "connections_prefix": "airflow/connections",
        "variables_prefix": None,
        "config_prefix": None,
    }

    # Its subnets: two of the hub's private ones; its group: the module's; its requirements and
    # plugins pinned to the versions Terraform wrote.
    expressions = {
        r["address"]: r.get("expressions", {}) for r in module_config(plan, "ec2hub", "mwaa")["resources"]
    }
    env = expressions["aws_mwaa_environment.this"]
    assert env["network_configuration"][0]["subnet_ids"]["references"] == ["var.subnet_ids"]
    assert "aws_security_group.mwaa.id" in env["network_configuration"][0]["security_group_ids"]["references"]
    assert "aws_s3_object.requirements.version_id" in env["requirements_s3_object_version"]["references"]
    assert "aws_s3_object.plugins" in env["plugins_s3_object_version"]["references"]
    call = module_config(plan, "ec2hub")["module_calls"]["mwaa"]["expressions"]
    assert "module.network.private_subnet_ids" in call["subnet_ids"]["references"]

    # The bucket, role and group are known after apply; the rest of what a README step needs now.
    outputs = plan["output_changes"]["all"]["after"]
    assert outputs["mwaa_environment_name"] == ENVIRONMENT
    assert outputs["mwaa_connections_secret_prefix"] == "airflow/connections"
