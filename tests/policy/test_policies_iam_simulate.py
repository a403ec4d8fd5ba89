"""The generated IAM policies, decided by an independent evaluator (@cloud-copilot/iam-simulate).

moto enforces actions and resources only roughly and ignores Conditions, so what these tests check
(s3:prefix, iam:PassedToService, iam:PermissionsBoundary, tag conditions, exact resource ARNs) is
checked nowhere else. All cases of the module go to `evaluate.mjs` in one Node process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hub.policies import hub_policy, render_policy
from spawner.identity import USER_ROLE_PATH, UserNames, group_prefix, user_policy
from spawner.owner import PURPOSES, TAG_CLUSTER, TAG_HUB, TAG_POOL, TAG_PURPOSE, Owner

REPO = Path(__file__).resolve().parents[2]
EVALUATE = Path(__file__).resolve().parent / "evaluate.mjs"
LIBRARY = REPO / "node_modules" / "@cloud-copilot" / "iam-simulate"

ACCOUNT = "123456789012"
REGION = "us-east-1"
BUCKET = "ec2hub-local"
HUB_ID = "ec2hub"
BOUNDARY_NAME = "ec2hub-user-boundary"

ALLOWED = "Allowed"
DENIED = "ImplicitlyDenied"
EXPLICITLY_DENIED = "ExplicitlyDenied"

BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
BOUNDARY_ARN = f"arn:aws:iam::{ACCOUNT}:policy/{BOUNDARY_NAME}"
ALICE_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/ec2hub/users/ec2hub-alice"
ADMIN_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/admin"
HUB_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/ec2hub/ec2hub-hub"
HUB_PROFILE_ARN = f"arn:aws:iam::{ACCOUNT}:instance-profile/ec2hub/ec2hub-hub"
INSTANCE_ARN = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-1"
VOLUME_ARN = f"arn:aws:ec2:{REGION}:{ACCOUNT}:volume/vol-1"
HUB_PRINCIPAL = f"arn:aws:sts::{ACCOUNT}:assumed-role/ec2hub-hub/i-0hub"

ALICE = UserNames.of("alice")
BOB = UserNames.of("bob")
ALICE_PROFILE_ARN = f"arn:aws:iam::{ACCOUNT}:instance-profile{USER_ROLE_PATH}{ALICE.instance_profile}"
CLUSTER = "0123456789abcdef0123456789abcdef"  # the gateway's cluster names are 32 hex digits

SUBNETS = ("subnet-0users0a", "subnet-0users0b")
USER_GROUP, CLUSTER_GROUP = "sg-0users", "sg-0cluster"
IMAGE = "ami-0ec2hub"
SIZES = ("t3.medium", "m6i.xlarge", "g5.xlarge")

HUB_POLICY = json.loads(
    hub_policy(
        region=REGION,
        account_id=ACCOUNT,
        hub_id=HUB_ID,
        bucket=BUCKET,
        boundary_name=BOUNDARY_NAME,
        subnet_ids=SUBNETS,
        security_group_ids=(USER_GROUP, CLUSTER_GROUP),
        image_ids=(IMAGE,),
        instance_types=SIZES,
    )
)
USER_BOUNDARY = json.loads(render_policy("user-boundary", region=REGION, account_id=ACCOUNT, bucket=BUCKET))


def user_request(
    names: UserNames, action: str, resource: str, *, groups: tuple[str, ...] = (), **context: str
) -> dict[str, Any]:
    """A request by the user's instance: the role's inline policy under the user boundary."""
    policy = user_policy(names, list(groups), bucket=BUCKET, region=REGION, account_id=ACCOUNT)
    return {
        "identityPolicies": [policy],
        "permissionBoundaries": [USER_BOUNDARY],
        "principal": f"arn:aws:sts::{ACCOUNT}:assumed-role/{names.role}/i-0{names.safe}",
        "action": action,
        "resource": resource,
        "context": context,
    }


def hub_request(action: str, resource: str, **context: str) -> dict[str, Any]:
    return {
        "identityPolicies": [HUB_POLICY],
        "principal": HUB_PRINCIPAL,
        "action": action,
        "resource": resource,
        "context": context,
    }


def run_instances(
    tags: dict[str, str],
    profile: str | None = None,
    *,
    instance_type: str = "t3.medium",
    metadata_tokens: str = "required",
) -> dict[str, Any]:
    """The instance of the hub's RunInstances as the launcher asks for it: these tags, `profile` if
    given, a size's type, IMDSv2 required."""
    context: dict[str, Any] = {f"aws:RequestTag/{key}": value for key, value in tags.items()}
    context["aws:TagKeys"] = list(tags)
    context["ec2:InstanceType"] = instance_type
    context["ec2:MetadataHttpTokens"] = metadata_tokens
    if profile is not None:
        context["ec2:InstanceProfile"] = profile
    return hub_request("ec2:RunInstances", INSTANCE_ARN, **context)


