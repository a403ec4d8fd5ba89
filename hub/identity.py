"""Per-user AWS identity: safe names, the user's IAM role and instance profile, and what it may reach."""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass
from typing import Any

import escapism
from botocore.exceptions import ClientError

USER_ROLE_PATH = "/ec2hub/users/"
PARAMETER_ROOT = "/ec2hub/users"
ROLE_POLICY_NAME = "ec2hub-user-access"

_SAFE = string.ascii_lowercase + string.digits
# Role names are at most 64 characters; "ec2hub-" takes 7 of them.
SAFE_NAME_MAX = 48
_DIGEST = 12


def safe_name(name: str) -> str:
    """The one name used for a user's (or group's) role, profile, parameters and S3 prefix.

    Valid for IAM (lowercase letters, digits, "-"; 48 characters at most) and for S3 keys,
    stable, and collision-free: escapism's escaping is injective (every "-" it writes is
    followed by two hex digits), and a name too long is cut and given a digest of the whole
    name behind "--", which no escaped name contains.
    """
    if not name:
        raise ValueError("a user or group name cannot be empty")
    escaped = escapism.escape(name, safe=_SAFE, escape_char="-").lower()
    if len(escaped) <= SAFE_NAME_MAX:
        return escaped
    digest = hashlib.sha256(name.encode()).hexdigest()[:_DIGEST]
    return f"{escaped[: SAFE_NAME_MAX - _DIGEST - 2]}--{digest}"


@dataclass(frozen=True)
class UserNames:
    """Where a user's things live, all derived from `safe_name(username)`."""

    username: str
    safe: str

    @classmethod
    def of(cls, username: str) -> UserNames:
        return cls(username, safe_name(username))

    @property
    def role(self) -> str:
        return f"ec2hub-{self.safe}"

    @property
    def instance_profile(self) -> str:
        # One profile per role, under the same name.
        return self.role

    @property
    def prefix(self) -> str:
        return f"users/{self.safe}/"

    @property
    def parameter_path(self) -> str:
        return f"{PARAMETER_ROOT}/{self.safe}/"

    def token_parameter(self, server_name: str) -> str:
        server = safe_name(server_name) if server_name else "default"
        return f"{self.parameter_path}servers/{server}/api-token"


def group_prefix(group: str) -> str:
    return f"groups/{safe_name(group)}/"


def trust_policy() -> dict[str, Any]:
    """Only EC2 (an instance with the user's profile) may take on a user's role."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def user_policy(
    names: UserNames, groups: list[str], *, bucket: str, region: str, account_id: str
) -> dict[str, Any]:
    """Exactly the user's data: own prefix read/write, shared/ read-only, own groups read/write,
    listing only within those prefixes, and reading the user's own server token."""
    bucket_arn = f"arn:aws:s3:::{bucket}"
    group_prefixes = sorted(group_prefix(g) for g in groups)
    readable = [names.prefix, "shared/", *group_prefixes]
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ListOnlyOwnSharedAndGroupPrefixes",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": sorted([*readable, *(p + "*" for p in readable)])}},
        },
        {
            "Sid": "ReadWriteOwnPrefix",
            "Effect": "Allow",
            "Action": [
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
            ],
            "Resource": f"{bucket_arn}/{names.prefix}*",
        },
        {
            "Sid": "ReadShared",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": f"{bucket_arn}/shared/*",
        },
        {
            "Sid": "ReadOwnServerTokens",
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": f"arn:aws:ssm:{region}:{account_id}:parameter{names.parameter_path}*",
        },
    ]
    if group_prefixes:
        statements.insert(
            2,
            {
                "Sid": "ReadWriteOwnGroups",
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                "Resource": [f"{bucket_arn}/{p}*" for p in group_prefixes],
            },
        )
    return {"Version": "2012-10-17", "Statement": statements}


def account_of(arn: str) -> str:
    """The account id in an ARN (arn:aws:iam::123456789012:policy/x)."""
    return arn.split(":")[4]


class UserIdentity:
    """Creates, updates and removes a user's role and instance profile (idempotently).

    Synchronous boto3: the spawner runs these in its worker pool, never on the event loop.
    """

    def __init__(self, iam: Any, *, boundary_arn: str, bucket: str, region: str) -> None:
        self.iam = iam
        self.boundary_arn = boundary_arn
        self.bucket = bucket
        self.region = region

    def ensure(self, username: str, groups: list[str]) -> UserNames:
        """Make the user's role, policy and profile exist and match the user's groups now."""
        names = UserNames.of(username)
        tags = [{"Key": "ec2hub:user", "Value": username[:256]}]
        try:
            self.iam.create_role(
                RoleName=names.role,
                Path=USER_ROLE_PATH,
                AssumeRolePolicyDocument=json.dumps(trust_policy()),
                PermissionsBoundary=self.boundary_arn,
                Description=f"ec2hub user {username[:900]}",
                Tags=tags,
            )
        except ClientError as e:
            if _code(e) != "EntityAlreadyExists":
                raise
        policy = user_policy(
            names, groups, bucket=self.bucket, region=self.region, account_id=account_of(self.boundary_arn)
        )
        self.iam.put_role_policy(
            RoleName=names.role, PolicyName=ROLE_POLICY_NAME, PolicyDocument=json.dumps(policy)
        )
        try:
            profile = self.iam.get_instance_profile(InstanceProfileName=names.instance_profile)
        except ClientError as e:
            if _code(e) != "NoSuchEntity":
                raise
            profile = self.iam.create_instance_profile(
                InstanceProfileName=names.instance_profile, Path=USER_ROLE_PATH, Tags=tags
            )
        if not any(r["RoleName"] == names.role for r in profile["InstanceProfile"].get("Roles", [])):
            self.iam.add_role_to_instance_profile(
                InstanceProfileName=names.instance_profile, RoleName=names.role
            )
        return names

    def remove(self, username: str) -> None:
        """Remove the user's profile and role; their data in S3 stays."""
        names = UserNames.of(username)
        steps = [
            lambda: self.iam.remove_role_from_instance_profile(
                InstanceProfileName=names.instance_profile, RoleName=names.role
            ),
            lambda: self.iam.delete_instance_profile(InstanceProfileName=names.instance_profile),
            lambda: self.iam.delete_role_policy(RoleName=names.role, PolicyName=ROLE_POLICY_NAME),
            lambda: self.iam.delete_role(RoleName=names.role),
        ]
        for step in steps:
            try:
                step()
            except ClientError as e:
                if _code(e) != "NoSuchEntity":
                    raise


def _code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")
