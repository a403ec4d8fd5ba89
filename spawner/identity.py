"""Per-user AWS identity: safe names, the user's IAM role and instance profile, and what it may reach."""

from __future__ import annotations

import hashlib
import json
import logging
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import escapism
from botocore.exceptions import ClientError

from spawner.owner import TAG_USER

log = logging.getLogger("ec2hub.identity")

USER_ROLE_PATH = "/ec2hub/users/"
PARAMETER_ROOT = "/ec2hub/users"
# What a user may do with the objects of their own prefix and of their groups' prefixes.
READ_WRITE = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
# The mark of a deletion under way on a user's role (its value: when it began).
TAG_DELETING = "ec2hub:deleting"
# Where the S3 data of deleted accounts goes: no user role reaches it.
DELETED_ROOT = "deleted"
ROLE_POLICY_NAME = "ec2hub-user-access"

_SAFE = string.ascii_lowercase + string.digits
# Role names are at most 64 characters; "ec2hub-" takes 7 of them.
SAFE_NAME_MAX = 56
# Hex digits of the digest that ends a name too long to keep whole: 128 bits, so that no two
# names anyone could choose share a role or a prefix.
_DIGEST = 32


def safe_name(name: str) -> str:
    """The one name used for a user's (or group's) role, profile, parameters and S3 prefix.

    Valid for IAM (lowercase letters, digits, "-"; 56 characters at most) and for S3 keys,
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

    def settings_parameter(self, server_name: str) -> str:
        server = safe_name(server_name) if server_name else "default"
        return f"{self.parameter_path}servers/{server}/settings"


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
    listing only within those prefixes, and reading the user's own servers' settings."""
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
            "Action": list(READ_WRITE),
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
                "Action": list(READ_WRITE),
                "Resource": [f"{bucket_arn}/{p}*" for p in group_prefixes],
            },
        )
    return {"Version": "2012-10-17", "Statement": statements}


def account_of(arn: str) -> str:
    """The account id in an ARN (arn:aws:iam::123456789012:policy/x)."""
    return arn.split(":")[4]


@dataclass(frozen=True)
class EnsuredRole:
    """The user's role as a start finds it: its unique id (the owner id) and whether it is new."""

    owner_id: str
    created: bool


class IdentityConflict(RuntimeError):
    """The IAM role a user's name maps to belongs to someone else: it must not be reused."""


class UserIdentity:
    """Creates, updates and removes a user's role and instance profile (idempotently), and moves the
    S3 data of a deleted account aside.

    Synchronous boto3: the spawner runs these in its worker pool, never on the event loop.
    """

    def __init__(self, iam: Any, s3: Any, *, boundary_arn: str, bucket: str, region: str) -> None:
        self.iam = iam
        self.s3 = s3
        self.boundary_arn = boundary_arn
        self.bucket = bucket
        self.region = region

    def ensure(self, username: str, groups: list[str]) -> EnsuredRole:
        """Make the user's role, policy and profile exist and match the user's groups now.

        Returns the role's unique id (the owner id of everything launched for this account) and
        whether the role was created now. A role that exists must be this user's (its `ec2hub:user`
        tag is exactly the name). A role still marked by a deletion that did not finish belongs to
        the former account of this name: that deletion is finished first (its data moved aside, the
        role removed), and a new account starts with a new role.
        """
        names = UserNames.of(username)
        if self._finish_interrupted_removal(username):
            log.warning("Finished the interrupted deletion of a former account named %r", username)
        try:
            role = self.iam.create_role(
                RoleName=names.role,
                Path=USER_ROLE_PATH,
                AssumeRolePolicyDocument=json.dumps(trust_policy()),
                PermissionsBoundary=self.boundary_arn,
                Description=f"ec2hub user {username[:900]}",
                Tags=[{"Key": TAG_USER, "Value": username}],
            )["Role"]
            created = True
        except ClientError as e:
            if _code(e) != "EntityAlreadyExists":
                raise
            role = self.iam.get_role(RoleName=names.role)["Role"]
            created = False
        self._check_role_is_users(role, username)
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
                InstanceProfileName=names.instance_profile,
                Path=USER_ROLE_PATH,
                Tags=[{"Key": TAG_USER, "Value": username}],
            )
        roles = profile["InstanceProfile"].get("Roles", [])
        foreign = [r["RoleName"] for r in roles if r["RoleId"] != role["RoleId"]]
        if foreign:
            raise IdentityConflict(
                f"instance profile {names.instance_profile} holds {', '.join(foreign)}, not {username}'s role"
            )
        if not roles:
            self.iam.add_role_to_instance_profile(
                InstanceProfileName=names.instance_profile, RoleName=names.role
            )
        return EnsuredRole(role["RoleId"], created)

    def _check_role_is_users(self, role: dict, username: str) -> None:
        tags = {t["Key"]: t["Value"] for t in role.get("Tags", [])}
        if role.get("Path") != USER_ROLE_PATH or tags.get(TAG_USER) != username:
            raise IdentityConflict(
                f"role {role.get('RoleName')} (path {role.get('Path')}, user tag {tags.get(TAG_USER)!r})"
                f" is not {username!r}'s"
            )

    def mark_for_removal(self, username: str) -> None:
        """The first step of deleting an account: its role is marked, so that a deletion cut short
        is finished before the name is used again (see `ensure`)."""
        if self.owner_id(username) is None:
            return
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.iam.tag_role(RoleName=UserNames.of(username).role, Tags=[{"Key": TAG_DELETING, "Value": stamp}])

    def _finish_interrupted_removal(self, username: str) -> bool:
        role = self._own_role(username)
        if role is None or not any(t["Key"] == TAG_DELETING for t in role.get("Tags", [])):
            return False
        self.move_data_aside(username)
        self.remove(username)
        return True

    def _own_role(self, username: str) -> dict | None:
        """The user's role, or None when the user has none (or the role is someone else's)."""
        try:
            role = self.iam.get_role(RoleName=UserNames.of(username).role)["Role"]
        except ClientError as e:
            if _code(e) == "NoSuchEntity":
                return None
            raise
        try:
            self._check_role_is_users(role, username)
        except IdentityConflict:
            return None
        return role

    def owner_id(self, username: str) -> str | None:
        """The unique id of the user's role, or None when the user has none (or it is someone else's)."""
        role = self._own_role(username)
        return role["RoleId"] if role else None

    def remove(self, username: str) -> None:
        """Remove the user's profile and role (their data in S3 stays: see `move_data_aside`).

        Only a role that is this user's is removed.
        """
        names = UserNames.of(username)
        if self.owner_id(username) is None:
            return
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

    def move_data_aside(self, username: str, now: datetime | None = None) -> str | None:
        """Move everything under the user's prefix to `deleted/<safe name>/<UTC time>/`, out of reach
        of every user role (only administrators reach `deleted/`). Returns the new prefix, or None
        when there was nothing to move. Copies first, deletes after: an interruption loses nothing.
        """
        names = UserNames.of(username)
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        target = f"{DELETED_ROOT}/{names.safe}/{stamp}/"
        moved = False
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=names.prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                self.s3.copy(
                    {"Bucket": self.bucket, "Key": key}, self.bucket, target + key[len(names.prefix) :]
                )
                # One DeleteObject per key (not DeleteObjects): each is authorized, and fails
                # loudly, on the key itself.
                self.s3.delete_object(Bucket=self.bucket, Key=key)
                moved = True
        return target if moved else None


def _code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")
