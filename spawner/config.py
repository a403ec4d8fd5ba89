"""EC2Spawner's configuration: every option as a documented trait, and the size choice it applies."""

from __future__ import annotations

from dataclasses import fields

from traitlets import Bool, Dict, Enum, Float, Integer, List, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from spawner.launcher import LaunchSettings
from spawner.profiles import (
    DEFAULT_PROFILES,
    Profile,
    parse_choice,
    parse_form,
    render_form,
    validate_choice,
    validate_profiles,
)


def apply_size_choice(spawner: EC2SpawnerConfig, user_options: dict) -> None:
    """Validate a user's choice (form or REST API) against the sizes open to them, then apply it.

    Runs before anything is created; a bad choice is an HTTP 400 naming the sizes they may pick.
    """
    profiles = spawner.profile_list()
    groups = spawner.group_names()
    choice = parse_choice(user_options or {}, [p for p in profiles if p.allowed_for(groups)])
    profile, spot = validate_choice(choice, profiles, groups)
    spawner.size = profile.slug
    spawner.instance_type = profile.instance_type
    spawner.use_spot = spot
    # The whole instance is the user's: its size is what JupyterLab's status bar measures against.
    spawner.mem_limit = int(profile.memory_gib * 2**30)
    spawner.cpu_limit = float(profile.vcpu)