def launch_volume(tags: dict[str, str], *, encrypted: str = "true") -> dict[str, Any]:
    """The root volume of the same RunInstances: the instance's tags, encrypted or not."""
    context: dict[str, Any] = {f"aws:RequestTag/{key}": value for key, value in tags.items()}
    context["aws:TagKeys"] = list(tags)
    context["ec2:Encrypted"] = encrypted
    return hub_request("ec2:RunInstances", VOLUME_ARN, **context)


def launch_into(kind: str, resource_id: str, *, account: str = ACCOUNT) -> dict[str, Any]:
    """The subnet, security group or image of the same RunInstances."""
    if kind == "image":
        return hub_request("ec2:RunInstances", f"arn:aws:ec2:{REGION}::image/{resource_id}")
    return hub_request("ec2:RunInstances", f"arn:aws:ec2:{REGION}:{account}:{kind}/{resource_id}")


def launch_tags(purpose: str, **changes: str | None) -> dict[str, str]:
    """Alice's tags of an instance of `purpose` (the launcher's owner tags, with the cluster's for
    Dask instances), with `changes` (None drops a tag)."""
    tags = {"Name": f"ec2hub-alice-{purpose}", **Owner(HUB_ID, "AROAALICE", "alice", purpose=purpose).tags()}
    if purpose.startswith("dask-"):
        tags[TAG_CLUSTER] = CLUSTER
    tags.update(changes)
    return {key: value for key, value in tags.items() if value is not None}


def list_bucket(names: UserNames, prefix: str | None, groups: tuple[str, ...] = ()) -> dict[str, Any]:
    context = {} if prefix is None else {"s3:prefix": prefix}
    return user_request(names, "s3:ListBucket", BUCKET_ARN, groups=groups, **context)


def obj(key: str) -> str:
    return f"{BUCKET_ARN}/{key}"


def ssm_parameter(name: str) -> str:
    return f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name}"


def cluster_parameter(names: UserNames) -> str:
    return ssm_parameter(f"{names.parameter_path}clusters/{CLUSTER}/settings")


# Each table: case name -> (request, expected decision).
LISTING = {
    "alice lists users/alice/": (list_bucket(ALICE, "users/alice/"), ALLOWED),
    "alice lists users/alice/sub/": (list_bucket(ALICE, "users/alice/sub/"), ALLOWED),
    "alice lists users/bob/": (list_bucket(ALICE, "users/bob/"), DENIED),
    "alice lists the bucket root (prefix '')": (list_bucket(ALICE, ""), DENIED),
    "alice lists without a prefix": (list_bucket(ALICE, None), DENIED),
    "alice lists users/ (all users)": (list_bucket(ALICE, "users/"), DENIED),
    "alice lists shared/": (list_bucket(ALICE, "shared/"), ALLOWED),
    "physics member lists groups/physics/": (
        list_bucket(ALICE, group_prefix("physics"), groups=("physics",)),
        ALLOWED,
    ),
    "non-member lists groups/physics/": (
        list_bucket(BOB, group_prefix("physics"), groups=("chemistry",)),
        DENIED,
    ),
}

