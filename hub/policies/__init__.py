"""IAM policy documents kept once: Terraform and the local cloud render the same files.

A placeholder is filled with a string, or with a JSON list where the document holds a list (the hub's
subnets, security groups, images and instance types): Terraform passes `jsonencode(...)` for those.

What IAM cannot enforce about the roles the hub creates: no condition key of iam:CreateRole sees the
trust policy, so the hub's policy cannot require that a new role trusts only EC2. What it enforces
instead: roles only under /ec2hub/users/ and only with the user boundary (the most such a role may do,
whoever assumes it), passed only to EC2 (iam:PassedToService), and no trust policy changed afterwards
(iam:UpdateAssumeRolePolicy is denied). The hub itself writes only EC2's trust (spawner/identity.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from string import Template

POLICY_DIR = Path(__file__).resolve().parent


def render_policy(name: str, **values: str | Iterable[str]) -> str:
    """The policy document `name`.json with its ${placeholders} filled (Terraform's templatefile syntax);
    a value that is not a string goes in as a JSON list."""
    text = Template((POLICY_DIR / f"{name}.json").read_text()).substitute(
        {key: value if isinstance(value, str) else json.dumps(list(value)) for key, value in values.items()}
    )
    return json.dumps(json.loads(text), separators=(",", ":"))


def default_instance_types() -> list[str]:
    """The instance types of the default sizes (and of a server started without a size)."""
    from spawner.config import EC2SpawnerConfig
    from spawner.profiles import DEFAULT_PROFILES

    default = EC2SpawnerConfig.class_traits()["instance_type"].default_value
    return sorted({default, *(profile["instance_type"] for profile in DEFAULT_PROFILES)})


def hub_policy(
    *,
    region: str,
    account_id: str,
    hub_id: str,
    bucket: str,
    boundary_name: str,
    subnet_ids: Iterable[str],
    security_group_ids: Iterable[str],
    image_ids: Iterable[str],
    instance_types: Iterable[str],
) -> str:
    """The hub's policy: launches only into these subnets, with these security groups (the user
    group and the Dask cluster group), from these images and of these instance types."""
    ec2 = f"arn:aws:ec2:{region}:{account_id}"
    return render_policy(
        "hub-policy",
        region=region,
        account_id=account_id,
        hub_id=hub_id,
        bucket=bucket,
        boundary_name=boundary_name,
        subnet_arns=[f"{ec2}:subnet/{subnet}" for subnet in subnet_ids],
        security_group_arns=[f"{ec2}:security-group/{group}" for group in security_group_ids],
        image_arns=[f"arn:aws:ec2:{region}::image/{image}" for image in image_ids],
        instance_types=sorted(set(instance_types)),
    )