class EC2SpawnerConfig(LoggingConfigurable):
    """Every option of EC2Spawner; see `spawner.spawner.EC2Spawner` for what it does with them.

    A stopped server keeps its instance (and the disk with the user's home) unless
    `stop_behaviour` is "terminate"; the next start boots the same instance again.
    """

    region = Unicode(
        "us-east-1",
        config=True,
        help="""AWS region the user instances run in.

        Example: `c.EC2Spawner.region = "eu-west-1"`
        """,
    )
    endpoint_url = Unicode(
        "",
        config=True,
        help="""EC2 API endpoint URL. Empty (the default) means AWS's own endpoint for `region`.

        The local cloud sets this to its address, e.g. `c.EC2Spawner.endpoint_url = "http://127.0.0.1:4566"`.
        Credentials always come from the default AWS credential chain (the hub's IAM role on AWS).
        """,
    )
    image_id = Unicode(
        "",
        config=True,
        help="""ID of the ec2hub machine image (AMI) user instances are launched from.

        Example: `c.EC2Spawner.image_id = "ami-0123456789abcdef0"`
        """,
    )
    instance_type = Unicode(
        "t3.medium",
        config=True,
        help="""EC2 instance type of a user server when no size is chosen (default t3.medium).
        Normally the size a user picks on the spawn form (see `profiles`) sets it.
        """,
    )
    profiles = List(
        Dict(),
        config=True,
        help="""The instance sizes users pick from on the spawn form. Each is a dict with:
        slug, display_name, description, instance_type, vcpu, memory_gib, price_per_hour (USD,
        on-demand), and optionally gpus, gpu_kind, spot (offered as a choice), spot_discount
        (0-1, shown as an estimate), default (preselected), groups (hub groups that may use it;
        empty: everyone). The form and the REST API accept only these sizes.

        Example::

            c.EC2Spawner.profiles = [
                {"slug": "small", "display_name": "Small", "description": "Light work",
                 "instance_type": "t3.medium", "vcpu": 2, "memory_gib": 4, "price_per_hour": 0.0416,
                 "default": True},
                {"slug": "gpu", "display_name": "GPU", "description": "Deep learning",
                 "instance_type": "g5.xlarge", "vcpu": 4, "memory_gib": 16, "gpus": 1,
                 "gpu_kind": "NVIDIA A10G", "price_per_hour": 1.006, "groups": ["gpu-users"]},
            ]
        """,
    )
    size = Unicode("", help="Slug of the size chosen for this start.")
    use_spot = Bool(False, help="Whether this start asked for a spot instance.")
    subnet_ids = List(
        Unicode(),
        config=True,
        help="""Private subnets user instances may be launched in, tried in order: when one has no
        capacity for the instance type, the next one (another availability zone) is tried.

        Example: `c.EC2Spawner.subnet_ids = ["subnet-aaa", "subnet-bbb"]`
        """,
    )
    cluster_security_group_ids = List(
        Unicode(),
        config=True,
        help="""Security groups that Dask schedulers and workers carry beside `security_group_ids`: the
        traffic among a cluster's instances and from the hub to its schedulers. User servers never carry
        them, so they accept no traffic from other users' instances.

        Example: `c.EC2Spawner.cluster_security_group_ids = ["sg-0456"]`
        """,
    )
    security_group_ids = List(
        Unicode(),
        config=True,
        help="""Security groups of user instances. They should accept the server port only from the hub.

        Example: `c.EC2Spawner.security_group_ids = ["sg-0123"]`
        """,
    )
    hub_id = Unicode(
        "ec2hub",
        config=True,
        help="""Name of this hub, written to the `ec2hub:hub` tag of every instance it launches.

        The hub finds its instances by this tag (also after its database is lost), and its IAM
        policy lets it touch only instances that carry it. Two hubs in one account need two names.
        """,
    )
    extra_tags = Dict(
        config=True,
        help="""Additional tags for every user instance and its volume, e.g. for cost allocation.

        Example: `c.EC2Spawner.extra_tags = {"cost-center": "research"}`
        """,
    )
    volume_size = Integer(
        50,
        config=True,
        help="""Size of the instance's root volume in GiB (default 50). It holds the user's home.

        Example: `c.EC2Spawner.volume_size = 100`
        """,
    )
    bucket = Unicode(
        "",
        config=True,
        help="""S3 bucket of the platform's data. Each user reaches `users/<name>/` (read/write),
        `shared/` (read-only) and `groups/<group>/` of their hub groups, through their own IAM role.

        Example: `c.EC2Spawner.bucket = "acme-ec2hub-data"`
        """,
    )
    user_boundary_arn = Unicode(
        "",
        config=True,
        help="""ARN of the permissions boundary every user role is created with (Terraform's
        `user_boundary_arn` output). The hub's IAM policy lets it create roles only with it.

        Example: `c.EC2Spawner.user_boundary_arn = "arn:aws:iam::123456789012:policy/ec2hub-user-boundary"`
        """,
    )
    profile_propagation_timeout = Float(
        60,
        config=True,
        help="""Seconds to keep retrying a launch that EC2 refuses because a just-created instance
        profile has not propagated through IAM yet (default 60).""",
    )
    stop_behaviour = Enum(
        ["stop", "terminate"],
        "stop",
        config=True,
        help="""What stopping a server does to its instance.

        "stop" (default): the instance is stopped and keeps its disk, so the home is there at the
        next start (a stopped instance costs only its storage). "terminate": the instance and its
        disk are deleted; only what the user saved to S3 survives.
        """,
    )
    server_port = Integer(
        8888,
        config=True,
        help="Port the user server listens on, on the instance's private IP (default 8888).",
    )
    stop_timeout = Float(
        300,
        config=True,
        help="""Seconds to wait for EC2 to report an instance stopped (default 300).""",
    )
    unreachable_checks = Integer(
        3,
        config=True,
        help="""How many of the hub's checks in a row (one per `poll_interval`) a running server may
        fail to answer before it counts as dead and its instance is stopped (default 3; 0 turns the
        check off and trusts EC2's instance state alone). A server that answers anything is alive.

        Example: `c.EC2Spawner.unreachable_checks = 5`
        """,
    )
    server_check_timeout = Float(
        10,
        config=True,
        help="""Seconds one check of a running server waits for an answer (default 10).""",
    )
    hot_pool = Dict(
        {},
        config=True,
        help="""Instances to keep booted ahead of demand, per size slug (default: none).

        A start of that size (on demand, by a user with no instance of their own yet) takes one
        over in about a second instead of launching and booting a new one; the pool refills in
        the background. Pool instances cost what running instances of their size cost.

        Example: `c.EC2Spawner.hot_pool = {"medium": 2}`
        """,
    )
    ready_check_interval = Float(
        0.05,
        config=True,
        help="""Seconds between two checks, during a start, of whether the user's Jupyter server answers
        yet (default 0.05). start() returns as soon as it does, so the hub finds the server up at its
        first check instead of after its own growing pauses. 0 leaves the checks to the hub.
        """,
    )
    aws_poll_max_interval = Float(
        2.0,
        config=True,
        help="""Longest pause, in seconds, between two EC2 state checks while waiting (default 2).

        The checks back off exponentially from 0.1 s up to this.
        """,
    )

    patience_message = Unicode(
        "Still waiting for AWS; a new instance can take a few minutes.",
        config=True,
        help="""What the progress bar says when a start has had no news for `patience_interval`
        seconds (EC2 can take minutes to find capacity or to boot a large image).

        Example: `c.EC2Spawner.patience_message = "GPU instances take up to 5 minutes to start."`
        """,
    )
    patience_interval = Float(
        30,
        config=True,
        help="""Seconds without news in a start after which the progress bar says `patience_message`
        (default 30).""",
    )

    @default("profiles")
    def _default_profiles(self) -> list[dict]:
        return [dict(p) for p in DEFAULT_PROFILES]

    @validate("profiles")
    def _validate_profiles(self, proposal) -> list[dict]:
        try:
            validate_profiles(proposal["value"])
        except ValueError as e:
            raise TraitError(f"c.EC2Spawner.profiles: {e}") from None
        return proposal["value"]

    @default("options_form")
    def _default_options_form(self):
        return lambda spawner: render_form(
            spawner.profile_list(),
            spawner.group_names(),
            spawner.size,
            stop_reason=getattr(spawner, "stop_reason", ""),
        )

    @default("options_from_form")
    def _default_options_from_form(self):
        return parse_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return apply_size_choice

    def launch_settings(self) -> LaunchSettings:
        """What every launch of this hub shares, from these options (for the launcher)."""
        return LaunchSettings.from_options({f.name: getattr(self, f.name) for f in fields(LaunchSettings)})

    def profile_list(self) -> list[Profile]:
        return [Profile.from_config(entry) for entry in self.profiles]

    def group_names(self) -> list[str]:
        return sorted(g.name for g in getattr(self.user, "groups", []))

    @default("start_timeout")
    def _default_start_timeout(self) -> int:
        # Launch, pending -> running and boot take 1-3 minutes on EC2; leave room for slow AZs.
        return 600

    @default("http_timeout")
    def _default_http_timeout(self) -> int:
        # From "running" to Jupyter answering: the image's boot and the server's own start.
        return 300