OBJECTS = {
    **{
        f"alice {action} users/alice/": (user_request(ALICE, action, obj("users/alice/nb.ipynb")), ALLOWED)
        for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
    },
    **{
        f"alice {action} users/bob/": (user_request(ALICE, action, obj("users/bob/nb.ipynb")), DENIED)
        for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
    },
    "alice GetObject shared/x": (user_request(ALICE, "s3:GetObject", obj("shared/x")), ALLOWED),
    "alice PutObject shared/x": (user_request(ALICE, "s3:PutObject", obj("shared/x")), DENIED),
    "physics member PutObject groups/physics/x": (
        user_request(ALICE, "s3:PutObject", obj("groups/physics/x"), groups=("physics",)),
        ALLOWED,
    ),
    "non-member GetObject groups/physics/x": (
        user_request(BOB, "s3:GetObject", obj("groups/physics/x"), groups=("chemistry",)),
        DENIED,
    ),
    "alice GetObject in another bucket": (
        user_request(ALICE, "s3:GetObject", "arn:aws:s3:::other-bucket/users/alice/x"),
        DENIED,
    ),
}

TOKENS = {
    "alice reads her token": (
        user_request(ALICE, "ssm:GetParameter", ssm_parameter(ALICE.settings_parameter(""))),
        ALLOWED,
    ),
    "alice reads bob's token": (
        user_request(ALICE, "ssm:GetParameter", ssm_parameter(BOB.settings_parameter(""))),
        DENIED,
    ),
    "alice's cluster instance reads her cluster's settings": (
        user_request(ALICE, "ssm:GetParameter", cluster_parameter(ALICE)),
        ALLOWED,
    ),
    "alice reads bob's cluster's settings": (
        user_request(ALICE, "ssm:GetParameter", cluster_parameter(BOB)),
        DENIED,
    ),
}

HUB_SETTINGS = {
    **{
        f"hub {action} a cluster's settings": (hub_request(action, cluster_parameter(ALICE)), ALLOWED)
        for action in ("ssm:PutParameter", "ssm:DeleteParameter")
    },
    "hub PutParameter outside /ec2hub/users/": (
        hub_request("ssm:PutParameter", ssm_parameter("/ec2hub/clusters/settings")),
        DENIED,
    ),
}

CREATE_ROLE = {
    "CreateRole with the boundary": (
        hub_request("iam:CreateRole", ALICE_ROLE_ARN, **{"iam:PermissionsBoundary": BOUNDARY_ARN}),
        ALLOWED,
    ),
    "CreateRole without a boundary": (hub_request("iam:CreateRole", ALICE_ROLE_ARN), DENIED),
    "CreateRole with another boundary": (
        hub_request(
            "iam:CreateRole",
            ALICE_ROLE_ARN,
            **{"iam:PermissionsBoundary": f"arn:aws:iam::{ACCOUNT}:policy/AdministratorAccess"},
        ),
        DENIED,
    ),
    "CreateRole outside /ec2hub/users/": (
        hub_request("iam:CreateRole", ADMIN_ROLE_ARN, **{"iam:PermissionsBoundary": BOUNDARY_ARN}),
        DENIED,
    ),
    "PutRolePolicy on a bounded user role": (
        hub_request("iam:PutRolePolicy", ALICE_ROLE_ARN, **{"iam:PermissionsBoundary": BOUNDARY_ARN}),
        ALLOWED,
    ),
    "PutRolePolicy on an unbounded user role": (hub_request("iam:PutRolePolicy", ALICE_ROLE_ARN), DENIED),
}

PASS_ROLE = {
    "PassRole of a user role to EC2": (
        hub_request("iam:PassRole", ALICE_ROLE_ARN, **{"iam:PassedToService": "ec2.amazonaws.com"}),
        ALLOWED,
    ),
    "PassRole of a user role to Lambda": (
        hub_request("iam:PassRole", ALICE_ROLE_ARN, **{"iam:PassedToService": "lambda.amazonaws.com"}),
        DENIED,
    ),
    "PassRole of role/admin to EC2": (
        hub_request("iam:PassRole", ADMIN_ROLE_ARN, **{"iam:PassedToService": "ec2.amazonaws.com"}),
        DENIED,
    ),
    "PassRole of the hub's own role to EC2": (
        hub_request("iam:PassRole", HUB_ROLE_ARN, **{"iam:PassedToService": "ec2.amazonaws.com"}),
        DENIED,
    ),
}

INSTANCES = {
    "StopInstances on this hub's instance": (
        hub_request("ec2:StopInstances", INSTANCE_ARN, **{"ec2:ResourceTag/ec2hub:hub": HUB_ID}),
        ALLOWED,
    ),
    "StopInstances on another hub's instance": (
        hub_request("ec2:StopInstances", INSTANCE_ARN, **{"ec2:ResourceTag/ec2hub:hub": "other-hub"}),
        DENIED,
    ),
    "StopInstances on an untagged instance": (hub_request("ec2:StopInstances", INSTANCE_ARN), DENIED),
    **{
        f"RunInstances of a {purpose} of alice, with her profile": (
            run_instances(launch_tags(purpose), ALICE_PROFILE_ARN),
            ALLOWED,
        )
        for purpose in PURPOSES
    },
    "RunInstances of a pool instance, without a profile": (
        run_instances({TAG_HUB: HUB_ID, TAG_PURPOSE: "pool", TAG_POOL: "default"}),
        ALLOWED,
    ),
    "RunInstances of a dask-worker without the hub tag": (
        run_instances(launch_tags("dask-worker", **{TAG_HUB: None}), ALICE_PROFILE_ARN),
        DENIED,
    ),
    "RunInstances of a dask-worker tagged for another hub": (
        run_instances(launch_tags("dask-worker", **{TAG_HUB: "other-hub"}), ALICE_PROFILE_ARN),
        DENIED,
    ),
    "RunInstances of a dask-worker without a purpose tag": (
        run_instances(launch_tags("dask-worker", **{TAG_PURPOSE: None}), ALICE_PROFILE_ARN),
        DENIED,
    ),
    "RunInstances with a purpose outside the list": (
        run_instances(launch_tags("dask-worker", **{TAG_PURPOSE: "miner"}), ALICE_PROFILE_ARN),
        DENIED,
    ),
    "RunInstances of a dask-worker with the hub's own profile": (
        run_instances(launch_tags("dask-worker"), HUB_PROFILE_ARN),
        DENIED,
    ),
    "RunInstances without tags": (hub_request("ec2:RunInstances", INSTANCE_ARN), DENIED),
}

LAUNCH_LIMITS = {
    **{
        f"RunInstances of a {size} (a size on the form)": (
            run_instances(launch_tags("server"), ALICE_PROFILE_ARN, instance_type=size),
            ALLOWED,
        )
        for size in SIZES
    },
    "RunInstances of a type not on the form": (
        run_instances(launch_tags("server"), ALICE_PROFILE_ARN, instance_type="p5.48xlarge"),
        DENIED,
    ),
    "RunInstances with IMDSv1 allowed (tokens optional)": (
        run_instances(launch_tags("server"), ALICE_PROFILE_ARN, metadata_tokens="optional"),
        DENIED,
    ),
    "RunInstances with an encrypted volume": (launch_volume(launch_tags("server")), ALLOWED),
    "RunInstances with an unencrypted volume": (
        launch_volume(launch_tags("server"), encrypted="false"),
        DENIED,
    ),
    "RunInstances with a volume tagged for another hub": (
        launch_volume(launch_tags("server", **{TAG_HUB: "other-hub"})),
        DENIED,
    ),
    **{f"RunInstances into the hub's {s}": (launch_into("subnet", s), ALLOWED) for s in SUBNETS},
    "RunInstances into another subnet": (launch_into("subnet", "subnet-0other"), DENIED),
    "RunInstances with the user group": (launch_into("security-group", USER_GROUP), ALLOWED),
    "RunInstances with the Dask cluster group": (launch_into("security-group", CLUSTER_GROUP), ALLOWED),
    "RunInstances with another security group": (launch_into("security-group", "sg-0open"), DENIED),
    "RunInstances from the configured image": (launch_into("image", IMAGE), ALLOWED),
    "RunInstances from an outside image": (launch_into("image", "ami-0outside"), DENIED),
    **{
        f"ModifyInstanceAttribute: resize to {size} (a size on the form)": (
            hub_request(
                "ec2:ModifyInstanceAttribute",
                INSTANCE_ARN,
                **{"ec2:ResourceTag/ec2hub:hub": HUB_ID, "ec2:Attribute/InstanceType": size},
            ),
            ALLOWED,
        )
        for size in SIZES
    },
    "ModifyInstanceAttribute: resize to a type not on the form": (
        hub_request(
            "ec2:ModifyInstanceAttribute",
            INSTANCE_ARN,
            **{"ec2:ResourceTag/ec2hub:hub": HUB_ID, "ec2:Attribute/InstanceType": "p5.48xlarge"},
        ),
        DENIED,
    ),
    "ModifyInstanceAttribute: new user-data on this hub's instance": (
        hub_request("ec2:ModifyInstanceAttribute", INSTANCE_ARN, **{"ec2:ResourceTag/ec2hub:hub": HUB_ID}),
        ALLOWED,
    ),
    "ModifyInstanceAttribute: resize another hub's instance": (
        hub_request(
            "ec2:ModifyInstanceAttribute",
            INSTANCE_ARN,
            **{"ec2:ResourceTag/ec2hub:hub": "other-hub", "ec2:Attribute/InstanceType": "t3.medium"},
        ),
        DENIED,
    ),
    "RunInstances with its own network interface": (launch_into("network-interface", "eni-1"), ALLOWED),
}

CLAIMS = {
    "CreateTags (owner tags) on this hub's pool instance": (
        hub_request(
            "ec2:CreateTags",
            INSTANCE_ARN,
            **{
                "ec2:ResourceTag/ec2hub:hub": HUB_ID,
                "aws:TagKeys": ["ec2hub:user", "ec2hub:server", "ec2hub:owner-id", "ec2hub:purpose", "Name"],
            },
        ),
        ALLOWED,
    ),
    "CreateTags ec2hub:cluster on this hub's instance": (
        hub_request(
            "ec2:CreateTags",
            INSTANCE_ARN,
            **{"ec2:ResourceTag/ec2hub:hub": HUB_ID, "aws:TagKeys": ["ec2hub:cluster"]},
        ),
        ALLOWED,
    ),
    "DeleteTags ec2hub:pool on this hub's instance": (
        hub_request(
            "ec2:DeleteTags",
            INSTANCE_ARN,
            **{"ec2:ResourceTag/ec2hub:hub": HUB_ID, "aws:TagKeys": ["ec2hub:pool"]},
        ),
        ALLOWED,
    ),
    "CreateTags on another hub's instance": (
        hub_request(
            "ec2:CreateTags",
            INSTANCE_ARN,
            **{"ec2:ResourceTag/ec2hub:hub": "other-hub", "aws:TagKeys": ["ec2hub:user"]},
        ),
        DENIED,
    ),
    "DeleteTags without tag keys (every tag, ec2hub:hub too) on this hub's instance": (
        hub_request("ec2:DeleteTags", INSTANCE_ARN, **{"ec2:ResourceTag/ec2hub:hub": HUB_ID}),
        DENIED,
    ),
    "DeleteTags ec2hub:hub on this hub's instance": (
        hub_request(
            "ec2:DeleteTags",
            INSTANCE_ARN,
            **{"ec2:ResourceTag/ec2hub:hub": HUB_ID, "aws:TagKeys": ["ec2hub:hub"]},
        ),
        DENIED,
    ),
    "CreateTags that would move an instance to another hub": (
        hub_request(
            "ec2:CreateTags",
            INSTANCE_ARN,
            **{"ec2:ResourceTag/ec2hub:hub": HUB_ID, "aws:TagKeys": ["ec2hub:hub"]},
        ),
        DENIED,
    ),
}

DELETED_DATA = {
    "alice GetObject deleted/alice/...": (
        user_request(ALICE, "s3:GetObject", obj("deleted/alice/t/x")),
        DENIED,
    ),
    "alice PutObject deleted/bob/...": (user_request(ALICE, "s3:PutObject", obj("deleted/bob/t/x")), DENIED),
    "alice lists deleted/": (list_bucket(ALICE, "deleted/"), DENIED),
    "hub lists users/bob/ to move it aside": (
        hub_request("s3:ListBucket", BUCKET_ARN, **{"s3:prefix": "users/bob/"}),
        ALLOWED,
    ),
    "hub lists shared/": (hub_request("s3:ListBucket", BUCKET_ARN, **{"s3:prefix": "shared/"}), DENIED),
    "hub copies from users/bob/": (hub_request("s3:GetObject", obj("users/bob/x")), ALLOWED),
    "hub copies to deleted/bob/": (hub_request("s3:PutObject", obj("deleted/bob/t/x")), ALLOWED),
    "hub deletes users/bob/ after the copy": (hub_request("s3:DeleteObject", obj("users/bob/x")), ALLOWED),
    "hub writes into users/bob/": (hub_request("s3:PutObject", obj("users/bob/x")), DENIED),
    "hub deletes from deleted/": (hub_request("s3:DeleteObject", obj("deleted/bob/t/x")), DENIED),
    "hub reads shared/": (hub_request("s3:GetObject", obj("shared/x")), DENIED),
}

BOUNDARY_LOCK = {
    "DeleteRolePermissionsBoundary on a user role": (
        hub_request("iam:DeleteRolePermissionsBoundary", ALICE_ROLE_ARN),
        EXPLICITLY_DENIED,
    ),
    "UpdateAssumeRolePolicy on a user role (another trust than EC2's)": (
        hub_request("iam:UpdateAssumeRolePolicy", ALICE_ROLE_ARN),
        EXPLICITLY_DENIED,
    ),
}

JOBS_NAMESPACE = "ec2hub/jobs"


def put_metric_data(namespace: str | None, *, by_user: bool = False) -> dict[str, Any]:
    """PutMetricData (no resource ARN: "*") into `namespace` (None: the key left out), by the hub or
    by alice's instance."""
    context = {} if namespace is None else {"cloudwatch:namespace": namespace}
    if by_user:
        return user_request(ALICE, "cloudwatch:PutMetricData", "*", **context)
    return hub_request("cloudwatch:PutMetricData", "*", **context)


JOB_METRICS = {
    "hub PutMetricData to ec2hub/jobs (a failed job run)": (put_metric_data(JOBS_NAMESPACE), ALLOWED),
    "hub PutMetricData to another ec2hub namespace": (put_metric_data("ec2hub/other"), DENIED),
    "hub PutMetricData to an AWS namespace": (put_metric_data("AWS/EC2"), DENIED),
    "hub PutMetricData without a namespace": (put_metric_data(None), DENIED),
    "alice's instance PutMetricData to ec2hub/jobs": (put_metric_data(JOBS_NAMESPACE, by_user=True), DENIED),
}

TABLES = [
    LISTING,
    OBJECTS,
    TOKENS,
    HUB_SETTINGS,
    CREATE_ROLE,
    PASS_ROLE,
    INSTANCES,
    LAUNCH_LIMITS,
    CLAIMS,
    DELETED_DATA,
    BOUNDARY_LOCK,
    JOB_METRICS,
]


@pytest.fixture(scope="module")
def decisions() -> dict[str, dict[str, Any]]:
    """Every case of this module, evaluated in one run of evaluate.mjs."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("`node` is not on PATH: these IAM policy tests need Node.js (Node.js 20 or newer)")
    if not LIBRARY.is_dir():
        pytest.fail(f"{LIBRARY} is missing: run `npm ci` in {REPO} (as `make test` does)")
    cases = {name: request for table in TABLES for name, (request, _) in table.items()}
    proc = subprocess.run(
        [node, str(EVALUATE)],
        input=json.dumps(list(cases.values())),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"evaluate.mjs failed ({proc.returncode}):\n{proc.stderr}")
    results = json.loads(proc.stdout)
    assert len(results) == len(cases)
    return dict(zip(cases, results, strict=True))


def assert_decisions(decisions: dict[str, dict[str, Any]], table: dict[str, tuple[Any, str]]) -> None:
    results = {name: decisions[name] for name in table}
    # A context key the evaluator drops (wrong for the action) would make a "denied" case pass vacuously.
    problems = {
        name: r for name, r in results.items() if r["result"] == "Error" or r.get("ignoredContextKeys")
    }
    assert problems == {}
    assert {name: r["result"] for name, r in results.items()} == {
        name: expected for name, (_, expected) in table.items()
    }


def test_user_lists_only_own_shared_and_group_prefixes(decisions):
    """Checked by iam-simulate (moto ignores the s3:prefix condition of ListBucket)."""
    assert_decisions(decisions, LISTING)


def test_user_reads_and_writes_only_own_objects_and_reads_shared(decisions):
    """Checked by iam-simulate (moto does not combine the policy with the boundary by exact object ARN)."""
    assert_decisions(decisions, OBJECTS)


def test_user_reads_only_own_server_token(decisions):
    """Checked by iam-simulate (resource ARN of ssm:GetParameter under the user boundary); a cluster's
    settings live under its user's parameters as a server's do."""
    assert_decisions(decisions, TOKENS)


def test_hub_writes_settings_only_under_the_users_parameters(decisions):
    """Checked by iam-simulate (moto does not check SSM parameter ARNs exactly)."""
    assert_decisions(decisions, HUB_SETTINGS)


def test_hub_creates_and_changes_user_roles_only_with_the_boundary(decisions):
    """Checked by iam-simulate (moto ignores the iam:PermissionsBoundary condition)."""
    assert_decisions(decisions, CREATE_ROLE)


def test_hub_passes_only_user_roles_and_only_to_ec2(decisions):
    """Checked by iam-simulate (moto ignores the iam:PassedToService condition)."""
    assert_decisions(decisions, PASS_ROLE)


def test_hub_launches_and_manages_only_its_own_instances(decisions):
    """Checked by iam-simulate (moto ignores aws:RequestTag / ec2:ResourceTag conditions and the
    instance profile of RunInstances): every purpose the launcher knows, tagged for this hub, with a
    user's profile or none (the hot pool), and nothing else."""
    assert_decisions(decisions, INSTANCES)


def test_hub_launches_only_the_sizes_images_and_network_it_is_given(decisions):
    """Checked by iam-simulate (moto checks neither EC2 resource ARNs nor conditions): RunInstances
    is authorised once per resource it touches, and each is limited: the instance to a size's type
    with IMDSv2 required, its volume to an encrypted one, the subnet, security groups and image to
    the hub's own (the cluster group among them, which Dask schedulers and workers carry)."""
    assert_decisions(decisions, LAUNCH_LIMITS)


def test_hub_retags_only_its_own_instances_and_never_their_hub(decisions):
    """Claiming a hot-pool instance retags it; iam-simulate checks the tag conditions moto ignores.
    DeleteTags without keys deletes every tag: ForAllValues holds on that empty set, so the policy
    requires named keys (Null) as well."""
    assert_decisions(decisions, CLAIMS)


def test_hub_can_never_remove_a_permissions_boundary_or_change_a_trust_policy(decisions):
    """Checked by iam-simulate: the explicit Deny wins (moto's evaluation is not relied on here).

    No IAM condition key of iam:CreateRole sees the trust policy, so a CreateRole whose trust is not
    EC2's cannot be simulated as denied; what IAM does enforce is here and in CREATE_ROLE and
    PASS_ROLE: user roles only under /ec2hub/users/ with the boundary, passed only to EC2, and their
    trust never changed afterwards."""
    assert_decisions(decisions, BOUNDARY_LOCK)


def test_deleted_accounts_data_is_out_of_every_users_reach_and_the_hub_only_moves_it(decisions):
    """Checked by iam-simulate: users never reach deleted/; the hub lists, copies and removes users/
    only to move a deleted account's data aside, and writes nowhere else."""
    assert_decisions(decisions, DELETED_DATA)


def test_hub_publishes_metrics_only_to_the_jobs_namespace(decisions):
    """Checked by iam-simulate (moto ignores conditions): PutMetricData has no resource ARN, so the
    cloudwatch:namespace condition is all that keeps the hub's role to ec2hub/jobs, where the jobs
    service counts failed runs and Terraform's alarm watches; user instances publish nothing."""
    assert_decisions(decisions, JOB_METRICS)
